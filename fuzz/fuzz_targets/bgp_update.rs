//! UPDATE bodies: withdrawn routes, path attributes (every RFC 7606 branch), NLRI. The first byte picks
//! the context; a decoded UPDATE must encode again without panicking.
#![no_main]
use libfuzzer_sys::fuzz_target;
use speakerd::bgp::wire::{to_bytes, DecodeCtx, Message, Update};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else { return };
    let ctx = DecodeCtx { four_octet_as: sel & 1 == 1, ibgp: sel & 2 == 2 };
    if let Ok(u) = Update::decode(body, &ctx) {
        let clean = Update { faults: vec![], ..u };
        let _ = to_bytes(&Message::Update(clean), ctx.four_octet_as);
    }
});
