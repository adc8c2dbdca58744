//! Verifying server-issued JWS (docs/protocol.md, "Server tokens") with the pinning of docs/protocol.md, "Server tokens": the key set is
//! fetched only from the configured URL, a token whose `jku` names another is refused,
//! the algorithm is PS512 only, and the key set is cached for a short time.

use crate::error::{Error, TransportError};
use crate::flow::{Leg, Sub, misuse};
use crate::sdk::Sdk;
use crate::wire::{self, Body};
use digime_crypto::{PublicKey, b64url_decode, jws::Compact};
use http::{Method, Response};
use serde_json::Map;
use serde_json::Value;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// A server key set: `kid` → key.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<(String, PublicKey)>,
}

/// The most keys a server key set may hold (real ones hold a few, for rotation).
pub const MAX_KEYS: usize = 64;

impl KeySet {
    /// Parses a JWKS body `{"keys":[{kid, pem | n+e, ...}]}`. Keys that are not usable
    /// RSA keys are skipped; a body of the wrong shape is an error.
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        let decode = |detail: &str| Error::Decode {
            context: "key set",
            detail: detail.to_owned(),
        };
        let value: Value = serde_json::from_slice(body).map_err(|_| decode("not JSON"))?;
        let keys = value
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| decode("no keys array"))?;
        if keys.len() > MAX_KEYS {
            // Every key is an RSA parse: a set of thousands costs seconds of CPU.
            return Err(decode(&format!(
                "{} keys, more than the {MAX_KEYS} a key set may hold",
                keys.len()
            )));
        }
        let mut out = Vec::new();
        for key in keys {
            let obj = key
                .as_object()
                .ok_or_else(|| decode("a key is not an object"))?;
            let Some(kid) = obj.get("kid").and_then(Value::as_str) else {
                continue;
            };
            let parsed = match obj.get("pem").and_then(Value::as_str) {
                Some(pem) => PublicKey::from_pem(pem).ok(),
                None => match (
                    obj.get("n").and_then(Value::as_str),
                    obj.get("e").and_then(Value::as_str),
                ) {
                    (Some(n), Some(e)) => match (b64url_decode(n), b64url_decode(e)) {
                        (Ok(n), Ok(e)) => PublicKey::from_components(&n, &e).ok(),
                        _ => None,
                    },
                    _ => None,
                },
            };
            if let Some(k) = parsed {
                out.push((kid.to_owned(), k));
            }
        }
        Ok(KeySet { keys: out })
    }

    /// A key set from known keys (offline tests, or keys shipped with the app).
    pub fn from_keys(keys: impl IntoIterator<Item = (String, PublicKey)>) -> Self {
        KeySet {
            keys: keys.into_iter().collect(),
        }
    }

    /// The first key with this `kid`.
    pub fn get(&self, kid: &str) -> Option<&PublicKey> {
        self.keys.iter().find(|(k, _)| k == kid).map(|(_, key)| key)
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is usable.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// A key set cache shared by all calls of one SDK instance: the statically trusted
/// keys, which never expire, or the last fetched set, which does. Static keys are a
/// pin: once installed, nothing is ever fetched, and a token signed by any other key is
/// refused ([`Error::UnknownSigningKey`]).
#[derive(Debug, Default)]
pub struct KeySetCache {
    inner: Mutex<Cached>,
}

#[derive(Debug, Default)]
struct Cached {
    fixed: Option<KeySet>,
    fetched: Option<(KeySet, SystemTime)>,
}

impl KeySetCache {
    /// The key for `kid`: a static one, or one of the fetched set if it is fresh at
    /// `now`.
    pub fn get(&self, kid: &str, now: SystemTime, ttl: Duration) -> Option<PublicKey> {
        let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(set) = guard.fixed.as_ref() {
            return set.get(kid).cloned();
        }
        let (set, fetched) = guard.fetched.as_ref()?;
        let age = now.duration_since(*fetched).unwrap_or(Duration::ZERO);
        if age > ttl {
            return None;
        }
        set.get(kid).cloned()
    }

    /// Stores a freshly fetched key set (ignored once static keys are installed).
    pub fn store(&self, set: KeySet, now: SystemTime) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if guard.fixed.is_none() {
            guard.fetched = Some((set, now));
        }
    }

    /// Installs a static key set that never expires and is the only one trusted from
    /// then on: no key set is fetched, and a fetched one is dropped.
    pub fn install_static(&self, set: KeySet) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        guard.fixed = Some(set);
        guard.fetched = None;
    }

    /// Whether static keys are installed (and so nothing is ever fetched).
    pub fn is_static(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .fixed
            .is_some()
    }
}

