//! Token-response claims and persisted `UserAccessToken` JSON.
//!
//! `token_from_claims` maps the (verified) payload of the server's token response;
//! `UserAccessToken` is what apps store and load back, possibly written by another SDK.
#![no_main]

use digime_protocol::UserAccessToken;
use digime_protocol::auth::token_from_claims;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

/// A token must survive its own JSON unchanged.
fn round_trip(token: &UserAccessToken) {
    let json = serde_json::to_vec(token).expect("a UserAccessToken serialises");
    let again: UserAccessToken =
        serde_json::from_slice(&json).expect("a serialised UserAccessToken parses");
    assert_eq!(&again, token);
    let _ = format!("{token:?}");
}

fuzz_target!(|data: &[u8]| {
    if let Ok(claims) = serde_json::from_slice::<Map<String, Value>>(data) {
        match token_from_claims(&claims) {
            Ok(token) => round_trip(&token),
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }

    if let Ok(token) = serde_json::from_slice::<UserAccessToken>(data) {
        round_trip(&token);
    }
});
