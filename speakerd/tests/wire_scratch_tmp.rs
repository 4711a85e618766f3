use speakerd::bgp::wire::*;
#[test]
fn dump() {
    for line in std::fs::read_to_string("/tmp/wvcap/uniq.txt").unwrap().lines() {
        let b = hex::decode(line).unwrap();
        for ibgp in [false] {
            let ctx = DecodeCtx { four_octet_as: true, ibgp };
            let m = decode(&b, &ctx);
            match &m {
                Ok(m) => {
                    let e = to_bytes(m, true).unwrap();
                    let same = e.as_ref() == &b[..];
                    println!("{line}\n  same={same} {:?}", m);
                    if !same { println!("  ours={}", hex::encode(&e)); }
                }
                Err(e) => println!("{line}\n  ERR {e:?}"),
            }
        }
    }
}
