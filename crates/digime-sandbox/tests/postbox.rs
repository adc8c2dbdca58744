//! The postbox era of the sandbox (`docs/protocol.md`, "Postbox era"), exercised as a
//! server: raw HTTP, request JWTs signed by hand, and a minimal client-side envelope
//! written here (RSA-OAEP-SHA1 key wrap, AES-256-CBC/PKCS#7, multipart) — no SDK
//! request builders.

mod support;

use base64::Engine;
use digime_crypto::{CodeVerifier, PrivateKey, PublicKey, cbc};
use digime_sandbox::postbox::{self, PostboxError};
use digime_sandbox::{
    ConsentMode, DEMO_APP_ID, DEMO_READ_CONTRACT, DEMO_WRITE_CONTRACT, SandboxConfig,
};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use support::{
    Env, Reply, User, claims, now_ms, param, params, raw_connection, read_client, reply, start,
    write_client,
};

const CALLBACK: &str = "https://app.example.com/push?sessionKey=mine";
const REDIRECT: &str = "https://app.example.com/exchange-token";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn descriptor() -> Value {
    json!({"mimeType": "application/json", "accounts": [{"accountId": "acc-001"}],
           "reference": ["receipt-42.json"], "tags": ["receipt"]})
}

// ---------------------------------------------------------------------------
// The client side, written from the protocol (the push envelope and its multipart body).

/// An encrypted payload: the three envelope strings and the bare file ciphertext.
#[derive(Clone)]
struct Sealed {
    symmetrical_key: String,
    iv: String,
    metadata: String,
    file: Vec<u8>,
}

fn seal_with(wrap_to: &PublicKey, key: [u8; 32], iv: [u8; 16], file: &[u8], d: &Value) -> Sealed {
    Sealed {
        symmetrical_key: b64(&wrap_to.encrypt_oaep_sha1(&key).unwrap()),
        iv: hex(&iv),
        metadata: b64(&cbc::encrypt(&key, &iv, d.to_string().as_bytes()).unwrap()),
        file: cbc::encrypt(&key, &iv, file).unwrap(),
    }
}

fn seal(public_key: &PublicKey, file: &[u8], d: &Value) -> Sealed {
    let mut key = [0u8; 32];
    let mut iv = [0u8; 16];
    digime_crypto::random::fill(&mut key).unwrap();
    digime_crypto::random::fill(&mut iv).unwrap();
    seal_with(public_key, key, iv, file, d)
}

const BOUNDARY: &str = "--------------------------941175817833237358633249";

/// The Node SDK's multipart layout.
fn multipart(content: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"receipt-42.json\"\r\nContent-Type: application/json\r\n\r\n"
    )
    .into_bytes();
    out.extend_from_slice(content);
    out.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    out
}

fn multipart_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

/// A callback's public key: bare base64 of a PKCS#1 `RSAPublicKey`.
fn parse_public_key(text: &str) -> PublicKey {
    let der = base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap();
    // PKCS#1: SEQUENCE { INTEGER n, INTEGER e }, not SPKI's SEQUENCE { SEQUENCE … }.
    assert_eq!(der[0], 0x30);
    assert_eq!(der[4], 0x02, "not PKCS#1");
    let key = PublicKey::from_der(&der).unwrap();
    assert_eq!(key.bits(), 2048);
    assert_eq!(key.to_pkcs1_der(), &der[..]);
    key
}

// ---------------------------------------------------------------------------
// The postbox era's side of the harness (the rest is in `support`).

/// A postbox as the callback hands it out.
struct Postbox {
    id: String,
    key: PublicKey,
}

fn env() -> Env {
    start(SandboxConfig {
        consent: ConsentMode::Auto,
        sync_step: Duration::from_millis(10),
        ..SandboxConfig::default()
    })
}

impl Env {
    fn url(&self, version: &str, path: &str) -> String {
        format!("{}{path}", self.sandbox.info().api_version(version))
    }

    fn session_raw(&self, version: &str, body: &Value) -> Reply {
        reply(
            self.http
                .post(&self.url(version, "permission-access/session"))
                .content_type("application/json")
                .send(body.to_string()),
        )
    }

