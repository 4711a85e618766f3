//! OPEN bodies and their capabilities (RFC 5492, RFC 9072 extended parameters).
#![no_main]
use libfuzzer_sys::fuzz_target;
use speakerd::bgp::wire::{to_bytes, Message, Open};

fuzz_target!(|data: &[u8]| {
    if let Ok(o) = Open::decode(data) {
        let _ = o.asn();
        let _ = o.families();
        let _ = to_bytes(&Message::Open(o), true);
    }
});
