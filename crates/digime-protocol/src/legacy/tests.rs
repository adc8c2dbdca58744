//! Sans-IO tests of the postbox era: spec vectors, byte layouts, parsers, and the
//! refresh-on-pending sequence driven by hand.

use super::push::Material;
use super::*;
use crate::flow::{Event, Flow, Step};
use crate::wire::Body;
use crate::{CallbackError, CallbackErrorCode, Config, ErrorCode, KeySet, PrivateKey};
use base64::Engine;
use digime_crypto::{cbc, jws};
use http::{Request, Response};
use serde_json::{Map, Value};
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::time::SystemTime;

const K: [u8; 32] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
    26, 27, 28, 29, 30, 31,
];
const IV: [u8; 16] = [
    0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff,
];
const F: &[u8] = br#"{"total":12.5}"#;
const C_FILE: [u8; 16] = [
    0x42, 0x62, 0xc1, 0xdc, 0x1b, 0x90, 0x42, 0xdb, 0x32, 0x50, 0xff, 0x18, 0x1b, 0xe6, 0xb4, 0x36,
];
const C_META_B64: &str = "i8niRv+G1DqK9EDlWJjMRzY3C+0tmudymaJHQ9f3uFUHoidZkNcBEHRPXux8D+WZDeHNDNWZvjz9EG97CCj9Y2QjZoIGMW7JYJhhPcAzx66keVFQ56QKeEUeNp6rNBRMnvYRiqbu3uYNRj+KizCjQtfIW1p7O5QjHbINQofRVqc=";
const BOUNDARY: &str = "--------------------------941175817833237358633249";

fn descriptor() -> FileDescriptor {
    FileDescriptor {
        mime_type: "application/json".into(),
        accounts: vec![crate::AccountRef {
            account_id: "acc-001".into(),
        }],
        reference: Some(vec!["receipt-42.json".into()]),
        tags: Some(vec!["receipt".into()]),
    }
}

fn vector_material() -> Material {
    Material {
        envelope: Envelope::from_key_and_iv(K, IV),
        boundary: BOUNDARY.into(),
    }
}

fn respond(status: u16, body: &str) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .body(body.as_bytes().to_vec())
        .unwrap()
}

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

/// What a driver does with an upload request: rewind the reader, stream it through a
/// fresh encoder (in small, odd pieces), check the announced length.
fn drive_upload(req: &Request<Body>, file: &mut Cursor<Vec<u8>>) -> Vec<u8> {
    let Body::Upload(upload) = req.body() else {
        panic!("a postbox push streams an upload")
    };
    assert!(!upload.is_plain(), "a postbox push encrypts its upload");
    let len = file.seek(SeekFrom::End(0)).unwrap();
    file.seek(SeekFrom::Start(0)).unwrap();
    let mut encoder = upload.encoder().unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 7];
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        encoder.encode(&buf[..n], &mut out).unwrap();
    }
    encoder.finish(&mut out).unwrap();
    assert_eq!(out.len() as u64, upload.body_len(len));
    out
}

/// The raw JSON payload of the bearer JWT, if any.
fn raw_claims(req: &Request<Body>) -> Option<String> {
    let auth = req.headers().get("authorization")?.to_str().unwrap();
    let jwt = auth.strip_prefix("Bearer ").unwrap();
    assert!(jwt.starts_with("eyJhbGciOiJQUzUxMiIsInR5cCI6IkpXVCJ9."));
    let payload = jws::Compact::parse(jwt).unwrap().payload().unwrap();
    Some(String::from_utf8(payload).unwrap())
}

fn claims(req: &Request<Body>) -> Map<String, Value> {
    serde_json::from_str(&raw_claims(req).unwrap()).unwrap()
}

/// The claim names in the order they appear in the payload.
fn claim_order(raw: &str) -> Vec<String> {
    let map: Map<String, Value> = serde_json::from_str(raw).unwrap();
    let mut keys: Vec<(usize, String)> = map
        .keys()
        .map(|k| (raw.find(&format!("\"{k}\":")).unwrap(), k.clone()))
        .collect();
    keys.sort();
    keys.into_iter().map(|(_, k)| k).collect()
}

/// The server's side of a push: the envelope from headers or claims, the part's
/// ciphertext from the multipart body, both decrypted with the postbox key.
struct Received {
    key: Vec<u8>,
    iv: String,
    file: Vec<u8>,
    metadata: Vec<u8>,
    boundary: String,
}

fn receive(req: &Request<Body>, body: &[u8], postbox_key: &PrivateKey) -> Received {
    let ct = req.headers()["content-type"].to_str().unwrap();
    let boundary = ct
        .strip_prefix("multipart/form-data; boundary=")
        .unwrap()
        .to_owned();
    let (iv, sym, meta) = match raw_claims(req) {
        Some(_) => {
            let c = claims(req);
            let s = |n: &str| c[n].as_str().unwrap().to_owned();
            (s("iv"), s("symmetrical_key"), s("metadata"))
        }
        None => {
            let h = |n: &str| req.headers()[n].to_str().unwrap().to_owned();
            (h("iv"), h("symmetricalkey"), h("metadata"))
        }
    };
    let key = postbox_key.decrypt_oaep_sha1(&b64(&sym)).unwrap().to_vec();
    let k: [u8; 32] = key.clone().try_into().unwrap();
    let ivb: [u8; 16] = (0..16)
        .map(|i| u8::from_str_radix(&iv[2 * i..2 * i + 2], 16).unwrap())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    let open = format!("--{boundary}\r\n");
    let close = format!("\r\n--{boundary}--\r\n");
    assert!(body.starts_with(open.as_bytes()));
    assert!(body.ends_with(close.as_bytes()));
    let headers_end = body.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let c_file = &body[headers_end..body.len() - close.len()];
    Received {
        file: cbc::decrypt(&k, &ivb, c_file).unwrap(),
        metadata: cbc::decrypt(&k, &ivb, &b64(&meta)).unwrap(),
        key,
        iv,
        boundary,
    }
}

fn token(access: &str, refresh: &str) -> UserAccessToken {
    serde_json::from_str(&format!(
        r#"{{"accessToken":{{"value":"{access}","expiry":1}},"refreshToken":{{"value":"{refresh}","expiry":2}}}}"#
    ))
    .unwrap()
}