    fn session(&self, version: &str) -> String {
        let r = self.session_raw(
            version,
            &json!({"appId": DEMO_APP_ID, "contractId": DEMO_WRITE_CONTRACT,
                    "sdkAgent": {"name": "js", "version": "3.0.0", "meta": {"node": "v14.15.0"}},
                    "accept": {"compression": "gzip"}}),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        let expiry = v["expiry"].as_u64().unwrap();
        assert!(expiry > now_ms() + 29 * 60_000 && expiry <= now_ms() + 30 * 60_000);
        assert!(v["sessionExchangeToken"].is_string());
        v["sessionKey"].as_str().unwrap().to_owned()
    }

    /// The native app opens a deep link: the raw answer.
    fn open_link(&self, link: &str, user: &str) -> Reply {
        let url = self.sandbox.info().native_app_url(link, user).unwrap();
        self.get(&url)
    }

    /// The callback of a postbox link, checked: result, id and PKCS#1 key.
    fn create_postbox(&self, link: &str, user: &str) -> (url::Url, Postbox) {
        let cb = self.open_link(link, user).location();
        assert_eq!(param(&cb, "result").as_deref(), Some("SUCCESS"), "{cb}");
        let id = param(&cb, "postboxId").unwrap();
        let key = parse_public_key(&param(&cb, "publicKey").unwrap());
        (cb, Postbox { id, key })
    }

    /// A v1–v3 (E0) link of a fresh v1.4 session: `(session, postbox)`.
    fn e0_postbox(&self, user: &str) -> (String, Postbox) {
        let sk = self.session("v1.4");
        let link = format!(
            "digime://postbox/create?sessionKey={sk}&callbackUrl={}&appId={DEMO_APP_ID}&sdkVersion=3.0.0&resultVersion=2",
            enc(CALLBACK)
        );
        let (_, pb) = self.create_postbox(&link, user);
        (sk, pb)
    }

    fn push_e0(&self, version: &str, postbox: &str, session: &str, s: &Sealed) -> Reply {
        reply(
            self.http
                .post(&self.url(version, &format!("permission-access/postbox/{postbox}")))
                .header("accept", "application/json")
                .header("contenttype", "multipart/form-data")
                .header("sessionkey", session)
                .header("symmetricalkey", &s.symmetrical_key)
                .header("iv", &s.iv)
                .header("metadata", &s.metadata)
                .content_type(&multipart_type())
                .send(&multipart(&s.file)[..]),
        )
    }

    fn push_jwt(&self, version: &str, postbox: &str, authorization: &str, body: &[u8]) -> Reply {
        reply(
            self.http
                .post(&self.url(version, &format!("permission-access/postbox/{postbox}")))
                .header("authorization", authorization)
                .header("accept", "application/json")
                .content_type(&multipart_type())
                .send(body),
        )
    }

    /// The claims of a v4 push: access token only when given.
    fn e1_bearer(&self, s: &Sealed, session: &str, access_token: Option<&str>) -> String {
        let mut claims = json!({
            "iv": s.iv, "metadata": s.metadata, "redirect_uri": REDIRECT,
            "session_key": session, "symmetrical_key": s.symmetrical_key,
        });
        if let Some(at) = access_token {
            claims["access_token"] = json!(at);
        }
        self.bearer(&write_client(), claims)
    }

    /// The claims of a v8 push.
    fn e2_bearer(&self, s: &Sealed, access_token: &str) -> String {
        self.bearer(
            &write_client(),
            json!({"access_token": access_token, "iv": s.iv, "metadata": s.metadata,
                   "symmetrical_key": s.symmetrical_key}),
        )
    }

    fn push_e1(&self, postbox: &str, session: &str, at: Option<&str>, s: &Sealed) -> Reply {
        self.push_jwt(
            "v1.5",
            postbox,
            &self.e1_bearer(s, session, at),
            &multipart(&s.file),
        )
    }

    fn push_e2(&self, postbox: &str, at: &str, s: &Sealed) -> Reply {
        self.push_jwt("v1.7", postbox, &self.e2_bearer(s, at), &multipart(&s.file))
    }

    /// The whole E1 ongoing flow for `user`: session, pre-authorization, link,
    /// exchange. `(session, postbox, flat token payload)`.
    fn e1_ongoing(&self, user: &str) -> (String, Postbox, Value) {
        let sk = self.session("v1.5");
        let verifier = CodeVerifier::generate().unwrap();
        let r = reply(
            self.http
                .post(&self.url("v1.5", "oauth/authorize"))
                .header(
                    "authorization",
                    &self.bearer(
                        &write_client(),
                        json!({"code_challenge": verifier.challenge(),
                               "code_challenge_method": "S256", "redirect_uri": REDIRECT,
                               "response_mode": "query", "response_type": "code",
                               "state": "st-4"}),
                    ),
                )
                .send_empty(),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let jku = self.url("v1.5", "jwks/oauth");
        let pre = self.server_payload(r.json()["token"].as_str().unwrap(), &jku);
        assert_eq!(pre.as_object().unwrap().len(), 1);
        let code = pre["preauthorization_code"].as_str().unwrap();
        // v4 builds the link with form encoding, in this order.
        let link = format!(
            "digime://postbox/create?preauthorizationCode={code}&callbackUrl={}&sessionKey={sk}&appId={DEMO_APP_ID}&sdkVersion=4.0.0",
            enc(REDIRECT)
        );
        let (cb, pb) = self.create_postbox(&link, user);
        let names: Vec<String> = params(&cb).into_iter().map(|(k, _)| k).collect();
        assert_eq!(names, ["result", "postboxId", "publicKey", "code", "state"]);
        assert_eq!(param(&cb, "state").as_deref(), Some("st-4"));
        let token = self.exchange_v15(&param(&cb, "code").unwrap(), verifier.expose());
        assert_eq!(token.status, 201, "{}", token.text());
        let flat = self.server_payload(token.json()["token"].as_str().unwrap(), &jku);
        (sk, pb, flat)
    }

    fn exchange_v15(&self, code: &str, verifier: &str) -> Reply {
        reply(
            self.http
                .post(&self.url("v1.5", "oauth/token"))
                .header(
                    "authorization",
                    &self.bearer(
                        &write_client(),
                        json!({"code": code, "code_verifier": verifier,
                               "grant_type": "authorization_code", "redirect_uri": REDIRECT}),
                    ),
                )
                .send_empty(),
        )
    }

    fn refresh_v15(&self, refresh_token: &str, redirect_uri: Option<&str>) -> Reply {
        let mut claims = json!({"grant_type": "refresh_token", "refresh_token": refresh_token});
        if let Some(r) = redirect_uri {
            claims["redirect_uri"] = json!(r);
        }
        reply(
            self.http
                .post(&self.url("v1.5", "oauth/token"))
                .header("content-type", "application/json")
                .header("authorization", &self.bearer(&write_client(), claims))
                .send_empty(),
        )
    }

    /// The SaaS flow on v1.7 with the demo write contract: `(callback, token payload)`.
    fn e2_consent(&self, access_token: Option<&str>) -> (url::Url, Value) {
        let verifier = CodeVerifier::generate().unwrap();
        let mut claims = json!({"code_challenge": verifier.challenge(),
            "code_challenge_method": "S256", "redirect_uri": "https://app.example.com/return?userId=42",
            "response_mode": "query", "response_type": "code", "state": "st-8"});
        if let Some(at) = access_token {
            claims["access_token"] = json!(at);
        }
        let r = reply(
            self.http
                .post(&self.url("v1.7", "oauth/authorize"))
                .header("authorization", &self.bearer(&write_client(), claims))
                .content_type("application/json")
                .send(
                    json!({"agent": {"sdk": {"name": "nodejs", "version": "8.0.0", "meta": {}}}})
                        .to_string(),
                ),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let jku = self.url("v1.7", "jwks/oauth");
        let pre = self.server_payload(r.json()["token"].as_str().unwrap(), &jku);
        let onboard = self.onboard(&format!(
            "authorize?code={}",
            pre["preauthorization_code"].as_str().unwrap()
        ));
        let cb = self.get(&onboard).location();
        let t = reply(
            self.http
                .post(&self.url("v1.7", "oauth/token"))
                .header(
                    "authorization",
                    &self.bearer(
                        &write_client(),
                        json!({"code": param(&cb, "code").unwrap(),
                               "code_verifier": verifier.expose(),
                               "grant_type": "authorization_code"}),
                    ),
                )
                .send_empty(),
        );
        assert_eq!(t.status, 201, "{}", t.text());
        let payload = self.server_payload(t.json()["token"].as_str().unwrap(), &jku);
        (cb, payload)
    }

    fn files(&self, user: &str) -> Vec<Value> {
        self.control_json(&format!("users/{user}/files"))["files"]
            .as_array()
            .unwrap()
            .clone()
    }

    fn pending(&self, user: &str) -> usize {
        self.control_json(&format!("users/{user}/postboxes"))["postboxes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["pending"].as_array().unwrap().len())
            .sum()
    }

    fn content(&self, user: &str, name: &str) -> Vec<u8> {
        let r = self.get(&self.control(&format!("users/{user}/files/{name}")));
        assert_eq!(r.status, 200);
        r.body
    }

    fn expire_access_tokens(&self, user: &str) {
        let r = self.control_post(&format!("users/{user}/expire-access-tokens"), json!({}));
        assert_eq!(r.status, 200);
    }

    /// Reads a raw file back through the read API with the demo read contract.
    fn read_back(&self, read_at: &str, name: &str) -> (Value, Vec<u8>) {
        let r = reply(
            self.http
                .post(&self.url("v1.7", "permission-access/trigger"))
                .header("authorization", &self.read_bearer(read_at))
                .content_type("application/json")
                .send(json!({"agent": {"sdk": {"name": "rust", "version": "0.1.0"}}}).to_string()),
        );
        assert_eq!(r.status, 202, "{}", r.text());
        let key = r.json()["session"]["key"].as_str().unwrap().to_owned();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let l = reply(
                self.http
                    .get(&self.url("v1.7", &format!("permission-access/query/{key}")))
                    .header("authorization", &self.read_bearer(read_at))
                    .call(),
            );
            assert_eq!(l.status, 200);
            let v = l.json();
            if v["status"]["state"] == "completed" {
                assert!(
                    v["fileList"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|f| f["name"] == name),
                    "{v}"
                );
                break;
            }
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(10));
        }
        let f = reply(
            self.http
                .get(&self.url("v1.7", &format!("permission-access/query/{key}/{name}")))
                .header("authorization", &self.read_bearer(read_at))
                .call(),
        );
        assert_eq!(f.status, 200);
        let meta = f.headers.get("x-metadata").unwrap().to_str().unwrap();
        let meta: Value =
            serde_json::from_slice(&digime_crypto::b64url_decode(meta).unwrap()).unwrap();
        let plain = digime_crypto::envelope::decrypt(
            &self.read_key,
            &f.body,
            digime_crypto::envelope::Format::Current,
        )
        .unwrap();
        (meta["metadata"].clone(), plain)
    }
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn assert_ok(r: &Reply, status: &str) {
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"status": status, "expires": 2_592_000}));
}

