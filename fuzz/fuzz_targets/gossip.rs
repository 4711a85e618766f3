//! Gossip datagrams: the secret envelope, and foca's decoding and state machine behind it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use speakerd::membership::{Envelope, NodeId};
use std::num::NonZeroU32;

fuzz_target!(|data: &[u8]| {
    let _ = Envelope::new(b"fuzz").open(data);
    let me = NodeId { name: "a".into(), addr: "127.0.0.1:7946".parse().unwrap(), generation: 1 };
    let rng: rand::rngs::StdRng = rand::make_rng();
    let mut foca = foca::Foca::new(me, foca::Config::new_lan(NonZeroU32::MIN), rng, foca::PostcardCodec);
    let mut rt = foca::AccumulatingRuntime::new();
    let _ = foca.handle_data(data, &mut rt);
});