/// The checked header of a server token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTokenHeader {
    /// The key id.
    pub kid: String,
}

/// Checks a server token's header: `alg` is PS512, `kid` present, and `jku`, if present,
/// equals the pinned key-set URL.
pub fn check_header(token: &str, pinned_jwks_url: &str) -> Result<ServerTokenHeader, Error> {
    let compact = Compact::parse(token).map_err(|e| Error::ServerToken(e.to_string()))?;
    let header = compact
        .header()
        .map_err(|_| Error::ServerToken("header is not base64url".into()))?;
    let header: Value = serde_json::from_slice(&header)
        .map_err(|_| Error::ServerToken("header is not JSON".into()))?;
    let alg = header.get("alg").and_then(Value::as_str);
    if alg != Some("PS512") {
        return Err(Error::ServerToken(format!(
            "algorithm {alg:?} is not PS512"
        )));
    }
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::ServerToken("no kid in header".into()))?;
    match header.get("jku") {
        None => {}
        Some(Value::String(jku)) if jku == pinned_jwks_url => {}
        Some(other) => {
            return Err(Error::UntrustedKeySet {
                jku: other
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| other.to_string()),
                expected: pinned_jwks_url.to_owned(),
            });
        }
    }
    Ok(ServerTokenHeader {
        kid: kid.to_owned(),
    })
}

/// Verifies the signature and time claims of a server token; returns the payload object.
pub fn verify(
    token: &str,
    key: &PublicKey,
    now: SystemTime,
) -> Result<serde_json::Map<String, Value>, Error> {
    let compact = Compact::parse(token).map_err(|e| Error::ServerToken(e.to_string()))?;
    compact
        .verify(key)
        .map_err(|_| Error::ServerToken("invalid signature".into()))?;
    let payload = compact
        .payload()
        .map_err(|_| Error::ServerToken("payload is not base64url".into()))?;
    let Ok(Value::Object(claims)) = serde_json::from_slice(&payload) else {
        return Err(Error::ServerToken("payload is not a JSON object".into()));
    };
    let now_s = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    if let Some(exp) = claims.get("exp") {
        match exp.as_f64() {
            Some(exp) if exp > now_s => {}
            _ => return Err(Error::ServerToken("token expired".into())),
        }
    }
    if let Some(nbf) = claims.get("nbf") {
        match nbf.as_f64() {
            Some(nbf) if nbf <= now_s => {}
            _ => return Err(Error::ServerToken("token not yet valid".into())),
        }
    }
    Ok(claims)
}

// ---------------------------------------------------------------------------------
// Verifying a server token, fetching the pinned key set when needed.

pub(crate) struct VerifyToken {
    token: String,
    kid: Option<String>,
    fetch: Option<Leg>,
}

impl VerifyToken {
    pub(crate) fn new(token: String) -> Self {
        VerifyToken {
            token,
            kid: None,
            fetch: None,
        }
    }

    pub(crate) fn poll(&mut self, sdk: &Sdk, now: SystemTime) -> Sub<Map<String, Value>> {
        let config = sdk.config();
        let jwks_url = config.jwks_url();
        if self.kid.is_none() {
            let header = match check_header(&self.token, &jwks_url) {
                Ok(h) => h,
                Err(e) => return Sub::Done(Err(e)),
            };
            if let Some(key) = sdk.key_cache().get(&header.kid, now, config.jwks_ttl) {
                return Sub::Done(verify(&self.token, &key, now));
            }
            if sdk.key_cache().is_static() {
                // A pin: an unknown key is refused, never looked up.
                return Sub::Done(Err(Error::UnknownSigningKey { kid: header.kid }));
            }
            self.kid = Some(header.kid);
            self.fetch = Some(Leg::new("jwks", Method::GET, config.retry.clone()));
        }
        let Some(leg) = self.fetch.as_mut() else {
            return Sub::Done(Err(misuse("verification already finished")));
        };
        let step = leg.poll(now, |_| {
            Ok(wire::accept_json(wire::request(
                Method::GET,
                &jwks_url,
                None,
                Body::Empty,
            )?))
        });
        match step {
            Sub::Send(r) => Sub::Send(r),
            Sub::Sleep(d) => Sub::Sleep(d),
            Sub::Done(Err(e)) => Sub::Done(Err(e)),
            Sub::Done(Ok(resp)) => {
                if !wire::is_success(&resp) {
                    return Sub::Done(Err(wire::error_from_response(&resp, now)));
                }
                let set = match KeySet::parse(resp.body()) {
                    Ok(s) => s,
                    Err(e) => return Sub::Done(Err(e)),
                };
                let kid = self.kid.clone().unwrap_or_default();
                let key = set.get(&kid).cloned();
                sdk.key_cache().store(set, now);
                match key {
                    Some(key) => Sub::Done(verify(&self.token, &key, now)),
                    None => Sub::Done(Err(Error::UnknownSigningKey { kid })),
                }
            }
        }
    }