struct World {
    sdk: Sdk,
    contract: Contract,
    server: PrivateKey,
    postbox_key: PrivateKey,
    postbox: Postbox,
}

fn world(base: &str) -> World {
    let mut config = Config::new("app123").unwrap().with_base_url(base).unwrap();
    config.agent.version = "4.0.0".into();
    let sdk = Sdk::new(config);
    let server = PrivateKey::generate().unwrap();
    sdk.use_static_server_keys(KeySet::from_keys([("k".to_string(), server.public_key())]));
    let contract = Contract::new("contractABC", PrivateKey::generate().unwrap()).unwrap();
    let postbox_key = PrivateKey::generate().unwrap();
    let postbox = Postbox::new("pbx-7f3a", &postbox_key.public_key().to_pkcs1_pem()).unwrap();
    World {
        sdk,
        contract,
        server,
        postbox_key,
        postbox,
    }
}

fn server_token(server: &PrivateKey, claims: &str) -> String {
    let signed = jws::sign(
        br#"{"alg":"PS512","typ":"JWT","kid":"k"}"#,
        claims.as_bytes(),
        server,
    )
    .unwrap();
    format!(r#"{{"token":"{signed}"}}"#)
}

// ---------------------------------------------------------------------------------
// Vectors and layouts.

#[test]
fn the_envelope_reproduces_the_spec_vectors() {
    let env = Envelope::from_key_and_iv(K, IV);
    assert_eq!(env.iv_hex(), "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
    assert_eq!(env.encrypt_metadata(&descriptor()).unwrap(), C_META_B64);
    let mut enc = env.file_encryptor().unwrap();
    let mut out = Vec::new();
    enc.update(F, &mut out).unwrap();
    enc.finish(&mut out).unwrap();
    assert_eq!(out, C_FILE);
    assert_eq!(format!("{env:?}"), "Envelope([redacted])");
}

#[test]
fn the_key_wrap_round_trips_through_oaep_sha1() {
    let postbox = PrivateKey::generate().unwrap();
    let env = Envelope::from_key_and_iv(K, IV);
    let a = env.wrap_key(&postbox.public_key()).unwrap();
    let b = env.wrap_key(&postbox.public_key()).unwrap();
    assert_eq!(a.len(), 344);
    assert!(a.ends_with('='));
    assert_ne!(a, b, "OAEP is randomised");
    assert_eq!(&postbox.decrypt_oaep_sha1(&b64(&a)).unwrap()[..], &K);
    assert_eq!(&postbox.decrypt_oaep_sha1(&b64(&b)).unwrap()[..], &K);
}

#[test]
fn the_multipart_body_byte_for_byte() {
    let w = world(BASE_URL_V1_7);
    let auth = PostboxAuth::TokenJwt {
        contract: w.contract.clone(),
        token: token("uat-123", "rt"),
    };
    let mut push = w
        .sdk
        .legacy()
        .push_to_postbox(&w.postbox, auth, "some/dir/receipt-42.json", &descriptor())
        .unwrap()
        .with_materials(vec![vector_material()]);
    let Step::Send(req) = push.poll(SystemTime::now()) else {
        panic!()
    };
    let body = drive_upload(&req, &mut Cursor::new(F.to_vec()));
    let mut expected = Vec::new();
    expected.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
    expected.extend_from_slice(
        b"Content-Disposition: form-data; name=\"file\"; filename=\"receipt-42.json\"\r\n",
    );
    expected.extend_from_slice(b"Content-Type: application/json\r\n\r\n");
    expected.extend_from_slice(&C_FILE);
    expected.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    assert_eq!(body.len(), 235);
    assert_eq!(body, expected);
    assert_eq!(
        req.headers()["content-type"],
        format!("multipart/form-data; boundary={BOUNDARY}")
    );
    assert_eq!(req.headers()["accept"], "application/json");
    let c = claims(&req);
    assert_eq!(c["iv"], "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
    assert_eq!(c["metadata"], C_META_B64);
    let got = receive(&req, &body, &w.postbox_key);
    assert_eq!(got.key, K);
    assert_eq!(got.file, F);
}

#[test]
fn an_empty_file_is_one_padding_block() {
    let upload_len = |name: &str| {
        let w = world(BASE_URL_V1_4);
        let auth = PostboxAuth::Headers {
            session_key: SessionKey::new("sk").unwrap(),
        };
        let mut push = w
            .sdk
            .legacy()
            .push_to_postbox(&w.postbox, auth, name, &descriptor())
            .unwrap();
        let Step::Send(req) = push.poll(SystemTime::now()) else {
            panic!()
        };
        let body = drive_upload(&req, &mut Cursor::new(Vec::new()));
        let got = receive(&req, &body, &w.postbox_key);
        assert!(got.file.is_empty());
        assert_eq!(got.boundary.len(), 50);
        assert!(got.boundary.starts_with(&"-".repeat(26)));
        assert!(got.boundary[26..].bytes().all(|b| b.is_ascii_digit()));
        body
    };
    let body = upload_len("noext");
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("filename=\"noext\"\r\nContent-Type: application/octet-stream\r\n"));
}

#[test]
fn file_names_and_mime_types() {
    assert_eq!(part_file_name("a/b/c.PNG"), "c.PNG");
    assert_eq!(part_file_name("x\"y\r\nz"), "x%22y%0D%0Az");
    assert_eq!(part_file_name(""), "");
    assert_eq!(part_file_name("dir/"), "");
    assert_eq!(guess_mime_type("c.PNG"), "image/png");
    assert_eq!(guess_mime_type("r.json"), "application/json");
    assert_eq!(guess_mime_type("r.tar.gz"), "application/gzip");
    assert_eq!(guess_mime_type("a.b/noext"), "application/octet-stream");
    assert_eq!(guess_mime_type("x.unknown"), "application/octet-stream");
    let prefix = multipart_prefix("b", "../evil\"\r\nX-Injected: 1.txt");
    let text = String::from_utf8(prefix).unwrap();
    assert_eq!(text.matches("\r\n").count(), 4, "{text:?}");
    assert_eq!(multipart_suffix("b"), b"\r\n--b--\r\n");
}

// ---------------------------------------------------------------------------------
// The request of each era.

const E1_ONCE: &[&str] = &[
    "client_id",
    "iv",
    "metadata",
    "nonce",
    "redirect_uri",
    "session_key",
    "symmetrical_key",
    "timestamp",
];

#[test]
fn e0_sends_the_envelope_in_headers_and_no_jwt() {
    let w = world("https://api.digi.me/v1.4");
    let auth = PostboxAuth::Headers {
        session_key: SessionKey::new("sk-123").unwrap(),
    };
    let mut push = w
        .sdk
        .legacy()
        .push_to_postbox(&w.postbox, auth, "receipt-42.json", &descriptor())
        .unwrap()
        .with_materials(vec![vector_material()]);
    let Step::Send(req) = push.poll(SystemTime::now()) else {
        panic!()
    };
    assert_eq!(req.method(), http::Method::POST);
    assert_eq!(
        req.uri(),
        "https://api.digi.me/v1.4/permission-access/postbox/pbx-7f3a"
    );
    assert!(req.headers().get("authorization").is_none());
    assert_eq!(req.headers()["sessionkey"], "sk-123");
    assert_eq!(req.headers()["iv"], "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
    assert_eq!(req.headers()["metadata"], C_META_B64);
    assert_eq!(req.headers()["symmetricalkey"].len(), 344);
    assert_eq!(req.headers()["accept"], "application/json");
    let mut names: Vec<_> = req.headers().keys().map(|k| k.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "accept",
            "content-type",
            "iv",
            "metadata",
            "sessionkey",
            "symmetricalkey"
        ]
    );
    let body = drive_upload(&req, &mut Cursor::new(F.to_vec()));
    let got = receive(&req, &body, &w.postbox_key);
    assert_eq!(got.file, F);
    assert_eq!(
        got.metadata,
        serde_json::to_vec(&descriptor()).unwrap().as_slice()
    );
    // E0 answers pending and never refreshes.
    push.handle_response(respond(200, r#"{"status":"pending","expires":200000}"#));
    match push.poll(SystemTime::now()) {
        Step::Done(Ok(done)) => {
            assert_eq!(done.value.status, PostboxStatus::Pending);
            assert_eq!(done.value.expires, serde_json::Number::from(200000));
            assert!(done.refreshed_token.is_none());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn e1_claims_once_and_ongoing_in_the_sdks_order() {
    let w = world("https://api.digi.me/v1.5");
    let build = |token: Option<UserAccessToken>| {
        let auth = PostboxAuth::SessionJwt {
            contract: w.contract.clone(),
            session_key: SessionKey::new("sk-123").unwrap(),
            redirect_uri: "https://app.example.com/exchange-token".into(),
            token,
        };
        let mut push = w
            .sdk
            .legacy()
            .push_to_postbox(&w.postbox, auth, "receipt-42.json", &descriptor())
            .unwrap()
            .with_materials(vec![vector_material()]);
        let Step::Send(req) = push.poll(SystemTime::now()) else {
            panic!()
        };
        req
    };
    let once = build(None);
    assert_eq!(
        once.uri(),
        "https://api.digi.me/v1.5/permission-access/postbox/pbx-7f3a"
    );
    assert!(once.headers().get("sessionkey").is_none());
    let raw = raw_claims(&once).unwrap();
    assert_eq!(claim_order(&raw), E1_ONCE);
    let c = claims(&once);
    assert_eq!(c["client_id"], "app123_contractABC");
    assert_eq!(c["session_key"], "sk-123");
    assert_eq!(c["redirect_uri"], "https://app.example.com/exchange-token");
    assert_eq!(c["iv"], "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
    assert_eq!(c["metadata"], C_META_B64);
    assert_eq!(c["nonce"].as_str().unwrap().len(), 32);
    assert!(c["timestamp"].as_u64().unwrap() > 1_600_000_000_000);

    let ongoing = build(Some(token("uat-123", "rt")));
    let raw = raw_claims(&ongoing).unwrap();
    let mut expected = vec!["access_token"];
    expected.extend_from_slice(E1_ONCE);
    assert_eq!(claim_order(&raw), expected);
    assert_eq!(claims(&ongoing)["access_token"], "uat-123");
    // The JWT is signed by the contract.
    let auth = ongoing.headers()["authorization"].to_str().unwrap();
    jws::Compact::parse(&auth[7..])
        .unwrap()
        .verify(&w.contract.key().public_key())
        .unwrap();
}

#[test]
fn e2_claims_are_the_v8_column() {
    let w = world(BASE_URL_V1_7);
    let auth = PostboxAuth::TokenJwt {
        contract: w.contract.clone(),
        token: token("uat-123", "rt"),
    };
    let mut push = w
        .sdk
        .legacy()
        .push_to_postbox(&w.postbox, auth, "receipt-42.json", &descriptor())
        .unwrap();
    let Step::Send(req) = push.poll(SystemTime::now()) else {
        panic!()
    };
    assert_eq!(
        req.uri(),
        "https://api.digi.me/v1.7/permission-access/postbox/pbx-7f3a"
    );
    assert_eq!(
        claim_order(&raw_claims(&req).unwrap()),
        [
            "access_token",
            "client_id",
            "iv",
            "metadata",
            "nonce",
            "symmetrical_key",
            "timestamp"
        ]
    );
    let iv = claims(&req)["iv"].as_str().unwrap().to_owned();
    assert_eq!(iv.len(), 32);
    assert!(
        iv.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
}

#[test]
fn bad_inputs_are_refused_before_any_io() {
    let w = world(BASE_URL_V1_7);
    let legacy = w.sdk.legacy();
    let e2 = |t: UserAccessToken| PostboxAuth::TokenJwt {
        contract: w.contract.clone(),
        token: t,
    };
    assert!(
        legacy
            .push_to_postbox(&w.postbox, e2(token("", "r")), "f", &descriptor())
            .is_err()
    );
    assert!(
        legacy
            .push_to_postbox(
                &w.postbox,
                e2(token("a", "r")),
                "f",
                &FileDescriptor::new("nope")
            )
            .is_err()
    );
    let e1 = PostboxAuth::SessionJwt {
        contract: w.contract.clone(),
        session_key: SessionKey::new("sk").unwrap(),
        redirect_uri: String::new(),
        token: None,
    };
    assert!(
        legacy
            .push_to_postbox(&w.postbox, e1, "f", &descriptor())
            .is_err()
    );
    // A session key that cannot be a header ends the flow before anything is sent.
    let e0 = PostboxAuth::Headers {
        session_key: SessionKey::new("bad\nkey").unwrap(),
    };
    let mut push = legacy
        .push_to_postbox(&w.postbox, e0, "f", &descriptor())
        .unwrap();
    assert!(matches!(
        push.poll(SystemTime::now()),
        Step::Done(Err(Error::InvalidInput(_)))
    ));
    assert!(Postbox::new("", &w.postbox_key.public_key().to_pkcs1_pem()).is_err());
    assert!(Postbox::new("p", "garbage").is_err());
}

// ---------------------------------------------------------------------------------
// Responses.

#[test]
fn push_responses_are_validated_strictly() {
    let ok = parse_push_response(br#"{"status":"delivered","expires":1700000000,"x":1}"#).unwrap();
    assert_eq!(ok.status, PostboxStatus::Delivered);
    assert_eq!(ok.expires.as_u64(), Some(1_700_000_000));
    let float = parse_push_response(br#"{"status":"pending","expires":1.5}"#).unwrap();
    assert_eq!(float.expires.as_f64(), Some(1.5));
    for bad in [
        "",
        "null",
        "[]",
        "{}",
        r#"{"status":"delivered"}"#,
        r#"{"status":"Delivered","expires":1}"#,
        r#"{"status":"gone","expires":1}"#,
        r#"{"status":1,"expires":1}"#,
        r#"{"status":"pending","expires":"1"}"#,
        r#"{"status":"pending","expires":null}"#,
    ] {
        assert!(
            matches!(
                parse_push_response(bad.as_bytes()),
                Err(Error::Decode { .. })
            ),
            "{bad}"
        );
    }
}

#[test]
fn errors_are_not_retried_and_401_does_not_refresh() {
    let w = world(BASE_URL_V1_7);
    for (status, body) in [
        (
            401,
            r#"{"error":{"code":"InvalidToken","message":"The token (access_token) is invalid"}}"#,
        ),
        (
            404,
            r#"{"error":{"code":"SDKInvalid","message":"no","reference":"r"}}"#,
        ),
        (503, ""),
        (200, "not json"),
    ] {
        let auth = PostboxAuth::TokenJwt {
            contract: w.contract.clone(),
            token: token("a", "r"),
        };
        let mut push = w
            .sdk
            .legacy()
            .push_to_postbox(&w.postbox, auth, "f", &descriptor())
            .unwrap();
        let Step::Send(_) = push.poll(SystemTime::now()) else {
            panic!()
        };
        push.handle_response(respond(status, body));
        match push.poll(SystemTime::now()) {
            Step::Done(Err(e)) => {
                assert!(e.refreshed_token().is_none());
                if status == 404 {
                    assert_eq!(e.api().unwrap().code, ErrorCode::SdkInvalid);
                }
            }
            other => panic!("{status}: {other:?}"),
        }
        assert!(matches!(
            push.poll(SystemTime::now()),
            Step::Done(Err(Error::Misuse(_)))
        ));
    }
}

// ---------------------------------------------------------------------------------
// Pending → refresh → push again.

fn pending() -> Response<Vec<u8>> {
    respond(200, r#"{"status":"pending","expires":200000}"#)
}

#[test]
fn e2_pending_refreshes_once_and_pushes_a_fresh_envelope_from_the_start() {
    let w = world(BASE_URL_V1_7);
    let auth = PostboxAuth::TokenJwt {
        contract: w.contract.clone(),
        token: token("old", "r1"),
    };
    let mut push = w
        .sdk
        .legacy()
        .push_to_postbox(&w.postbox, auth, "big.bin", &descriptor())
        .unwrap();
    let now = SystemTime::now();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let mut file = Cursor::new(data.clone());

    let Step::Send(first) = push.poll(now) else {
        panic!()
    };
    let body1 = drive_upload(&first, &mut file);
    // The driver leaves the reader at its end; the retry must start over.
    assert_eq!(file.position(), data.len() as u64);
    push.handle_response(pending());

    let Step::Send(refresh) = push.poll(now) else {
        panic!()
    };
    assert_eq!(refresh.uri(), "https://api.digi.me/v1.7/oauth/token");
    let rc = claims(&refresh);
    assert_eq!(rc["grant_type"], "refresh_token");
    assert_eq!(rc["refresh_token"], "r1");
    assert!(rc.get("redirect_uri").is_none());
    push.handle_response(respond(
        201,
        &server_token(
            &w.server,
            r#"{"access_token":{"value":"new","expires_on":4000000000},"refresh_token":{"value":"r2","expires_on":4000000001},"sub":"u1"}"#,
        ),
    ));
    let Step::Event(Event::TokenRefreshed(t)) = push.poll(now) else {
        panic!()
    };
    assert_eq!(t.access_token.value.expose(), "new");

    let Step::Send(second) = push.poll(now) else {
        panic!()
    };
    let body2 = drive_upload(&second, &mut file);
    let (c1, c2) = (claims(&first), claims(&second));
    assert_eq!(c1["access_token"], "old");
    assert_eq!(c2["access_token"], "new");
    assert_ne!(c1["nonce"], c2["nonce"]);
    assert_ne!(c1["iv"], c2["iv"]);
    assert_ne!(c1["symmetrical_key"], c2["symmetrical_key"]);
    assert_ne!(c1["metadata"], c2["metadata"]);
    let (r1, r2) = (
        receive(&first, &body1, &w.postbox_key),
        receive(&second, &body2, &w.postbox_key),
    );
    assert_ne!(r1.key, r2.key);
    assert_ne!(r1.iv, r2.iv);
    assert_ne!(r1.boundary, r2.boundary);
    assert_eq!(r1.file, data);
    assert_eq!(r2.file, data, "the whole file again, from the start");

    // Even a second `pending` is returned, with the new token.
    push.handle_response(pending());
    match push.poll(now) {
        Step::Done(Ok(done)) => {
            assert_eq!(done.value.status, PostboxStatus::Pending);
            let t = done.refreshed_token.unwrap();
            assert_eq!(t.refresh_token.value.expose(), "r2");
            assert_eq!(t.user_id(), Some("u1"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn delivered_needs_no_refresh() {
    let w = world(BASE_URL_V1_7);
    let auth = PostboxAuth::TokenJwt {
        contract: w.contract.clone(),
        token: token("a", "r"),
    };
    let mut push = w
        .sdk
        .legacy()
        .push_to_postbox(&w.postbox, auth, "f", &descriptor())
        .unwrap();
    let Step::Send(_) = push.poll(SystemTime::now()) else {
        panic!()
    };
    push.handle_response(respond(200, r#"{"status":"delivered","expires":1}"#));
    match push.poll(SystemTime::now()) {
        Step::Done(Ok(done)) => {
            assert_eq!(done.value.status, PostboxStatus::Delivered);
            assert!(done.refreshed_token.is_none());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn e1_ongoing_refreshes_with_the_flat_format_and_a_failed_retry_keeps_the_token() {
    let w = world("https://api.digi.me/v1.5");
    let auth = PostboxAuth::SessionJwt {
        contract: w.contract.clone(),
        session_key: SessionKey::new("sk-123").unwrap(),
        redirect_uri: "https://app.example.com/cb".into(),
        token: Some(token("old", "r1")),
    };
    let mut push = w
        .sdk
        .legacy()
        .push_to_postbox(&w.postbox, auth, "f.json", &descriptor())
        .unwrap();
    let now = SystemTime::now();
    let Step::Send(_) = push.poll(now) else {
        panic!()
    };
    push.handle_response(pending());
    let Step::Send(refresh) = push.poll(now) else {
        panic!()
    };
    assert_eq!(refresh.uri(), "https://api.digi.me/v1.5/oauth/token");
    assert_eq!(refresh.headers()["content-type"], "application/json");
    assert_eq!(refresh.body(), &Body::Empty);
    assert_eq!(
        claim_order(&raw_claims(&refresh).unwrap()),
        [
            "client_id",
            "grant_type",
            "nonce",
            "redirect_uri",
            "refresh_token",
            "timestamp"
        ]
    );
    assert_eq!(
        claims(&refresh)["redirect_uri"],
        "https://app.example.com/cb"
    );
    push.handle_response(respond(
        200,
        &server_token(
            &w.server,
            r#"{"access_token":"new","refresh_token":"r2","expires_on":1800000000}"#,
        ),
    ));
    let Step::Event(Event::TokenRefreshed(t)) = push.poll(now) else {
        panic!()
    };
    assert_eq!(t.access_token.expiry, 1_800_000_000);
    assert_eq!(t.refresh_token.expiry, 1_800_000_000);
    let Step::Send(second) = push.poll(now) else {
        panic!()
    };
    let c = claims(&second);
    assert_eq!(c["access_token"], "new");
    assert_eq!(c["session_key"], "sk-123");
    push.handle_response(respond(
        404,
        r#"{"error":{"code":"SDKVersionInvalid","message":"old"}}"#,
    ));
    match push.poll(now) {
        Step::Done(Err(e)) => {
            assert_eq!(
                e.refreshed_token().unwrap().refresh_token.value.expose(),
                "r2"
            );
            assert_eq!(e.api().unwrap().code, ErrorCode::SdkVersionInvalid);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn e1_once_keeps_pending_and_a_refused_refresh_propagates() {
    let w = world("https://api.digi.me/v1.5");
    let once = PostboxAuth::SessionJwt {
        contract: w.contract.clone(),
        session_key: SessionKey::new("sk").unwrap(),
        redirect_uri: "https://app.example.com/cb".into(),
        token: None,
    };
    let mut push = w
        .sdk
        .legacy()
        .push_to_postbox(&w.postbox, once, "f", &descriptor())
        .unwrap();
    let Step::Send(_) = push.poll(SystemTime::now()) else {
        panic!()
    };
    push.handle_response(pending());
    assert!(
        matches!(push.poll(SystemTime::now()), Step::Done(Ok(d)) if d.value.status == PostboxStatus::Pending && d.refreshed_token.is_none())
    );

    let auth = PostboxAuth::TokenJwt {
        contract: w.contract.clone(),
        token: token("a", "dead"),
    };
    let mut push = w
        .sdk
        .legacy()
        .push_to_postbox(&w.postbox, auth, "f", &descriptor())
        .unwrap();
    let Step::Send(_) = push.poll(SystemTime::now()) else {
        panic!()
    };
    push.handle_response(pending());
    let Step::Send(_) = push.poll(SystemTime::now()) else {
        panic!()
    };
    push.handle_response(respond(
        401,
        r#"{"error":{"code":"InvalidToken","message":"The token (refresh_token) is invalid"}}"#,
    ));
    match push.poll(SystemTime::now()) {
        Step::Done(Err(e)) => {
            assert!(e.needs_reauthorization());
            assert!(e.refreshed_token().is_none());
        }
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------
// Sessions.

#[test]
fn establish_session_request_and_response() {
    let w = world("https://api.digi.me/v1.5");
    let mut flow = w
        .sdk
        .legacy()
        .establish_session(&ContractId::new("contractABC").unwrap(), None)
        .unwrap();
    let Step::Send(req) = flow.poll(SystemTime::now()) else {
        panic!()
    };
    assert_eq!(
        req.uri(),
        "https://api.digi.me/v1.5/permission-access/session"
    );
    assert!(req.headers().get("authorization").is_none());
    assert_eq!(req.headers()["content-type"], "application/json");
    let Body::Bytes(body) = req.body() else {
        panic!()
    };
    let text = String::from_utf8(body.clone()).unwrap();
    assert!(
        text.starts_with(r#"{"appId":"app123","contractId":"contractABC","sdkAgent":{"name":"rust","version":"4.0.0","meta":{"#),
        "{text}"
    );
    assert!(
        text.ends_with(r#"},"accept":{"compression":"gzip"}}"#),
        "{text}"
    );
    let response = Response::builder()
        .status(200)
        .header("x-digi-sdk-status", "deprecated")
        .body(
            br#"{"expiry":10000,"sessionKey":"sk-123","sessionExchangeToken":"set-secret"}"#
                .to_vec(),
        )
        .unwrap();
    flow.handle_response(response);
    let Step::Done(Ok(session)) = flow.poll(SystemTime::now()) else {
        panic!()
    };
    assert_eq!(session.session_key.as_str(), "sk-123");
    assert_eq!(session.expiry, serde_json::Number::from(10000));
    assert_eq!(session.session_exchange_token.expose(), "set-secret");
    assert_eq!(session.sdk_status.as_deref(), Some("deprecated"));
    assert_eq!(session.sdk_status_message, None);
    assert!(!format!("{session:?}").contains("set-secret"));

    // With a scope.
    let scope = crate::auth::Scope {
        time_ranges: Some(vec![crate::auth::TimeRange {
            last: Some("6y".into()),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let flow = w
        .sdk
        .legacy()
        .establish_session(&ContractId::new("c").unwrap(), Some(&scope))
        .unwrap();
    let _ = flow;
    let body = session::session_body(&w.sdk, &ContractId::new("c").unwrap(), Some(&scope)).unwrap();
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.starts_with(r#"{"appId":"app123","contractId":"c","scope":{"timeRanges":[{"last":"6y"}]},"sdkAgent":"#),
        "{text}"
    );
}

#[test]
fn session_responses_are_validated_strictly() {
    let parse = |status: u16, body: &str| {
        let w = world(BASE_URL_V1_4);
        let mut flow = w
            .sdk
            .legacy()
            .establish_session(&ContractId::new("c").unwrap(), None)
            .unwrap();
        let Step::Send(_) = flow.poll(SystemTime::now()) else {
            panic!()
        };
        flow.handle_response(respond(status, body));
        match flow.poll(SystemTime::now()) {
            Step::Done(r) => r,
            other => panic!("{other:?}"),
        }
    };
    assert!(
        parse(
            200,
            r#"{"expiry":0,"sessionKey":"k","sessionExchangeToken":""}"#
        )
        .is_ok()
    );
    for bad in [
        "",
        "[]",
        r#"{"sessionKey":"k","sessionExchangeToken":"t"}"#,
        r#"{"expiry":"0","sessionKey":"k","sessionExchangeToken":"t"}"#,
        r#"{"expiry":0,"sessionKey":"","sessionExchangeToken":"t"}"#,
        r#"{"expiry":0,"sessionKey":1,"sessionExchangeToken":"t"}"#,
        r#"{"expiry":0,"sessionKey":"k"}"#,
        r#"{"expiry":0,"sessionKey":"k","sessionExchangeToken":null}"#,
    ] {
        assert!(
            matches!(parse(200, bad), Err(Error::Decode { .. })),
            "{bad}"
        );
    }
    match parse(
        403,
        r#"{"error":{"code":"SDKVersionInvalid","message":"too old"}}"#,
    ) {
        Err(e) => assert_eq!(e.api().unwrap().code, ErrorCode::SdkVersionInvalid),
        Ok(s) => panic!("{s:?}"),
    }
}

// ---------------------------------------------------------------------------------
// Deep links and the ongoing postbox.

#[test]
fn the_one_off_deep_link_is_the_sdk_v4_form_with_a_state_on_the_callback() {
    let w = world(BASE_URL_V1_5);
    let link = w
        .sdk
        .legacy()
        .create_postbox_url_once(
            &SessionKey::new("sk-123").unwrap(),
            "https://app.example.com/push?sessionKey=sk-123",
        )
        .unwrap();
    assert_eq!(link.state.len(), 32);
    assert_eq!(
        link.url,
        format!(
            "digime://postbox/create?callbackUrl=https%3A%2F%2Fapp.example.com%2Fpush%3FsessionKey%3Dsk-123%26state%3D{}&sessionKey=sk-123&appId=app123&sdkVersion=4.0.0",
            link.state
        )
    );
    assert!(!format!("{link:?}").contains("sk-123"));
    assert!(!format!("{link:?}").contains(&link.state));
    let again = w
        .sdk
        .legacy()
        .create_postbox_url_once(&SessionKey::new("sk-123").unwrap(), "https://a.example/")
        .unwrap();
    assert_ne!(again.state, link.state);
    for bad in ["not a url", "https://a.example/cb?state=mine"] {
        assert!(matches!(
            w.sdk
                .legacy()
                .create_postbox_url_once(&SessionKey::new("s").unwrap(), bad),
            Err(Error::InvalidInput(_))
        ));
    }
}

#[test]
fn the_ongoing_pre_authorization_has_no_body_and_yields_the_deep_link() {
    let w = world(BASE_URL_V1_5);
    for state in [Some("st-1"), None] {
        let mut flow = w
            .sdk
            .legacy()
            .create_postbox_url_ongoing(
                &w.contract,
                &SessionKey::new("sk-123").unwrap(),
                "https://app.example.com/cb",
                state,
            )
            .unwrap();
        let Step::Send(req) = flow.poll(SystemTime::now()) else {
            panic!()
        };
        assert_eq!(req.uri(), "https://api.digi.me/v1.5/oauth/authorize");
        assert_eq!(req.method(), http::Method::POST);
        assert_eq!(req.body(), &Body::Empty);
        assert!(req.headers().get("content-type").is_none());
        let raw = raw_claims(&req).unwrap();
        let mut expected = vec![
            "client_id",
            "code_challenge",
            "code_challenge_method",
            "nonce",
            "redirect_uri",
            "response_mode",
            "response_type",
        ];
        if state.is_some() {
            expected.push("state");
        }
        expected.push("timestamp");
        assert_eq!(claim_order(&raw), expected);
        let c = claims(&req);
        assert_eq!(c["code_challenge_method"], "S256");
        assert_eq!(c["response_mode"], "query");
        assert_eq!(c["response_type"], "code");
        assert_eq!(c["redirect_uri"], "https://app.example.com/cb");
        flow.handle_response(respond(
            201,
            &server_token(&w.server, r#"{"preauthorization_code":"PRE_1 2"}"#),
        ));
        let Step::Done(Ok(out)) = flow.poll(SystemTime::now()) else {
            panic!()
        };
        assert_eq!(
            out.url,
            "digime://postbox/create?preauthorizationCode=PRE_1+2&callbackUrl=https%3A%2F%2Fapp.example.com%2Fcb&sessionKey=sk-123&appId=app123&sdkVersion=4.0.0"
        );
        assert_eq!(out.code_verifier.challenge(), c["code_challenge"]);
        assert!(!format!("{out:?}").contains(out.code_verifier.expose()));
    }
    // A token signed by another key is refused.
    let mut flow = w
        .sdk
        .legacy()
        .create_postbox_url_ongoing(
            &w.contract,
            &SessionKey::new("sk").unwrap(),
            "https://app.example.com/cb",
            None,
        )
        .unwrap();
    let Step::Send(_) = flow.poll(SystemTime::now()) else {
        panic!()
    };
    let stranger = PrivateKey::generate().unwrap();
    flow.handle_response(respond(
        201,
        &server_token(&stranger, r#"{"preauthorization_code":"x"}"#),
    ));
    assert!(matches!(
        flow.poll(SystemTime::now()),
        Step::Done(Err(Error::ServerToken(_)))
    ));
}

#[test]
fn the_ongoing_code_exchange_uses_the_flat_format() {
    let w = world(BASE_URL_V1_5);
    let verifier = CodeVerifier::from_raw("k3JQz8LrT1vXb6NwP0sYc4HdM9fGa2Ue");
    let mut flow = w
        .sdk
        .legacy()
        .exchange_code_for_token_ongoing(
            &w.contract,
            "https://app.example.com/cb",
            &AuthorizationCode::new("code-1"),
            &verifier,
        )
        .unwrap();
    let Step::Send(req) = flow.poll(SystemTime::now()) else {
        panic!()
    };
    assert_eq!(req.uri(), "https://api.digi.me/v1.5/oauth/token");
    assert_eq!(req.body(), &Body::Empty);
    assert_eq!(
        claim_order(&raw_claims(&req).unwrap()),
        [
            "client_id",
            "code",
            "code_verifier",
            "grant_type",
            "nonce",
            "redirect_uri",
            "timestamp"
        ]
    );
    let c = claims(&req);
    assert_eq!(
        c["code_verifier"],
        "azNKUXo4THJUMXZYYjZOd1Awc1ljNEhkTTlmR2EyVWU"
    );
    assert_eq!(c["grant_type"], "authorization_code");
    flow.handle_response(respond(
        200,
        &server_token(
            &w.server,
            r#"{"access_token":"at","refresh_token":"rt","expires_on":1700000000}"#,
        ),
    ));
    let Step::Done(Ok(t)) = flow.poll(SystemTime::now()) else {
        panic!()
    };
    assert_eq!(t.access_token.value.expose(), "at");
    assert_eq!(t.refresh_token.value.expose(), "rt");
    assert_eq!(t.access_token.expiry, 1_700_000_000);
    assert_eq!(t.refresh_token.expiry, 1_700_000_000);
    assert_eq!(t.user_id(), None);

    // A nested payload is not a flat token.
    let mut flow =
        w.sdk
            .legacy()
            .refresh_token_ongoing(&w.contract, "https://app.example.com/cb", &t);
    let Step::Send(_) = flow.poll(SystemTime::now()) else {
        panic!()
    };
    flow.handle_response(respond(
        200,
        &server_token(
            &w.server,
            r#"{"access_token":{"value":"a","expires_on":1},"refresh_token":{"value":"r","expires_on":1}}"#,
        ),
    ));
    assert!(matches!(
        flow.poll(SystemTime::now()),
        Step::Done(Err(Error::Decode { .. }))
    ));
}

#[test]
fn flat_token_mapping() {
    let m = |s: &str| serde_json::from_str::<Map<String, Value>>(s).unwrap();
    let t = token_from_flat_claims(&m(
        r#"{"access_token":"a","refresh_token":"r","expires_on":5,"extra":1}"#,
    ))
    .unwrap();
    assert_eq!((t.access_token.expiry, t.refresh_token.expiry), (5, 5));
    assert_eq!(t.consent_id, None);
    for bad in [
        r#"{}"#,
        r#"{"access_token":"a","refresh_token":"r"}"#,
        r#"{"access_token":"","refresh_token":"r","expires_on":5}"#,
        r#"{"access_token":"a","refresh_token":1,"expires_on":5}"#,
        r#"{"access_token":"a","refresh_token":"r","expires_on":"5"}"#,
        r#"{"access_token":"a","refresh_token":"r","expires_on":-5}"#,
        r#"{"access_token":{"value":"a"},"refresh_token":"r","expires_on":5}"#,
    ] {
        assert!(token_from_flat_claims(&m(bad)).is_err(), "{bad}");
    }
}

// ---------------------------------------------------------------------------------
// Callbacks.

fn key_b64(key: &PrivateKey) -> String {
    base64::engine::general_purpose::STANDARD.encode(key.public_key().to_pkcs1_der())
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[test]
fn deep_link_callbacks() {
    let key = PrivateKey::generate().unwrap();
    let pk = key_b64(&key);
    for result in ["SUCCESS", "POSTBOX_READY"] {
        let cb = parse_postbox_callback(
            &format!(
                "https://app.example.com/push?sessionKey=sk-123&state=st&result={result}&postboxId=pbx-1&publicKey={}",
                enc(&pk)
            ),
            "st",
        )
        .unwrap();
        assert!(cb.result.is_success());
        assert_eq!(cb.result.as_str(), result);
        assert_eq!(cb.postbox.id.as_str(), "pbx-1");
        assert_eq!(cb.postbox.public_key, key.public_key());
        assert_eq!(cb.extra, vec![("sessionKey".into(), "sk-123".into())]);
    }
    // The key sent raw: its `+` arrive as spaces; and as a percent-encoded PEM.
    assert!(pk.contains('+') || pk.contains('/'));
    let raw = parse_postbox_callback(
        &format!("result=SUCCESS&postboxId=p&publicKey={pk}&state=st"),
        "st",
    )
    .unwrap();
    assert_eq!(raw.postbox.public_key, key.public_key());
    let pem = parse_postbox_callback(
        &format!(
            "/cb?state=st&result=SUCCESS&postboxId=p&publicKey={}",
            enc(&key.public_key().to_pkcs1_pem())
        ),
        "st",
    )
    .unwrap();
    assert_eq!(pem.postbox.public_key, key.public_key());

    for (result, typed) in [
        ("ERROR", PostboxResult::Error),
        ("CANCEL", PostboxResult::Cancel),
        ("WHATEVER", PostboxResult::Other("WHATEVER".into())),
        ("", PostboxResult::Other(String::new())),
    ] {
        match parse_postbox_callback(&format!("result={result}&state=s"), "s") {
            Err(CallbackError::Failed { code, state }) => {
                assert_eq!(PostboxResult::parse(code.as_str()), typed);
                assert_eq!(code, CallbackErrorCode::Other(result.into()));
                assert_eq!(state.as_deref(), Some("s"));
            }
            other => panic!("{result}: {other:?}"),
        }
    }
    for bad in [
        "",
        "postboxId=p&publicKey=x",
        "result=SUCCESS&publicKey=x",
        "result=SUCCESS&postboxId=p",
        "result=SUCCESS&postboxId=&publicKey=x",
        "result=SUCCESS&postboxId=p&publicKey=garbage",
        "result=SUCCESS&postboxId=p&publicKey=%FF%FE",
        "result=SUCCESS&result=SUCCESS&postboxId=p&publicKey=x",
        "state=st&result=SUCCESS&postboxId=p&publicKey=x",
        "%%%",
        "&&=&",
    ] {
        assert!(
            matches!(
                parse_postbox_callback(&format!("state=st&{bad}"), "st"),
                Err(CallbackError::Malformed(_))
            ),
            "{bad}"
        );
    }
    let repeated = format!(
        "state=st&result=SUCCESS&postboxId=p&postboxId=q&publicKey={}",
        enc(&pk)
    );
    assert!(matches!(
        parse_postbox_callback(&repeated, "st"),
        Err(CallbackError::Malformed(_))
    ));
}

/// A callback the app's link did not produce is refused before anything in it is
/// believed: without the check, an attacker's `publicKey` became the postbox the
/// user's file was encrypted to.
#[test]
fn a_forged_one_off_callback_is_refused() {
    let attacker = enc(&key_b64(&PrivateKey::generate().unwrap()));
    let forged =
        format!("https://app.example.com/push?result=SUCCESS&postboxId=evil&publicKey={attacker}");
    for (input, expected) in [
        (forged.clone(), "st"),
        (format!("{forged}&state=guess"), "st"),
        (format!("{forged}&state="), ""),
        (format!("{forged}&state=st"), ""),
        (
            "https://app.example.com/push?result=CANCEL".to_owned(),
            "st",
        ),
        ("https://x/cb".to_owned(), "st"),
    ] {
        assert_eq!(
            parse_postbox_callback(&input, expected).map(|c| c.postbox.id),
            Err(CallbackError::StateMismatch),
            "{input}"
        );
    }
    assert!(parse_postbox_callback(&format!("{forged}&state=st"), "st").is_ok());
}

#[test]
fn ongoing_callbacks_carry_a_code_and_check_the_state() {
    let key = PrivateKey::generate().unwrap();
    let url = format!(
        "https://app.example.com/cb?result=SUCCESS&postboxId=pbx-1&publicKey={}&code=c-1&state=st-1",
        enc(&key_b64(&key))
    );
    let cb = parse_ongoing_postbox_callback(&url).unwrap();
    assert_eq!(cb.code().expose(), "c-1");
    assert_eq!(cb.postbox.id.as_str(), "pbx-1");
    assert!(cb.clone().verify_state("st-1").is_ok());
    assert_eq!(
        cb.clone().verify_state("st-2"),
        Err(CallbackError::StateMismatch)
    );
    assert!(!format!("{cb:?}").contains("c-1"));
    // The one-off parser checks the state and keeps the code as an extra parameter.
    let once = parse_postbox_callback(&url, "st-1").unwrap();
    assert_eq!(once.extra, vec![("code".to_string(), "c-1".to_string())]);
    let no_code = url.replace("&code=c-1", "");
    assert!(matches!(
        parse_ongoing_postbox_callback(&no_code),
        Err(CallbackError::Malformed(_))
    ));
    assert!(matches!(
        parse_ongoing_postbox_callback("result=CANCEL"),
        Err(CallbackError::Failed { .. })
    ));
}

#[test]
fn saas_callbacks_carry_the_postbox() {
    let key = PrivateKey::generate().unwrap();
    let url = format!(
        "https://your-website.com/return?success=true&code=auth-1&state=st&postboxId=pbx-9&publicKey={}&userId=7",
        enc(&key.public_key().to_pkcs1_pem())
    );
    let cb = parse_saas_postbox_callback(&url).unwrap();
    assert_eq!(cb.postbox.id.as_str(), "pbx-9");
    assert_eq!(cb.postbox.public_key, key.public_key());
    assert_eq!(cb.code().expose(), "auth-1");
    assert_eq!(
        cb.authorization.extra,
        vec![("userId".to_string(), "7".to_string())]
    );
    assert!(cb.clone().verify_state("st").is_ok());
    assert_eq!(cb.verify_state("x"), Err(CallbackError::StateMismatch));
    assert_eq!(
        parse_saas_postbox_callback("success=false&errorCode=USER_CANCEL"),
        Err(CallbackError::Failed {
            code: CallbackErrorCode::UserCancel,
            state: None
        })
    );
    for bad in [
        "success=true&code=c",
        "success=true&code=c&postboxId=p",
        "success=true&code=c&postboxId=p&publicKey=bad",
        "success=true&code=c&postboxId=p&postboxId=q&publicKey=bad",
        "success=yes",
        "",
    ] {
        assert!(
            matches!(
                parse_saas_postbox_callback(bad),
                Err(CallbackError::Malformed(_))
            ),
            "{bad}"
        );
    }
}

#[test]
fn parsers_never_panic_on_junk() {
    let samples = [
        "?",
        "#",
        "?#",
        "a=%",
        "result=%E9",
        "result=\u{0}",
        "://",
        "?result=SUCCESS&publicKey=-----BEGIN",
        "?result=SUCCESS&postboxId=p&publicKey=-----BEGIN RSA PUBLIC KEY-----\u{e9}",
        "success=true&code=c&postboxId=p&publicKey=-----BEGIN+RSA+PUBLIC+KEY-----%0A-----END",
    ];
    for s in samples {
        let _ = parse_postbox_callback(s, "s");
        let _ = parse_ongoing_postbox_callback(s);
        let _ = parse_saas_postbox_callback(s);
        let _ = parse_push_response(s.as_bytes());
    }
}

#[test]
fn a_push_shows_no_secret_in_debug() {
    let w = world("https://api.digi.me/v1.7/");
    let auth = PostboxAuth::TokenJwt {
        contract: w.contract.clone(),
        token: token("SECRET-AT", "SECRET-RT"),
    };
    let push = w
        .sdk
        .legacy()
        .push_to_postbox(&w.postbox, auth, "f", &descriptor())
        .unwrap();
    let text = format!("{push:?}");
    assert!(
        text.contains("PostboxPushes") && !text.contains("SECRET"),
        "{text}"
    );
}