fn assert_refused(r: &Reply, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.code(), code, "{}", r.text());
}

// ---------------------------------------------------------------------------
// E0.

#[test]
fn e0_push_waits_in_the_postbox_until_the_user_imports_it() {
    let env = env();
    let User {
        id: user, read_at, ..
    } = env.user();
    let sk = env.session("v1.4");
    let link = format!(
        "digime://postbox/create?sessionKey={sk}&callbackUrl={}&appId={DEMO_APP_ID}&sdkVersion=3.0.0&resultVersion=2",
        enc(CALLBACK)
    );
    let (cb, pb) = env.create_postbox(&link, &user);
    // The callback's own parameters come first, ours after.
    assert!(
        cb.as_str().starts_with(
            "https://app.example.com/push?sessionKey=mine&result=SUCCESS&postboxId=pbx_"
        )
    );
    // publicKey is percent-encoded: no raw '+', '/' or '='.
    let raw_key = cb.query().unwrap().split("publicKey=").nth(1).unwrap();
    assert!(!raw_key.contains(['+', '/', '=']), "{raw_key}");

    let file = br#"{"total":12.5}"#;
    let sealed = seal(&pb.key, file, &descriptor());
    let r = env.push_e0("v1.4", &pb.id, &sk, &sealed);
    assert_ok(&r, "pending");
    assert!(env.files(&user).is_empty());
    assert_eq!(env.pending(&user), 1);

    let imported = env.control_post(&format!("users/{user}/postbox-import"), json!({}));
    assert_eq!(imported.status, 200);
    let imported = imported.json();
    assert_eq!(imported["expired"], 0);
    let items = imported["imported"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["postboxId"], json!(pb.id));
    assert_eq!(items[0]["size"], 14);
    assert_eq!(env.pending(&user), 0);

    let files = env.files(&user);
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["descriptor"], descriptor());
    assert_eq!(files[0]["contractId"], DEMO_WRITE_CONTRACT);
    assert_eq!(files[0]["appId"], DEMO_APP_ID);
    let name = files[0]["name"].as_str().unwrap().to_owned();
    assert_eq!(env.content(&user, &name), file);

    // A second import finds nothing.
    let again = env.control_post(&format!("users/{user}/postbox-import"), json!({}));
    assert_eq!(again.json()["imported"], json!([]));

    // A read contract of the same application reads it back like an imported file.
    let (meta, plain) = env.read_back(&read_at, &name);
    assert_eq!(plain, file);
    assert_eq!(meta["mimetype"], "application/json");
    assert_eq!(meta["accounts"], json!([{"accountid": "acc-001"}]));
    assert_eq!(meta["tags"], json!(["receipt"]));
    assert_eq!(meta["contractid"], DEMO_WRITE_CONTRACT);
}

#[test]
fn e0_v05_link_and_v1_0_push() {
    let env = env();
    let user = env.user().id;
    let sk = env.session("v1.0");
    // v0.5: `callbackURL`, no resultVersion → POSTBOX_READY.
    let link = format!(
        "digime://postbox/create?sessionKey={sk}&callbackURL={}&appId={DEMO_APP_ID}&sdkVersion=0.5.0",
        enc("https://app.example.com/ready")
    );
    let cb = env.open_link(&link, &user).location();
    assert_eq!(param(&cb, "result").as_deref(), Some("POSTBOX_READY"));
    let pb = Postbox {
        id: param(&cb, "postboxId").unwrap(),
        key: parse_public_key(&param(&cb, "publicKey").unwrap()),
    };
    let sealed = seal(&pb.key, b"v0.5 bytes", &descriptor());
    assert_ok(&env.push_e0("v1.0", &pb.id, &sk, &sealed), "pending");
    // Header names in any case; the envelope in any era's route of the same kind.
    let r = reply(
        env.http
            .post(&env.url("v1.4", &format!("permission-access/postbox/{}", pb.id)))
            .header("SessionKey", &sk)
            .header("SYMMETRICALKEY", &sealed.symmetrical_key)
            .header("Iv", &sealed.iv)
            .header("Metadata", &sealed.metadata)
            .content_type(&multipart_type())
            .send(&multipart(&sealed.file)[..]),
    );
    assert_ok(&r, "pending");
    assert_eq!(env.pending(&user), 2);
}

