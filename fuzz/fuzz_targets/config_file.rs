//! The config file, as TOML and as YAML.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = speakerd::config::file::parse(text, false);
        let _ = speakerd::config::file::parse(text, true);
    }
});
