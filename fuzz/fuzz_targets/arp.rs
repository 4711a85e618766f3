//! ARP frames (an Ethernet header for ARP is put in front of the input).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[2, 0, 0, 0, 0, 9, 0x08, 0x06]);
    f.extend_from_slice(data);
    let _ = speakerd::l2::decode_request(&f);
    let _ = speakerd::l2::decode_request(data);
});
