//! The authorization callback: whatever URL, path or query the browser brings back.
#![no_main]

use digime_protocol::parse_callback;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    match parse_callback(&input) {
        Ok(callback) => {
            assert!(!callback.code.expose().is_empty());
            let _ = format!("{callback:?}");
            let state_matches = callback.state.as_deref() == Some("s");
            assert_eq!(callback.verify_state("s").is_ok(), state_matches);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