#[test]
fn e0_missing_headers_and_sessions() {
    let env = env();
    let user = env.user().id;
    let (sk, pb) = env.e0_postbox(&user);
    let sealed = seal(&pb.key, b"x", &descriptor());
    let r = reply(
        env.http
            .post(&env.url("v1.4", &format!("permission-access/postbox/{}", pb.id)))
            .header("sessionKey", &sk)
            .header("iv", &sealed.iv)
            .header("metadata", &sealed.metadata)
            .content_type(&multipart_type())
            .send(&multipart(&sealed.file)[..]),
    );
    assert_refused(&r, 400, "ValidationErrors");
    assert!(r.text().contains("symmetricalKey"), "{}", r.text());
    assert_refused(
        &env.push_e0("v1.4", &pb.id, "sess_unknown", &sealed),
        404,
        "SessionNotFound",
    );
    let r = env.control_post(&format!("sessions/{sk}/expire"), json!({}));
    assert_eq!(r.status, 200);
    assert_refused(
        &env.push_e0("v1.4", &pb.id, &sk, &sealed),
        410,
        "SessionExpired",
    );
    // A fresh session of the same contract works.
    let sk2 = env.session("v1.4");
    assert_ok(&env.push_e0("v1.4", &pb.id, &sk2, &sealed), "pending");
    // The expired session no longer opens links.
    let link = format!(
        "digime://postbox/create?sessionKey={sk}&callbackUrl={}&appId={DEMO_APP_ID}",
        enc(CALLBACK)
    );
    assert_refused(&env.open_link(&link, &user), 410, "SessionExpired");
    assert_eq!(env.pending(&user), 1);
}

// ---------------------------------------------------------------------------
// E1.

#[test]
fn e1_once_push_is_pending() {
    let env = env();
    let user = env.user().id;
    let sk = env.session("v1.5");
    let link = format!(
        "digime://postbox/create?callbackUrl={}&sessionKey={sk}&appId={DEMO_APP_ID}&sdkVersion=4.0.0",
        enc(CALLBACK)
    );
    let (cb, pb) = env.create_postbox(&link, &user);
    assert!(param(&cb, "code").is_none() && param(&cb, "state").is_none());
    let sealed = seal(&pb.key, b"once", &descriptor());
    assert_ok(&env.push_e1(&pb.id, &sk, None, &sealed), "pending");
    // A bogus access token is no error either: pending, never 401.
    assert_ok(
        &env.push_e1(&pb.id, &sk, Some("at_bogus"), &sealed),
        "pending",
    );
    // session_key and redirect_uri are required in v4.
    let no_session = env.bearer(
        &write_client(),
        json!({"iv": sealed.iv, "metadata": sealed.metadata, "redirect_uri": REDIRECT,
               "symmetrical_key": sealed.symmetrical_key}),
    );
    assert_refused(
        &env.push_jwt("v1.5", &pb.id, &no_session, &multipart(&sealed.file)),
        400,
        "ValidationErrors",
    );
    let no_redirect = env.bearer(
        &write_client(),
        json!({"iv": sealed.iv, "metadata": sealed.metadata, "session_key": sk,
               "symmetrical_key": sealed.symmetrical_key}),
    );
    assert_refused(
        &env.push_jwt("v1.5", &pb.id, &no_redirect, &multipart(&sealed.file)),
        400,
        "ValidationErrors",
    );
    // A replayed JWT (nonce) and a bad signature are 406, as everywhere.
    let bearer = env.e1_bearer(&sealed, &sk, None);
    assert_ok(
        &env.push_jwt("v1.5", &pb.id, &bearer, &multipart(&sealed.file)),
        "pending",
    );
    assert_refused(
        &env.push_jwt("v1.5", &pb.id, &bearer, &multipart(&sealed.file)),
        406,
        "InvalidRequest",
    );
    let forged = support::bearer(
        &PrivateKey::generate().unwrap(),
        &claims(&write_client(), json!({"iv": sealed.iv})),
    );
    assert_refused(
        &env.push_jwt("v1.5", &pb.id, &forged, &multipart(&sealed.file)),
        406,
        "ValidationErrors",
    );
    assert_eq!(env.pending(&user), 3);
    assert!(env.files(&user).is_empty());
}

#[test]
fn e1_ongoing_push_with_token_is_delivered() {
    let env = env();
    let user = env.user().id;
    let (sk, pb, flat) = env.e1_ongoing(&user);
    // The flat token of v1.5.
    let keys: Vec<&String> = flat.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 3, "{flat}");
    let at = flat["access_token"].as_str().unwrap();
    assert!(flat["refresh_token"].is_string());
    let exp = flat["expires_on"].as_u64().unwrap();
    assert!(exp > now_ms() / 1000 + 3000 && exp <= now_ms() / 1000 + 3600);

    let file = vec![7u8; 100_000];
    let sealed = seal(&pb.key, &file, &descriptor());
    assert_ok(&env.push_e1(&pb.id, &sk, Some(at), &sealed), "delivered");
    let files = env.files(&user);
    assert_eq!(files.len(), 1);
    assert_eq!(env.content(&user, files[0]["name"].as_str().unwrap()), file);
    assert_eq!(env.pending(&user), 0);
    // Without the token the same postbox queues.
    assert_ok(&env.push_e1(&pb.id, &sk, None, &sealed), "pending");
    assert_eq!(env.pending(&user), 1);
}

#[test]
fn e1_code_exchange_is_strict() {
    let env = env();
    let user = env.user().id;
    let sk = env.session("v1.5");
    let verifier = CodeVerifier::generate().unwrap();
    let authorize = |claims: Value, body: &str| {
        reply(
            env.http
                .post(&env.url("v1.5", "oauth/authorize"))
                .header("authorization", &env.bearer(&write_client(), claims))
                .send(body),
        )
    };
    let good = json!({"code_challenge": verifier.challenge(), "code_challenge_method": "S256",
        "redirect_uri": REDIRECT, "response_mode": "query", "response_type": "code"});
    // No body on v1.5.
    assert_refused(
        &authorize(good.clone(), "{\"agent\":{}}"),
        400,
        "ValidationErrors",
    );
    let mut plain = good.clone();
    plain["code_challenge_method"] = json!("plain");
    assert_refused(&authorize(plain, ""), 400, "ValidationErrors");
    let mut bad_redirect = good.clone();
    bad_redirect["redirect_uri"] = json!("http://example.com/x");
    assert_refused(&authorize(bad_redirect, ""), 404, "InvalidRedirectUri");
    // Without state: the callback has none.
    let r = authorize(good, "");
    assert_eq!(r.status, 201, "{}", r.text());
    let pre = env.server_payload(
        r.json()["token"].as_str().unwrap(),
        &env.url("v1.5", "jwks/oauth"),
    );
    let code = pre["preauthorization_code"].as_str().unwrap();
    let link = |callback: &str| {
        format!(
            "digime://postbox/create?preauthorizationCode={code}&callbackUrl={}&sessionKey={sk}&appId={DEMO_APP_ID}&sdkVersion=4.0.0",
            enc(callback)
        )
    };
    // The callback must be the pre-authorized redirect URI.
    assert_refused(
        &env.open_link(&link("https://elsewhere.example.com/"), &user),
        404,
        "InvalidRedirectUri",
    );
    let (cb, _) = env.create_postbox(&link(REDIRECT), &user);
    assert!(param(&cb, "state").is_none());
    let auth_code = param(&cb, "code").unwrap();
    // The pre-authorization code is spent.
    assert_refused(&env.open_link(&link(REDIRECT), &user), 400, "InvalidGrant");
    // A wrong verifier spends the code.
    assert_refused(
        &env.exchange_v15(&auth_code, CodeVerifier::generate().unwrap().expose()),
        400,
        "InvalidGrant",
    );
    assert_refused(
        &env.exchange_v15(&auth_code, verifier.expose()),
        400,
        "InvalidGrant",
    );
}

