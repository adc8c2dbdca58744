//! Key-set (JWKS) bodies as served by the key-set URL: `{"keys":[{kid, pem | n+e}]}`.
#![no_main]

use digime_protocol::jwks::KeySet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match KeySet::parse(data) {
        Ok(set) => {
            assert_eq!(set.is_empty(), set.len() == 0);
            let _ = set.get("");
            let _ = set.get("kid");
            let _ = format!("{set:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
