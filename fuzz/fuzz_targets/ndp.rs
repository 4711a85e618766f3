//! Neighbor Solicitations: Ethernet + IPv6 headers (next header ICMPv6, hop limit 255, payload length
//! of the input) in front of the input, so that the ICMPv6 and option parsing is reached.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut f = vec![0x33, 0x33, 0xff, 0, 0, 0x50, 2, 0, 0, 0, 0, 9, 0x86, 0xdd];
    let len = (data.len().min(65535) as u16).to_be_bytes();
    f.extend_from_slice(&[0x60, 0, 0, 0, len[0], len[1], 58, 255]);
    f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
    f.extend_from_slice(&[0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 0x50]);
    f.extend_from_slice(data);
    let _ = speakerd::l2::decode_request(&f);
});