#[test]
fn e1_legacy_codes_only_on_v1_5() {
    let env = env();
    let user = env.user().id;
    let sk = env.session("v1.5");
    let verifier = CodeVerifier::generate().unwrap();
    let r = reply(
        env.http
            .post(&env.url("v1.5", "oauth/authorize"))
            .header(
                "authorization",
                &env.bearer(
                    &write_client(),
                    json!({"code_challenge": verifier.challenge(), "code_challenge_method": "S256",
                           "redirect_uri": REDIRECT, "response_mode": "query",
                           "response_type": "code", "state": "s"}),
                ),
            )
            .send_empty(),
    );
    let pre = env.server_payload(
        r.json()["token"].as_str().unwrap(),
        &env.url("v1.5", "jwks/oauth"),
    );
    let link = format!(
        "digime://postbox/create?preauthorizationCode={}&callbackUrl={}&sessionKey={sk}&appId={DEMO_APP_ID}",
        pre["preauthorization_code"].as_str().unwrap(),
        enc(REDIRECT)
    );
    let (cb, _) = env.create_postbox(&link, &user);
    let r = reply(
        env.http
            .post(&env.url("v1.7", "oauth/token"))
            .header(
                "authorization",
                &env.bearer(
                    &write_client(),
                    json!({"code": param(&cb, "code").unwrap(), "code_verifier": verifier.expose(),
                           "grant_type": "authorization_code"}),
                ),
            )
            .send_empty(),
    );
    assert_refused(&r, 400, "InvalidGrant");
}

#[test]
fn e1_expired_token_is_pending_then_refresh_delivers() {
    let env = env();
    let user = env.user().id;
    let (sk, pb, flat) = env.e1_ongoing(&user);
    let at = flat["access_token"].as_str().unwrap();
    let rt = flat["refresh_token"].as_str().unwrap();
    env.expire_access_tokens(&user);
    let sealed = seal(&pb.key, b"after refresh", &descriptor());
    assert_ok(&env.push_e1(&pb.id, &sk, Some(at), &sealed), "pending");
    // v4 refresh: redirect_uri required.
    assert_refused(&env.refresh_v15(rt, None), 400, "ValidationErrors");
    let r = env.refresh_v15(rt, Some(REDIRECT));
    assert_eq!(r.status, 201, "{}", r.text());
    let fresh = env.server_payload(
        r.json()["token"].as_str().unwrap(),
        &env.url("v1.5", "jwks/oauth"),
    );
    assert_ne!(fresh["refresh_token"].as_str().unwrap(), rt);
    // Rotated: the old refresh token is dead.
    assert_refused(&env.refresh_v15(rt, Some(REDIRECT)), 401, "InvalidToken");
    // The SDK re-seals (fresh K, IV, nonce) and pushes once more.
    let sealed = seal(&pb.key, b"after refresh", &descriptor());
    let at2 = fresh["access_token"].as_str().unwrap();
    assert_ok(&env.push_e1(&pb.id, &sk, Some(at2), &sealed), "delivered");
    assert_eq!(env.files(&user).len(), 1);
    assert_eq!(env.pending(&user), 1);
}

// ---------------------------------------------------------------------------
// E2.

#[test]
fn e2_consent_hands_out_a_postbox_and_pushes_are_delivered() {
    let env = env();
    let (cb, token) = env.e2_consent(None);
    let names: Vec<String> = params(&cb).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        names,
        [
            "userId",
            "success",
            "code",
            "state",
            "postboxId",
            "publicKey"
        ]
    );
    let pb = Postbox {
        id: param(&cb, "postboxId").unwrap(),
        key: parse_public_key(&param(&cb, "publicKey").unwrap()),
    };
    let user = token["sub"].as_str().unwrap().to_owned();
    let at = token["access_token"]["value"].as_str().unwrap();
    let file = b"saas era".to_vec();
    let sealed = seal(&pb.key, &file, &descriptor());
    assert_ok(&env.push_e2(&pb.id, at, &sealed), "delivered");
    let files = env.files(&user);
    assert_eq!(files.len(), 1);
    assert_eq!(env.content(&user, files[0]["name"].as_str().unwrap()), file);
    // v5–v7 also sent redirect_uri: tolerated.
    let with_redirect = env.bearer(
        &write_client(),
        json!({"access_token": at, "iv": sealed.iv, "metadata": sealed.metadata,
               "redirect_uri": REDIRECT, "symmetrical_key": sealed.symmetrical_key}),
    );
    assert_ok(
        &env.push_jwt("v1.7", &pb.id, &with_redirect, &multipart(&sealed.file)),
        "delivered",
    );
    // access_token is a required claim.
    let without = env.bearer(
        &write_client(),
        json!({"iv": sealed.iv, "metadata": sealed.metadata,
               "symmetrical_key": sealed.symmetrical_key}),
    );
    assert_refused(
        &env.push_jwt("v1.7", &pb.id, &without, &multipart(&sealed.file)),
        400,
        "ValidationErrors",
    );
    // Consenting again for the same user reuses the postbox.
    let (cb2, token2) = env.e2_consent(Some(at));
    assert_eq!(token2["sub"], token["sub"]);
    assert_eq!(param(&cb2, "postboxId"), Some(pb.id.clone()));
    assert_eq!(param(&cb2, "publicKey"), param(&cb, "publicKey"));
    assert_eq!(env.files(&user).len(), 2);
}

