//! Tokens, contracts, server answers and bodies that the suites build the same way.

use digime_crypto::{PrivateKey, jws};
use digime_protocol::legacy::Postbox;
use digime_protocol::{Contract, FileData, KeySet, ReadAllEvent, ReadAllOptions, UserAccessToken};
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

/// A token whose access token has expired (`old`; refresh token `r1`).
pub fn expired_token() -> UserAccessToken {
    token("old", 1, "r1", 2)
}

/// A token with these values and expiries (Unix seconds).
pub fn token(
    access: &str,
    access_expiry: u64,
    refresh: &str,
    refresh_expiry: u64,
) -> UserAccessToken {
    serde_json::from_value(serde_json::json!({
        "accessToken": {"value": access, "expiry": access_expiry},
        "refreshToken": {"value": refresh, "expiry": refresh_expiry},
    }))
    .expect("a token")
}

/// A contract with a fresh key.
pub fn contract(id: &str) -> Contract {
    Contract::new(id, PrivateKey::generate().expect("a key")).expect("a contract")
}

/// A server signing key and the key set that trusts it under `kid`.
pub fn server_keys(kid: &str) -> (PrivateKey, KeySet) {
    let key = PrivateKey::generate().expect("a key");
    let set = KeySet::from_keys([(kid.to_string(), key.public_key())]);
    (key, set)
}

/// The body of a token answer (`{"token":"JWS"}`) for `access`/`refresh`, signed by
/// `server` under `kid`.
pub fn token_answer(server: &PrivateKey, kid: &str, access: &str, refresh: &str) -> String {
    let header = format!(r#"{{"alg":"PS512","typ":"JWT","kid":"{kid}"}}"#);
    let claims = format!(
        r#"{{"access_token":{{"value":"{access}","expires_on":4000000000}},"refresh_token":{{"value":"{refresh}","expires_on":4000000000}}}}"#
    );
    let signed = jws::sign(header.as_bytes(), claims.as_bytes(), server).expect("signed");
    format!(r#"{{"token":"{signed}"}}"#)
}

/// `len` bytes of a repeating pattern (period 253).
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 253) as u8).collect()
}

/// A push of [`PendingPush::data`] into a postbox whose server answers `pending`
/// (the token has expired), then a refresh, then `delivered`: the script for
/// [`crate::scripted::serve`].
pub struct PendingPush {
    /// The keys that verify the refresh's server token.
    pub keys: KeySet,
    /// The write contract.
    pub contract: Contract,
    /// The postbox's private key (the server's side).
    pub postbox_key: PrivateKey,
    /// The postbox.
    pub postbox: Postbox,
    /// The user's expired token.
    pub token: UserAccessToken,
    /// The file pushed (200,000 bytes).
    pub data: Vec<u8>,
    /// The script: pending, the refreshed token (`new`/`r2`), delivered.
    pub responses: Vec<(u16, String)>,
}

impl PendingPush {
    /// A fresh scenario.
    pub fn new() -> Self {
        let (server, keys) = server_keys("k");
        let postbox_key = PrivateKey::generate().expect("a key");
        PendingPush {
            keys,
            contract: contract("c"),
            postbox: Postbox::new("pbx-1", &postbox_key.public_key().to_pkcs1_pem())
                .expect("a postbox"),
            postbox_key,
            token: expired_token(),
            data: pattern(200_000),
            responses: vec![
                (200, r#"{"status":"pending","expires":200000}"#.into()),
                (201, token_answer(&server, "k", "new", "r2")),
                (200, r#"{"status":"delivered","expires":200000}"#.into()),
            ],
        }
    }

    /// Checks what the server got: the push, the refresh, the push again under the new
    /// token and a new key, each with an exact `Content-Length` and the whole file; and
    /// that the client's listener heard of the new token once (`heard`).
    pub fn check(&self, got: &[crate::scripted::Captured], heard: &[String]) {
        assert_eq!(got.len(), 3);
        let (first, refresh, second) = (&got[0], &got[1], &got[2]);
        assert!(
            first
                .head
                .starts_with("POST /v1.7/permission-access/postbox/pbx-1 ")
        );
        assert!(refresh.head.starts_with("POST /v1.7/oauth/token "));
        for push in [first, second] {
            assert_eq!(
                push.header("content-length").as_deref(),
                Some(push.body.len().to_string().as_str())
            );
            assert!(push.header("transfer-encoding").is_none());
            assert_eq!(push.open_push(&self.postbox_key), self.data);
        }
        assert_eq!(first.claims()["access_token"], "old");
        assert_eq!(second.claims()["access_token"], "new");
        assert_ne!(first.claims()["iv"], second.claims()["iv"]);
        assert_eq!(heard, ["new".to_string()]);
    }
}

impl Default for PendingPush {
    fn default() -> Self {
        Self::new()
    }
}

/// `len` bytes of a repeating pattern (period 251), generated as read, never held in
/// memory; seekable.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The read position.
    pub pos: u64,
    /// The length.
    pub len: u64,
}

impl Pattern {
    /// A pattern of `len` bytes.
    pub fn new(len: u64) -> Self {
        Pattern { pos: 0, len }
    }

    /// Fills `buf` from the current position; returns how much it wrote.
    pub fn fill(&mut self, buf: &mut [u8]) -> usize {
        let n = (self.len - self.pos).min(buf.len() as u64) as usize;
        let buf = &mut buf[..n];
        // One period by hand, then doubling copies: the pattern costs little next to
        // the transfer it feeds.
        let first = (self.pos % 251) as u8;
        for (i, b) in buf.iter_mut().take(251).enumerate() {
            *b = ((first as usize + i) % 251) as u8;
        }
        let mut done = n.min(251);
        while done < n {
            let len = done.min(n - done);
            // `done` is a multiple of 251, so the copy continues the period.
            buf.copy_within(..len, done);
            done += len;
        }
        self.pos += n as u64;
        n
    }

    /// Where a seek lands.
    pub fn target(&self, to: SeekFrom) -> std::io::Result<u64> {
        let p = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        p.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before 0"))
    }
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        Ok(self.fill(buf))
    }
}

impl Seek for Pattern {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.pos = self.target(to)?.min(self.len);
        Ok(self.pos)
    }
}

/// Read-all options that poll every 20 ms.
pub fn fast() -> ReadAllOptions {
    ReadAllOptions {
        poll_interval: Duration::from_millis(20),
        ..ReadAllOptions::default()
    }
}

/// The files delivered in `events`, by name.
pub fn files_of(events: &[ReadAllEvent<FileData>]) -> BTreeMap<String, Vec<u8>> {
    events
        .iter()
        .filter_map(|e| match e {
            ReadAllEvent::File(f) => Some((f.head.name.clone(), f.data.clone())),
            _ => None,
        })
        .collect()
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
