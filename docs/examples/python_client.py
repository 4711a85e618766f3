"""Drive speakerd from Python: a stock grpcio channel on the Unix socket, default options.

Stubs: python3 -m grpc_tools.protoc -Iproto --python_out=. --grpc_python_out=. speaker/v1/speaker.proto
Run:   python3 python_client.py [SOCKET]   (default /run/speakerd/speakerd.sock)
"""
import sys

import grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from speaker.v1 import speaker_pb2 as pb
from speaker.v1 import speaker_pb2_grpc as rpc

socket = sys.argv[1] if len(sys.argv) > 1 else "/run/speakerd/speakerd.sock"
channel = grpc.insecure_channel(f"unix://{socket}")
speaker = rpc.SpeakerStub(channel)

# Start a watch first and read its initial state up to `synced`: from then on every change arrives
# live. (The call returns before the server has taken the watch; changes made before `synced` may
# show up in the initial state instead.)
watch = speaker.Watch(pb.WatchRequest(initial_state=True), timeout=30)
for ev in watch:
    if ev.WhichOneof("event") == "synced":
        print("watch synced")
        break

# A peer and an announcement. Both calls are idempotent per owner ("python" here).
speaker.AddPeer(pb.AddPeerRequest(peer=pb.PeerConfig(address="192.0.2.2", peer_asn=65002, local_asn=65001, router_id="192.0.2.1")))
speaker.Announce(pb.AnnounceRequest(owner="python", announcements=[
    pb.Announcement(prefix="203.0.113.10/32", communities=["65000:100"], local_pref=200),
]))
for p in speaker.ListPeers(pb.ListPeersRequest()).peers:
    print("peer", p.config.address, "AS", p.config.peer_asn, "state", pb.SessionState.Name(p.state.state))

# A bad argument is INVALID_ARGUMENT, and the message starts with the field's name.
try:
    speaker.Announce(pb.AnnounceRequest(owner="python", announcements=[pb.Announcement(prefix="203.0.113.10/24")]))
except grpc.RpcError as e:
    print("error", e.code().name, e.details())

# The same watch, live: the peer and the announcement above.
seen = []
for ev in watch:
    kind = ev.WhichOneof("event")
    seen.append(kind)
    if kind == "announcement":
        print("watch announcement", ev.announcement.announcement.prefix)
    elif kind == "peer":
        print("watch peer", ev.peer.address)
    if kind == "announcement" or len(seen) >= 10:
        break
watch.cancel()

# Server reflection, as v1alpha (grpcio-reflection's stubs) and as v1 (the same messages).
def services(method):
    call = channel.stream_stream(
        method,
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    reply = next(iter(call(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)))
    return sorted(s.name for s in reply.list_services_response.service)

print("reflection v1alpha", services("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"))
print("reflection v1", services("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"))