#[test]
fn e2_expired_token_is_pending_then_refresh_delivers() {
    let env = env();
    let (cb, token) = env.e2_consent(None);
    let user = token["sub"].as_str().unwrap().to_owned();
    let pb = parse_public_key(&param(&cb, "publicKey").unwrap());
    let id = param(&cb, "postboxId").unwrap();
    env.expire_access_tokens(&user);
    let sealed = seal(&pb, b"late", &descriptor());
    let at = token["access_token"]["value"].as_str().unwrap();
    assert_ok(&env.push_e2(&id, at, &sealed), "pending");
    assert_ok(&env.push_e2(&id, "at_unknown", &sealed), "pending");
    let r = reply(
        env.http
            .post(&env.url("v1.7", "oauth/token"))
            .header(
                "authorization",
                &env.bearer(
                    &write_client(),
                    json!({"grant_type": "refresh_token",
                           "refresh_token": token["refresh_token"]["value"]}),
                ),
            )
            .send_empty(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let fresh = env.server_payload(
        r.json()["token"].as_str().unwrap(),
        &env.url("v1.7", "jwks/oauth"),
    );
    let sealed = seal(&pb, b"late", &descriptor());
    let at2 = fresh["access_token"]["value"].as_str().unwrap();
    assert_ok(&env.push_e2(&id, at2, &sealed), "delivered");
    assert_eq!(env.files(&user).len(), 1);
    assert_eq!(env.pending(&user), 2);
}

// ---------------------------------------------------------------------------
// Refusals: nothing is stored.

/// A user with an E2 postbox and a live token: `(user, postbox, token)`.
fn e2_setup(env: &Env) -> (String, Postbox, String) {
    let (cb, token) = env.e2_consent(None);
    (
        token["sub"].as_str().unwrap().to_owned(),
        Postbox {
            id: param(&cb, "postboxId").unwrap(),
            key: parse_public_key(&param(&cb, "publicKey").unwrap()),
        },
        token["access_token"]["value"].as_str().unwrap().to_owned(),
    )
}

fn assert_nothing_stored(env: &Env, user: &str) {
    assert!(env.files(user).is_empty());
    assert_eq!(env.pending(user), 0);
    // Nothing on disk either: no stored file, no leftover `.partial`.
    let user_dir = env.library_dir(user);
    let left: Vec<_> = std::fs::read_dir(&user_dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "files left in {}: {left:?}",
        user_dir.display()
    );
}

#[test]
fn a_key_wrapped_to_another_public_key_is_refused() {
    let env = env();
    let (user, pb, at) = e2_setup(&env);
    let other = PrivateKey::generate().unwrap().public_key();
    let sealed = seal(&other, b"secret", &descriptor());
    let r = env.push_e2(&pb.id, &at, &sealed);
    assert_refused(&r, 400, "ValidationErrors");
    assert!(r.text().contains("publicKey"), "{}", r.text());
    // Same for E0 and E1 (the key is checked before the body is read).
    let user0 = env.user().id;
    let (sk, pb0) = env.e0_postbox(&user0);
    let sealed0 = seal(&pb.key, b"secret", &descriptor());
    assert_refused(
        &env.push_e0("v1.4", &pb0.id, &sk, &sealed0),
        400,
        "ValidationErrors",
    );
    assert_nothing_stored(&env, &user);
    assert_nothing_stored(&env, &user0);
}

#[test]
fn bad_iv_bad_metadata_and_corrupted_bodies_are_refused() {
    let env = env();
    let (user, pb, at) = e2_setup(&env);
    let file = vec![42u8; 5000];
    let good = seal(&pb.key, &file, &descriptor());
    let mut cases: Vec<(&str, Sealed, Vec<u8>)> = Vec::new();
    let mut s = good.clone();
    s.iv = "f0f1f2".into();
    cases.push(("short iv", s, multipart(&good.file)));
    let mut s = good.clone();
    s.iv = "zz".repeat(16);
    cases.push(("non-hex iv", s, multipart(&good.file)));
    // Another IV: the first block of metadata and file decrypt to garbage; the JSON fails.
    let mut s = good.clone();
    s.iv = hex(&[1u8; 16]);
    cases.push(("wrong iv", s, multipart(&good.file)));
    let mut s = good.clone();
    s.metadata = "not base64!".into();
    cases.push(("metadata not base64", s, multipart(&good.file)));
    let mut s = good.clone();
    s.symmetrical_key = "AAAA".into();
    cases.push(("short wrapped key", s, multipart(&good.file)));
    // A well-wrapped 16-byte key.
    let mut s = good.clone();
    s.symmetrical_key = b64(&pb.key.encrypt_oaep_sha1(&[1u8; 16]).unwrap());
    cases.push(("AES-128 key", s, multipart(&good.file)));
    // Metadata that is JSON but not a descriptor.
    let no_accounts = seal(&pb.key, &file, &json!({"mimeType": "text/plain"}));
    cases.push((
        "no accounts",
        no_accounts.clone(),
        multipart(&no_accounts.file),
    ));
    // Body damage: the last block's padding, a byte short, nothing at all.
    let mut flipped = good.file.clone();
    let n = flipped.len();
    flipped[n - 17] ^= 0x80;
    cases.push(("bad padding", good.clone(), multipart(&flipped)));
    cases.push((
        "truncated",
        good.clone(),
        multipart(&good.file[..good.file.len() - 1]),
    ));
    cases.push(("empty file", good.clone(), multipart(b"")));
    for (what, sealed, body) in cases {
        let r = env.push_jwt("v1.7", &pb.id, &env.e2_bearer(&sealed, &at), &body);
        assert_refused(&r, 400, "ValidationErrors");
        eprintln!("{what}: {}", r.json()["error"]["message"]);
    }
    assert_nothing_stored(&env, &user);
    // And the good one still goes through.
    assert_ok(&env.push_e2(&pb.id, &at, &good), "delivered");
}

#[test]
fn garbage_multipart_is_refused() {
    let env = env();
    let (user, pb, at) = e2_setup(&env);
    let sealed = seal(&pb.key, b"data", &descriptor());
    let send = |content_type: Option<&str>, body: &[u8]| {
        let mut req = env
            .http
            .post(&env.url("v1.7", &format!("permission-access/postbox/{}", pb.id)))
            .header("authorization", &env.e2_bearer(&sealed, &at));
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        reply(req.send(body))
    };
    let ct = multipart_type();
    for (what, ct, body) in [
        ("no content type", None, multipart(&sealed.file)),
        ("json", Some("application/json"), b"{}".to_vec()),
        ("no boundary", Some("multipart/form-data"), multipart(&sealed.file)),
        ("garbage", Some(ct.as_str()), b"\x00\x01garbage".to_vec()),
        ("empty", Some(ct.as_str()), Vec::new()),
        (
            "no file part",
            Some(ct.as_str()),
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"data\"\r\n\r\nx\r\n--{BOUNDARY}--\r\n").into_bytes(),
        ),
        (
            "unterminated",
            Some(ct.as_str()),
            multipart(&sealed.file)[..100].to_vec(),
        ),
    ] {
        let r = send(ct, &body);
        assert_refused(&r, 400, "ValidationErrors");
        eprintln!("{what}: {}", r.json()["error"]["message"]);
    }
    assert_nothing_stored(&env, &user);
    // Lenient forms: iOS's bare name and part content type, a preamble, another part
    // first, a quoted boundary; chunked transfer.
    let mut body = b"preamble\r\n".to_vec();
    body.extend_from_slice(
        b"--xyz\r\ncontent-disposition: form-data; name=\"other\"\r\n\r\nhello\r\n--xyz\r\nContent-Disposition: form-data; name=file; filename=file\r\nContent-Type: multipart/form-data\r\n\r\n",
    );
    body.extend_from_slice(&sealed.file);
    body.extend_from_slice(b"\r\n--xyz--\r\n");
    let r = reply(
        env.http
            .post(&env.url("v1.7", &format!("permission-access/postbox/{}", pb.id)))
            .header("authorization", &env.e2_bearer(&sealed, &at))
            .header("content-type", "multipart/form-data; boundary=\"xyz\"")
            .send(ureq::SendBody::from_reader(&mut &body[..])),
    );
    assert_ok(&r, "delivered");
    assert_eq!(
        env.content(&user, env.files(&user)[0]["name"].as_str().unwrap()),
        b"data"
    );
}

#[test]
fn unknown_postboxes_are_404() {
    let env = env();
    let (_, pb, at) = e2_setup(&env);
    let sealed = seal(&pb.key, b"x", &descriptor());
    assert_refused(
        &env.push_e2("pbx_unknown", &at, &sealed),
        404,
        "PostboxNotFound",
    );
    let sk = env.session("v1.5");
    assert_refused(
        &env.push_e1("pbx_unknown", &sk, None, &sealed),
        404,
        "PostboxNotFound",
    );
    let sk = env.session("v1.4");
    assert_refused(
        &env.push_e0("v1.4", "pbx_unknown", &sk, &sealed),
        404,
        "PostboxNotFound",
    );
    // Another contract's push to this postbox: as good as unknown.
    let other = env.bearer(
        &read_client(),
        json!({"access_token": at, "iv": sealed.iv, "metadata": sealed.metadata,
               "symmetrical_key": sealed.symmetrical_key}),
    );
    assert_refused(
        &env.push_jwt("v1.7", &pb.id, &other, &multipart(&sealed.file)),
        404,
        "PostboxNotFound",
    );
}

#[test]
fn oversized_bodies_are_413() {
    let env = env();
    let (_, pb, at) = e2_setup(&env);
    let sealed = seal(&pb.key, b"x", &descriptor());
    let (mut tcp, _, addr) = raw_connection(&env);
    write!(
        tcp,
        "POST /v1.7/permission-access/postbox/{} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
        pb.id,
        env.e2_bearer(&sealed, &at),
        multipart_type(),
        300u64 << 20
    )
    .unwrap();
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 413");
}

// ---------------------------------------------------------------------------
// Sessions and the native app.

#[test]
fn establish_session_checks_the_request() {
    let env = env();
    let agent = json!({"name": "js", "version": "1.0.0"});
    for (body, status, code) in [
        (
            json!({"appId": DEMO_APP_ID, "contractId": "nope", "sdkAgent": agent}),
            404,
            "InvalidContractId",
        ),
        (
            json!({"appId": "nope", "contractId": DEMO_WRITE_CONTRACT, "sdkAgent": agent}),
            404,
            "InvalidContractId",
        ),
        (
            json!({"appId": DEMO_APP_ID, "contractId": DEMO_WRITE_CONTRACT}),
            400,
            "ValidationErrors",
        ),
        (
            json!({"appId": 1, "contractId": DEMO_WRITE_CONTRACT, "sdkAgent": agent}),
            400,
            "ValidationErrors",
        ),
        (
            json!({"appId": DEMO_APP_ID, "contractId": DEMO_WRITE_CONTRACT, "sdkAgent": {"name": "js"}}),
            400,
            "ValidationErrors",
        ),
        (
            json!({"appId": DEMO_APP_ID, "contractId": DEMO_WRITE_CONTRACT, "sdkAgent": agent, "scope": []}),
            400,
            "ValidationErrors",
        ),
        (
            json!({"appId": DEMO_APP_ID, "contractId": DEMO_WRITE_CONTRACT, "sdkAgent": {"name": "cobol", "version": "1"}}),
            400,
            "SDKInvalid",
        ),
    ] {
        let r = env.session_raw("v1.4", &body);
        assert_refused(&r, status, code);
    }
    let r = reply(
        env.http
            .post(&env.url("v1.5", "permission-access/session"))
            .content_type("application/json")
            .send("[]"),
    );
    assert_refused(&r, 400, "ValidationErrors");
    // Not served on today's base.
    assert_eq!(env.session_raw("v1.7", &json!({})).status, 404);
}

#[test]
fn native_app_checks_the_link() {
    let env = env();
    let user = env.user().id;
    let sk = env.session("v1.4");
    let link = |extra: &str| {
        format!(
            "digime://postbox/create?sessionKey={sk}&callbackUrl={}&appId={DEMO_APP_ID}&sdkVersion=2.0.0&resultVersion=2{extra}",
            enc(CALLBACK)
        )
    };
    assert_refused(&env.open_link(&link(""), "usr_nobody"), 404, "NotFound");
    let without_user = env.get(&format!(
        "{}app/postbox/create?sessionKey={sk}&appId={DEMO_APP_ID}&callbackUrl={}",
        env.sandbox.info().control(),
        enc(CALLBACK)
    ));
    assert_refused(&without_user, 400, "ValidationErrors");
    let other_app = link("").replace(DEMO_APP_ID, "another-app");
    assert_refused(&env.open_link(&other_app, &user), 404, "SessionNotFound");
    let no_callback = format!("digime://postbox/create?sessionKey={sk}&appId={DEMO_APP_ID}");
    assert_refused(&env.open_link(&no_callback, &user), 400, "ValidationErrors");
    // Deny: CANCEL, no postbox.
    let cb = env.open_link(&link("&decision=deny"), &user).location();
    assert_eq!(
        params(&cb),
        [
            ("sessionKey".to_owned(), "mine".to_owned()),
            ("result".to_owned(), "CANCEL".to_owned())
        ]
    );
    assert_eq!(
        env.control_json(&format!("users/{user}/postboxes"))["postboxes"],
        json!([])
    );
    // A read-only contract cannot have a postbox.
    let r = env.session_raw(
        "v1.4",
        &json!({"appId": DEMO_APP_ID, "contractId": DEMO_READ_CONTRACT,
                "sdkAgent": {"name": "js", "version": "2.0.0"}}),
    );
    let read_sk = r.json()["sessionKey"].as_str().unwrap().to_owned();
    assert_refused(
        &env.open_link(&link("").replace(&sk, &read_sk), &user),
        403,
        "InsufficientScope",
    );
    // Each link makes a new postbox with its own key.
    let (_, a) = env.create_postbox(&link(""), &user);
    let (_, b) = env.create_postbox(&link(""), &user);
    assert_ne!(a.id, b.id);
    assert_ne!(a.key, b.key);
    let listed = env.control_json(&format!("users/{user}/postboxes"));
    assert_eq!(listed["postboxes"].as_array().unwrap().len(), 2);
    assert_eq!(listed["postboxes"][0]["kind"], "once");
}

#[test]
fn sandbox_info_helpers() {
    let env = env();
    let info = env.sandbox.info();
    let origin = info.api.trim_end_matches("/v1.7/");
    assert_eq!(info.api_version("v1.5"), format!("{origin}/v1.5/"));
    assert_eq!(info.api_version("1.4"), format!("{origin}/v1.4/"));
    assert_eq!(info.api_version("v1.7"), info.api);
    assert_eq!(
        info.native_app_url("digime://postbox/create?sessionKey=a&appId=b", "u 1")
            .as_deref(),
        Some(
            format!("{origin}/_sandbox/app/postbox/create?sessionKey=a&appId=b&user=u+1").as_str()
        )
    );
    assert_eq!(info.native_app_url("digime://postbox/import", "u"), None);
    assert_eq!(info.native_app_url("https://x/postbox/create?a", "u"), None);
    // The v1.5 key set is served and matches v1.7's.
    let a = env.get(&env.url("v1.5", "jwks/oauth")).json();
    let b = env.get(&env.url("v1.7", "jwks/oauth")).json();
    assert_eq!(a, b);
}

#[test]
fn pushes_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = || SandboxConfig {
        state_dir: Some(dir.path().to_path_buf()),
        consent: ConsentMode::Auto,
        ..SandboxConfig::default()
    };
    let (user, pb, sk) = {
        let env = start(config());
        let user = env.user().id;
        let (sk, pb) = env.e0_postbox(&user);
        let sealed = seal(&pb.key, b"persisted", &descriptor());
        assert_ok(&env.push_e0("v1.4", &pb.id, &sk, &sealed), "pending");
        (user, pb, sk)
    };
    let env = start(config());
    // The postbox and its key, the session and the pending item are all still there.
    let sealed = seal(&pb.key, b"after restart", &descriptor());
    assert_ok(&env.push_e0("v1.4", &pb.id, &sk, &sealed), "pending");
    let imported = env.control_post(&format!("users/{user}/postbox-import"), json!({}));
    assert_eq!(imported.json()["imported"].as_array().unwrap().len(), 2);
    let mut contents: Vec<Vec<u8>> = env
        .files(&user)
        .iter()
        .map(|f| env.content(&user, f["name"].as_str().unwrap()))
        .collect();
    contents.sort();
    assert_eq!(contents, [b"after restart".to_vec(), b"persisted".to_vec()]);
}

