//! Whole BGP messages: framing then decoding, in every session context.
#![no_main]
use libfuzzer_sys::fuzz_target;
use speakerd::bgp::wire::{decode, frame, DecodeCtx, MAX_MESSAGE_LEN};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some(n)) = frame(rest, MAX_MESSAGE_LEN) {
        for (four_octet_as, ibgp) in [(true, false), (false, true)] {
            let _ = decode(&rest[..n], &DecodeCtx { four_octet_as, ibgp });
        }
        rest = &rest[n..];
    }
});