    pub(crate) fn handle(&mut self, outcome: Result<Response<Vec<u8>>, TransportError>) {
        if let Some(leg) = self.fetch.as_mut() {
            leg.handle(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use digime_crypto::{PrivateKey, b64url_encode, jws};

    const PIN: &str = "https://api.example/v1.7/jwks/oauth";

    fn token(key: &PrivateKey, header: &str, payload: &str) -> String {
        jws::sign(header.as_bytes(), payload.as_bytes(), key).unwrap()
    }

    #[test]
    fn pinning_and_algorithm() {
        let key = PrivateKey::generate().unwrap();
        let good = token(
            &key,
            &format!(r#"{{"alg":"PS512","typ":"JWT","kid":"k1","jku":"{PIN}"}}"#),
            r#"{"a":1}"#,
        );
        assert_eq!(check_header(&good, PIN).unwrap().kid, "k1");
        let evil = token(
            &key,
            r#"{"alg":"PS512","kid":"k1","jku":"https://evil.example/jwks"}"#,
            "{}",
        );
        assert!(matches!(
            check_header(&evil, PIN),
            Err(Error::UntrustedKeySet { .. })
        ));
        let rs = token(&key, r#"{"alg":"RS512","kid":"k1"}"#, "{}");
        assert!(matches!(check_header(&rs, PIN), Err(Error::ServerToken(_))));
        let nokid = token(&key, r#"{"alg":"PS512"}"#, "{}");
        assert!(matches!(
            check_header(&nokid, PIN),
            Err(Error::ServerToken(_))
        ));
        assert!(matches!(
            check_header("garbage", PIN),
            Err(Error::ServerToken(_))
        ));
        let claims = verify(&good, &key.public_key(), SystemTime::now()).unwrap();
        assert_eq!(claims["a"], 1);
        let other = PrivateKey::generate().unwrap();
        assert!(verify(&good, &other.public_key(), SystemTime::now()).is_err());
        let expired = token(&key, r#"{"alg":"PS512","kid":"k1"}"#, r#"{"exp":1}"#);
        assert!(verify(&expired, &key.public_key(), SystemTime::now()).is_err());
    }

    #[test]
    fn key_sets_by_pem_and_components() {
        let key = PrivateKey::generate().unwrap().public_key();
        let body = serde_json::json!({"keys": [
            {"kid": "junk", "kty": "RSA", "pem": "not a pem"},
            {"kid": "a", "kty": "RSA", "pem": key.to_pkcs1_pem()},
            {"kid": "b", "kty": "RSA", "n": b64url_encode(key.modulus()), "e": b64url_encode(key.exponent())},
        ]});
        let set = KeySet::parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set.get("a"), Some(&key));
        assert_eq!(set.get("b"), Some(&key));
        assert!(KeySet::parse(b"{}").is_err());
        assert!(KeySet::parse(b"[]").is_err());
        assert!(KeySet::parse(br#"{"keys":[1]}"#).is_err());
        assert!(KeySet::parse(br#"{"keys":[]}"#).unwrap().is_empty());
    }

    #[test]
    fn cache_expires() {
        let key = PrivateKey::generate().unwrap().public_key();
        let cache = KeySetCache::default();
        let t0 = SystemTime::now();
        cache.store(KeySet::from_keys([("k".to_string(), key)]), t0);
        let ttl = Duration::from_secs(60);
        assert!(cache.get("k", t0 + Duration::from_secs(59), ttl).is_some());
        assert!(cache.get("k", t0 + Duration::from_secs(61), ttl).is_none());
        assert!(cache.get("other", t0, ttl).is_none());
    }
}