// ---------------------------------------------------------------------------
// The decoder: whatever a client encrypts, it decrypts.

fn postbox_key() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| PrivateKey::generate().unwrap())
}

#[test]
fn spec_vectors_decode() {
    // The protocol's worked push example, with K wrapped to our key.
    let k: [u8; 32] = std::array::from_fn(|i| i as u8);
    let iv: [u8; 16] = std::array::from_fn(|i| 0xf0 + i as u8);
    let key = postbox_key();
    let meta = "i8niRv+G1DqK9EDlWJjMRzY3C+0tmudymaJHQ9f3uFUHoidZkNcBEHRPXux8D+WZDeHNDNWZvjz9EG97CCj9Y2QjZoIGMW7JYJhhPcAzx66keVFQ56QKeEUeNp6rNBRMnvYRiqbu3uYNRj+KizCjQtfIW1p7O5QjHbINQofRVqc=";
    let file = [
        0x42, 0x62, 0xc1, 0xdc, 0x1b, 0x90, 0x42, 0xdb, 0x32, 0x50, 0xff, 0x18, 0x1b, 0xe6, 0xb4,
        0x36,
    ];
    let sk = b64(&key.public_key().encrypt_oaep_sha1(&k).unwrap());
    let d = postbox::decode(
        key,
        &sk,
        "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
        meta,
        [&file[..]],
    )
    .unwrap();
    assert_eq!(d.file, br#"{"total":12.5}"#);
    assert_eq!(d.descriptor, descriptor());
    // Upper-case hex and unpadded base64 are read too.
    let d2 = postbox::decode(
        key,
        sk.trim_end_matches('='),
        &hex(&iv).to_uppercase(),
        meta,
        [&file[..8], &file[8..]],
    )
    .unwrap();
    assert_eq!(d2, d);
    assert_eq!(
        postbox::decode(key, &sk, &hex(&iv), meta, [&file[..15]]).unwrap_err(),
        PostboxError::FileDecrypt("its length is not a non-zero multiple of 16 bytes")
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn what_a_client_encrypts_decodes_to_the_original(
        file in proptest::collection::vec(any::<u8>(), 0..100 * 1024),
        cuts in proptest::collection::vec(0usize..100 * 1024, 0..8),
        tags in proptest::collection::vec("[a-z\u{e9}\u{1f600}]{0,8}", 0..3),
    ) {
        let key = postbox_key();
        let d = json!({"mimeType": "application/octet-stream", "accounts": [], "tags": tags});
        let sealed = seal(&key.public_key(), &file, &d);
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (sealed.file.len() + 1)).collect();
        cuts.sort();
        let mut chunks = Vec::new();
        let mut at = 0;
        for c in cuts {
            chunks.push(&sealed.file[at..c]);
            at = c;
        }
        chunks.push(&sealed.file[at..]);
        let decoded = postbox::decode(key, &sealed.symmetrical_key, &sealed.iv, &sealed.metadata, chunks).unwrap();
        prop_assert_eq!(decoded.file, file);
        prop_assert_eq!(decoded.descriptor, d);
    }
}
