#!/usr/bin/env bash
# Builds the fuzz corpora's seeds from the BGP messages captured from gobgpd, BIRD and FRR
# (speakerd/tests/wire_vectors/capture-*.txt: "frame src port type hex" per line), plus a few
# hand-built frames for the other decoders. Idempotent; corpus/ is not committed.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p corpus/{bgp_message,bgp_update,bgp_open,arp,ndp,gossip,bfd,config_file}
python3 - <<'PY'
import glob, hashlib, pathlib
def put(target, data):
    pathlib.Path(f"corpus/{target}/seed-{hashlib.sha1(data).hexdigest()[:16]}").write_bytes(data)
for f in glob.glob("../speakerd/tests/wire_vectors/capture-*.txt"):
    for line in open(f):
        parts = line.split()
        if len(parts) < 5:
            continue
        try:
            msg = bytes.fromhex(parts[4])
        except ValueError:
            continue
        put("bgp_message", msg)
        if len(msg) > 19 and msg[18] == 2:
            for sel in (0, 1, 2, 3):
                put("bgp_update", bytes([sel]) + msg[19:])
        if len(msg) > 19 and msg[18] == 1:
            put("bgp_open", msg[19:])
# ARP request body (after the Ethernet header the target adds)
put("arp", bytes.fromhex("0001080006040001020000000009c0000209000000000000c0000232"))
# NS body: ICMPv6 type 135 for 2001:db8::50 with a source link-layer option (checksum left to chance)
put("ndp", bytes.fromhex("87000000000000002001" + "0db8" + "00"*9 + "50" + "0101020000000009"))
put("bfd", bytes.fromhex("20c003180000000100000002000186a0000186a000000000"))
put("config_file", b'[[peers]]\naddress = "192.0.2.2"\npeer_asn = 65002\n[[announcements]]\nprefix = "203.0.113.1/32"\n')
put("config_file", b'peers:\n  - address: 192.0.2.2\n    peer_asn: 65002\n')
put("gossip", b"\x00" * 32)
PY
ls corpus | while read t; do echo "$t: $(ls corpus/$t | wc -l) seeds"; done
