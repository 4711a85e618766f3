//! BFD control packets, with and without the SHA1 authentication section, fed to a session.
#![no_main]
use libfuzzer_sys::fuzz_target;
use speakerd::bfd::auth::BfdAuth;
use speakerd::bfd::fsm::{BfdConfig, BfdFsm, Input};
use speakerd::bfd::packet::ControlPacket;

fuzz_target!(|data: &[u8]| {
    let auth = BfdAuth { meticulous: data.first().is_some_and(|b| b & 1 == 1), key_id: 1, key: b"k".to_vec() };
    let _ = auth.open(data);
    if let Ok(p) = ControlPacket::parse(data) {
        let mut s = BfdFsm::new(BfdConfig::default(), 1, 1);
        let _ = s.handle(Input::Rx(p));
        let _ = s.handle(Input::TxTimer);
    }
});
