//! The `X-Metadata` header of file downloads: base64url (or standard, padded or not)
//! of `{"metadata": Mapped | Raw, "compression"?}`. Whatever parses must survive its
//! own encoding unchanged.
#![no_main]

use digime_protocol::read::XMetadata;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(x) = XMetadata::parse(data) {
        let again = XMetadata::parse(x.encode().as_bytes()).expect("an encoded header parses");
        assert_eq!(again, x);
    }
    // The decoded JSON itself, encoded as a server would.
    let encoded = digime_crypto::b64url_encode(data);
    if let Ok(x) = XMetadata::parse(encoded.as_bytes()) {
        let _ = format!("{x:?}");
    }
});
