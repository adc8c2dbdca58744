//! The callbacks: whatever URL, path or query the browser brings back from any page
//! (authorize and user-reauth, onboard and reauthorize, revoke).
#![no_main]

use digime_protocol::{parse_callback, parse_onboard_callback, parse_revoke_callback};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let onboard = parse_onboard_callback(&input);
    match parse_callback(&input) {
        Ok(callback) => {
            assert!(!callback.code.expose().is_empty());
            let _ = format!("{callback:?}");
            // Every successful authorize return is a successful page return too.
            let page = onboard.as_ref().expect("a page return");
            assert_eq!(page.state, callback.state);
            let state_matches = callback.state.as_deref() == Some("s");
            assert_eq!(callback.verify_state("s").is_ok(), state_matches);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    match onboard {
        Ok(page) => {
            let state_matches = page.state.as_deref() == Some("s");
            assert_eq!(page.verify_state("s").is_ok(), state_matches);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    match parse_revoke_callback(&input) {
        Ok(revoke) => {
            assert!(revoke.extra.iter().all(|(k, _)| k != "result"));
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
