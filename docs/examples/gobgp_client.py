"""Add a path through speakerd's GoBGP-compatible API, as GoBGP's own Python examples do.

Stubs: python3 -m grpc_tools.protoc -Iproto --python_out=. --grpc_python_out=. \
           gobgp/v3/gobgp.proto gobgp/v3/attribute.proto
Run:   python3 gobgp_client.py [HOST:PORT]   (speakerd --gobgp-api 127.0.0.1:50051)
"""
import sys

import grpc
from google.protobuf.any_pb2 import Any

from gobgp.v3 import attribute_pb2, gobgp_pb2, gobgp_pb2_grpc

target = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"
stub = gobgp_pb2_grpc.GobgpApiStub(grpc.insecure_channel(target))


def packed(msg):
    a = Any()
    a.Pack(msg)
    return a


family = gobgp_pb2.Family(afi=gobgp_pb2.Family.AFI_IP, safi=gobgp_pb2.Family.SAFI_UNICAST)
path = gobgp_pb2.Path(
    family=family,
    nlri=packed(attribute_pb2.IPAddressPrefix(prefix_len=32, prefix="203.0.113.20")),
    pattrs=[
        packed(attribute_pb2.OriginAttribute(origin=0)),
        packed(attribute_pb2.NextHopAttribute(next_hop="0.0.0.0")),
        packed(attribute_pb2.CommunitiesAttribute(communities=[(65000 << 16) | 100])),
    ],
)
reply = stub.AddPath(gobgp_pb2.AddPathRequest(table_type=gobgp_pb2.GLOBAL, path=path), timeout=10)
print("added, uuid", reply.uuid.hex())

for r in stub.ListPath(gobgp_pb2.ListPathRequest(table_type=gobgp_pb2.GLOBAL, family=family), timeout=10):
    print("global", r.destination.prefix)

# A bad path is INVALID_ARGUMENT, naming the field.
bad = gobgp_pb2.Path(family=family, nlri=packed(attribute_pb2.IPAddressPrefix(prefix_len=24, prefix="203.0.113.20")))
try:
    stub.AddPath(gobgp_pb2.AddPathRequest(table_type=gobgp_pb2.GLOBAL, path=bad), timeout=10)
except grpc.RpcError as e:
    print("error", e.code().name, e.details())

stub.DeletePath(gobgp_pb2.DeletePathRequest(table_type=gobgp_pb2.GLOBAL, uuid=reply.uuid), timeout=10)
print("deleted", sum(1 for _ in stub.ListPath(gobgp_pb2.ListPathRequest(table_type=gobgp_pb2.GLOBAL, family=family))), "left")
