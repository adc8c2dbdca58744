//! The blocking driver against the strict sandbox: every flow end to end, and the sad
//! paths, each with a typed error and nothing half-written.

use digime_blocking::Client;
use digime_protocol::{
    AuthorizeOptions, CallbackError, CallbackErrorCode, Config, Contract, Error, ErrorCode,
    FileDescriptor, KeySet, PrivateKey, UserAccessToken, parse_callback,
};
use digime_sandbox::{BackgroundSandbox, ConsentMode, Sandbox, SandboxConfig};
use digime_testkit::control::{Control, quick_config};
use serde_json::Value;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex};

const CALLBACK: &str = "http://localhost:9999/return?userId=42";

struct Env {
    sandbox: BackgroundSandbox,
    control: Control,
    client: Client,
    write: Contract,
    read: Contract,
}

/// The sandbox's control plane (`get_json`, `post`, `files`, `requests_to`, `browse`,
/// ...) is the shared harness's.
impl std::ops::Deref for Env {
    type Target = Control;
    fn deref(&self) -> &Control {
        &self.control
    }
}

fn env_with(consent: ConsentMode, tweak: impl FnOnce(Config) -> Config) -> Env {
    let sandbox = Sandbox::spawn(SandboxConfig {
        consent,
        ..SandboxConfig::default()
    })
    .unwrap();
    let info = sandbox.info().clone();
    let config = tweak(quick_config(&info));
    Env {
        control: Control::new(&info),
        write: info.demo.write.contract().unwrap(),
        read: info.demo.read.contract().unwrap(),
        sandbox,
        client: Client::new(config),
    }
}

fn env() -> Env {
    env_with(ConsentMode::Auto, |c| c)
}

impl Env {
    fn authorize(&self, contract: &Contract, options: AuthorizeOptions) -> UserAccessToken {
        let auth = self
            .client
            .authorize_url(contract, CALLBACK, "st-1", options)
            .unwrap();
        let callback = parse_callback(&self.browse(&auth.url))
            .unwrap()
            .verify_state("st-1")
            .unwrap();
        self.client
            .exchange_code_for_token(contract, &callback.code, &auth.code_verifier)
            .unwrap()
    }
}

fn descriptor() -> FileDescriptor {
    let mut d = FileDescriptor::new("application/json");
    d.reference = Some(vec!["receipt-42.json".into()]);
    d.tags = Some(vec!["receipt".into()]);
    d
}

#[test]
fn write_flow_end_to_end() {
    let env = env();
    let auth = env
        .client
        .authorize_url(&env.write, CALLBACK, "st-1", AuthorizeOptions::default())
        .unwrap();
    assert!(auth.url.starts_with(&format!(
        "{}authorize?code=PRE_",
        env.sandbox.info().onboard
    )));
    assert!(auth.session.is_some());
    let redirect = env.browse(&auth.url);
    assert!(redirect.starts_with("http://localhost:9999/return?userId=42&success=true&code="));
    let callback = parse_callback(&redirect)
        .unwrap()
        .verify_state("st-1")
        .unwrap();
    // The caller's own parameter survives; a write contract's callback also carries
    // the E2-era postbox (docs/protocol.md, "Postbox era"), which today's flow leaves alone.
    let names: Vec<&str> = callback.extra.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["userId", "postboxId", "publicKey"]);
    assert_eq!(callback.extra[0].1, "42");
    let token = env
        .client
        .exchange_code_for_token(&env.write, &callback.code, &auth.code_verifier)
        .unwrap();
    let user = token.user_id().unwrap().to_owned();

    let body = br#"{"total":12.5}"#.to_vec();
    let pushed = env
        .client
        .push_to_library(&env.write, &token, &descriptor(), Cursor::new(body.clone()))
        .unwrap();
    assert!(pushed.refreshed_token.is_none());

    let files = env.files(&user);
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["descriptor"]["mimeType"], "application/json");
    assert_eq!(files[0]["descriptor"]["reference"][0], "receipt-42.json");
    assert_eq!(files[0]["contractId"], "demo-write");
    let id = files[0]["id"].as_str().unwrap();
    assert_eq!(env.file(&user, id), body);

    // The code is single use.
    let again = env
        .client
        .exchange_code_for_token(&env.write, &callback.code, &auth.code_verifier);
    assert!(
        matches!(again, Err(Error::Api(ref a)) if a.code == ErrorCode::InvalidGrant),
        "{again:?}"
    );
}

#[test]
fn key_set_is_fetched_once_and_cached() {
    let env = env();
    env.authorize(&env.write, AuthorizeOptions::default());
    env.authorize(&env.write, AuthorizeOptions::default());
    assert_eq!(env.requests_to("jwks/oauth"), 1);
}

#[test]
fn wrong_state_is_refused() {
    let env = env();
    let auth = env
        .client
        .authorize_url(
            &env.write,
            CALLBACK,
            "expected",
            AuthorizeOptions::default(),
        )
        .unwrap();
    let redirect = env.browse(&auth.url);
    let forged = redirect.replace("state=expected", "state=attacker");
    assert_eq!(
        parse_callback(&forged)
            .unwrap()
            .verify_state("expected")
            .err(),
        Some(CallbackError::StateMismatch)
    );
}

#[test]
fn denied_consent_gives_the_error_callback() {
    let env = env_with(ConsentMode::Page, |c| c);
    let auth = env
        .client
        .authorize_url(&env.write, CALLBACK, "st-9", AuthorizeOptions::default())
        .unwrap();
    let html = env.consent_page(&auth.url);
    assert!(html.contains("Allow") && html.contains("Deny") && html.contains("demo-write"));
    let code = url::Url::parse(&auth.url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let (_, location) = env.decide(&code, "deny");
    assert_eq!(
        parse_callback(&location.expect("a redirect")),
        Err(CallbackError::Failed {
            code: CallbackErrorCode::UserCancel,
            state: Some("st-9".into())
        })
    );
    // The preauthorization is spent: allowing afterwards fails.
    let (status, _) = env.decide(&code, "allow");
    assert_eq!(status, 400);
}

#[test]
fn bad_code_verifier_is_invalid_grant() {
    let env = env();
    let auth = env
        .client
        .authorize_url(&env.write, CALLBACK, "s", AuthorizeOptions::default())
        .unwrap();
    let callback = parse_callback(&env.browse(&auth.url)).unwrap();
    let wrong = digime_protocol::CodeVerifier::generate().unwrap();
    let err = env
        .client
        .exchange_code_for_token(&env.write, &callback.code, &wrong)
        .unwrap_err();
    match err {
        Error::Api(api) => {
            assert_eq!(api.status, 400);
            assert_eq!(api.code, ErrorCode::InvalidGrant);
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn replayed_nonce_is_refused_by_the_server() {
    use digime_protocol::flow::{Flow, Step};
    let env = env();
    let token = env.authorize(&env.write, AuthorizeOptions::default());
    let mut flow = env.client.sdk().refresh_token(&env.write, &token);
    let Step::Send(req) = flow.poll(std::time::SystemTime::now()) else {
        panic!()
    };
    let send = |req: &http::Request<digime_protocol::wire::Body>| {
        let mut b = env.agent().post(req.uri().to_string());
        for (k, v) in req.headers() {
            b = b.header(k.as_str(), v.to_str().unwrap());
        }
        let mut r = b.send_empty().unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    };
    assert_eq!(send(&req).0, 201);
    let (status, body) = send(&req);
    assert_eq!(status, 406);
    assert!(
        body.contains("InvalidRequest") && body.contains("has already been used"),
        "{body}"
    );
}

#[test]
fn expired_access_token_is_refreshed_once_and_surfaced() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let env = env();
    let seen2 = seen.clone();
    let client = env
        .client
        .clone()
        .on_token_refreshed(move |t| seen2.lock().unwrap().push(t.clone()));
    let token = env.authorize(&env.write, AuthorizeOptions::default());
    let user = token.user_id().unwrap().to_owned();
    env.expire_access_tokens(&user);

    let pushed = client
        .push_to_library(
            &env.write,
            &token,
            &descriptor(),
            Cursor::new(b"after refresh".to_vec()),
        )
        .unwrap();
    let new = pushed.refreshed_token.expect("a refreshed token");
    assert_ne!(new.access_token.value, token.access_token.value);
    assert_ne!(new.refresh_token.value, token.refresh_token.value);
    assert_eq!(seen.lock().unwrap().as_slice(), std::slice::from_ref(&new));
    let files = env.files(&user);
    assert_eq!(files.len(), 1, "stored exactly once");
    assert_eq!(
        env.file(&user, files[0]["id"].as_str().unwrap()),
        b"after refresh"
    );
    assert_eq!(env.requests_to("permission-access/import"), 2);

    // The old refresh token was rotated out.
    let stale = env.client.refresh_token(&env.write, &token).unwrap_err();
    assert!(stale.needs_reauthorization(), "{stale:?}");
    // The new token works without a refresh.
    let again = client
        .push_to_library(&env.write, &new, &descriptor(), Cursor::new(b"x".to_vec()))
        .unwrap();
    assert!(again.refreshed_token.is_none());
}

#[test]
fn dead_refresh_token_needs_reauthorization_and_writes_nothing() {
    let env = env();
    let token = env.authorize(&env.write, AuthorizeOptions::default());
    let user = token.user_id().unwrap().to_owned();
    env.expire_access_tokens(&user);
    env.expire_refresh_tokens(&user);
    let err = env
        .client
        .push_to_library(
            &env.write,
            &token,
            &descriptor(),
            Cursor::new(b"lost?".to_vec()),
        )
        .unwrap_err();
    assert!(err.needs_reauthorization(), "{err:?}");
    assert_eq!(err.api().unwrap().code, ErrorCode::InvalidToken);
    assert!(err.api().unwrap().message.contains("refresh_token"));
    assert!(env.files(&user).is_empty());
}

#[test]
fn server_token_with_a_bad_signature_is_rejected() {
    let env = env();
    let jwks: Value = {
        let mut r = env
            .agent()
            .get(format!("{}jwks/oauth", env.sandbox.info().api))
            .call()
            .unwrap();
        serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap()
    };
    let kid = jwks["keys"][0]["kid"].as_str().unwrap().to_owned();
    // Trust a different key under the sandbox's kid: its signatures must now fail.
    let impostor = PrivateKey::generate().unwrap().public_key();
    env.client
        .sdk()
        .use_static_server_keys(KeySet::from_keys([(kid, impostor)]));
    let err = env
        .client
        .authorize_url(&env.write, CALLBACK, "s", AuthorizeOptions::default())
        .unwrap_err();
    assert!(
        matches!(err, Error::ServerToken(ref m) if m.contains("signature")),
        "{err:?}"
    );
}

#[test]
fn jku_pointing_elsewhere_is_refused_without_fetching() {
    let env = env_with(ConsentMode::Auto, |c| {
        c.with_jwks_url("https://keys.example/jwks").unwrap()
    });
    let err = env
        .client
        .authorize_url(&env.write, CALLBACK, "s", AuthorizeOptions::default())
        .unwrap_err();
    assert!(
        matches!(err, Error::UntrustedKeySet { ref jku, .. } if jku.ends_with("/v1.7/jwks/oauth")),
        "{err:?}"
    );
    assert_eq!(env.requests_to("jwks/oauth"), 0);
}

#[test]
fn invalid_descriptor_is_refused_before_any_io() {
    let env = env();
    let token = env.authorize(&env.write, AuthorizeOptions::default());
    let err = env
        .client
        .push_to_library(
            &env.write,
            &token,
            &FileDescriptor::new("not a mime type"),
            Cursor::new(vec![1]),
        )
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    assert_eq!(env.requests_to("permission-access/import"), 0);
}

#[test]
fn unreadable_keys_are_typed_errors() {
    assert!(matches!(
        Contract::from_pem("c", "not a key"),
        Err(Error::Crypto(_))
    ));
    assert!(matches!(
        Contract::from_pem(
            "c",
            "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"
        ),
        Err(Error::Crypto(_))
    ));
}

#[test]
fn an_unregistered_key_is_rejected_by_the_server() {
    let env = env();
    let impostor = Contract::new("demo-write", PrivateKey::generate().unwrap()).unwrap();
    let err = env
        .client
        .authorize_url(&impostor, CALLBACK, "s", AuthorizeOptions::default())
        .unwrap_err();
    assert!(
        matches!(err, Error::Api(ref a) if a.status == 406 && a.code == ErrorCode::ValidationErrors),
        "{err:?}"
    );
}

#[test]
fn read_contract_links_to_the_same_library_and_may_not_push() {
    let env = env();
    let write_token = env.authorize(&env.write, AuthorizeOptions::default());
    let read_token = env.authorize(
        &env.read,
        AuthorizeOptions {
            user_access_token: Some(write_token.clone()),
            ..Default::default()
        },
    );
    assert_eq!(read_token.user_id(), write_token.user_id());
    let err = env
        .client
        .push_to_library(&env.read, &read_token, &descriptor(), Cursor::new(vec![1]))
        .unwrap_err();
    assert!(
        matches!(err, Error::Api(ref a) if a.status == 403 && a.code == ErrorCode::InsufficientScope),
        "{err:?}"
    );
}

#[test]
fn unknown_agent_is_sdk_invalid() {
    let env = env_with(ConsentMode::Auto, |mut c| {
        c.agent.name = "test".into();
        c
    });
    let err = env
        .client
        .authorize_url(&env.write, CALLBACK, "s", AuthorizeOptions::default())
        .unwrap_err();
    assert!(
        matches!(err, Error::Api(ref a) if a.status == 400 && a.code == ErrorCode::SdkInvalid),
        "{err:?}"
    );
}

#[test]
fn unregistered_callback_is_invalid_redirect_uri() {
    let env = env();
    let err = env
        .client
        .authorize_url(
            &env.write,
            "http://evil.example/cb",
            "s",
            AuthorizeOptions::default(),
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::Api(ref a) if a.code == ErrorCode::InvalidRedirectUri),
        "{err:?}"
    );
}

/// A reader of 1 MiB (as its seek says) that fails after 100,000 bytes.
struct Failing(u64);
impl Read for Failing {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.0 >= 100_000 {
            return Err(std::io::Error::other("disk on fire"));
        }
        let n = buf.len().min(4096);
        buf[..n].fill(7);
        self.0 += n as u64;
        Ok(n)
    }
}
impl Seek for Failing {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.0 = 0;
        Ok(if to == SeekFrom::End(0) { 1 << 20 } else { 0 })
    }
}

#[test]
fn failing_body_is_an_error_and_nothing_is_stored() {
    let env = env();
    let token = env.authorize(&env.write, AuthorizeOptions::default());
    let err = env
        .client
        .push_to_library(&env.write, &token, &descriptor(), Failing(0))
        .unwrap_err();
    assert!(
        matches!(err, Error::Transport(ref t) if t.kind == digime_protocol::TransportErrorKind::BodySource),
        "{err:?}"
    );
    assert!(env.files(token.user_id().unwrap()).is_empty());
}

#[test]
fn connection_refused_is_retried_then_reported() {
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut config = Config::new("app")
        .unwrap()
        .with_base_url(&format!("http://127.0.0.1:{port}/v1.7/"))
        .unwrap();
    config.retry.base_delay = std::time::Duration::from_millis(1);
    config.retry.max_jitter = std::time::Duration::ZERO;
    config.retry.methods.push(http::Method::POST);
    let client = Client::new(config);
    let contract = Contract::new("c", PrivateKey::generate().unwrap()).unwrap();
    let err = client
        .authorize_url(&contract, CALLBACK, "s", AuthorizeOptions::default())
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
}

#[test]
fn sandbox_state_survives_a_restart() {
    let dir = tempfile_dir();
    let config = || SandboxConfig {
        consent: ConsentMode::Auto,
        state_dir: Some(dir.clone()),
        listen: "127.0.0.1:0".parse().unwrap(),
        ..SandboxConfig::default()
    };
    let first = Sandbox::spawn(config()).unwrap();
    let info = first.info().clone();
    let make_client = |api: &str, onboard: &str| {
        Client::new(
            Config::new(&info.demo.application_id)
                .unwrap()
                .with_base_url(api)
                .unwrap()
                .with_onboard_url(onboard)
                .unwrap(),
        )
    };
    let client = make_client(&info.api, &info.onboard);
    let write = info.demo.write.contract().unwrap();
    let auth = client
        .authorize_url(&write, CALLBACK, "s", AuthorizeOptions::default())
        .unwrap();
    let cb = parse_callback(&Control::new(&info).browse(&auth.url)).unwrap();
    let token = client
        .exchange_code_for_token(&write, &cb.code, &auth.code_verifier)
        .unwrap();
    client
        .push_to_library(&write, &token, &descriptor(), Cursor::new(b"kept".to_vec()))
        .unwrap();
    drop(first);

    // Same directory: same keys, same users, tokens and library.
    let second = Sandbox::spawn(config()).unwrap();
    let info2 = second.info().clone();
    assert_eq!(
        info2.demo.write.private_key_pem().unwrap(),
        info.demo.write.private_key_pem().unwrap()
    );
    let client = make_client(&info2.api, &info2.onboard);
    let again = client
        .push_to_library(
            &write,
            &token,
            &descriptor(),
            Cursor::new(b"after restart".to_vec()),
        )
        .unwrap();
    assert!(
        again.refreshed_token.is_none(),
        "the old access token is still valid"
    );
    let user = token.user_id().unwrap();
    assert_eq!(Control::new(&info2).files(user).len(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "digime-sandbox-restart-{}-{}",
        std::process::id(),
        digime_protocol::CodeVerifier::generate().unwrap().expose()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_refusal_after_a_refresh_still_hands_over_the_new_token() {
    let env = env();
    let write_token = env.authorize(&env.write, AuthorizeOptions::default());
    let read_token = env.authorize(
        &env.read,
        AuthorizeOptions {
            user_access_token: Some(write_token.clone()),
            ..Default::default()
        },
    );
    let user = read_token.user_id().unwrap().to_owned();
    env.expire_access_tokens(&user);
    // 401 → refresh (rotates the read contract's refresh token) → 403.
    let err = env
        .client
        .push_to_library(&env.read, &read_token, &descriptor(), Cursor::new(vec![1]))
        .unwrap_err();
    assert_eq!(
        err.api().unwrap().code,
        ErrorCode::InsufficientScope,
        "{err:?}"
    );
    let new = err
        .refreshed_token()
        .expect("the rotated token is handed over")
        .clone();
    assert_ne!(new.refresh_token.value, read_token.refresh_token.value);
    // The handed-over token is the live one; the old refresh token is spent.
    assert!(
        env.client
            .refresh_token(&env.read, &read_token)
            .unwrap_err()
            .needs_reauthorization()
    );
    env.client.refresh_token(&env.read, &new).unwrap();
    assert!(env.files(&user).is_empty());
}

#[test]
fn a_stalled_server_is_a_timeout_not_a_hang() {
    // Accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let holder = std::thread::spawn(move || {
        let conn = listener.accept();
        std::thread::sleep(std::time::Duration::from_secs(3));
        drop(conn);
    });
    let config = Config::new("app")
        .unwrap()
        .with_base_url(&format!("http://{addr}/v1.7/"))
        .unwrap();
    let client = Client::new(config).with_idle_timeout(std::time::Duration::from_millis(300));
    let contract = Contract::new("c", PrivateKey::generate().unwrap()).unwrap();
    let err = client
        .authorize_url(&contract, CALLBACK, "s", AuthorizeOptions::default())
        .unwrap_err();
    // The body went out (in part): the push may have been processed.
    assert!(err.outcome_unknown(), "{err:?}");
    assert!(
        matches!(err.cause(), Error::Transport(t) if t.kind == digime_protocol::TransportErrorKind::Timeout),
        "{err:?}"
    );
    holder.join().unwrap();
}

#[test]
fn contract_details_of_the_write_and_the_read_contract() {
    use digime_protocol::ContractAccess;
    let e = env();
    let info = e.sandbox.info();
    for (contract, access) in [
        (&e.write, ContractAccess::Write),
        (&e.read, ContractAccess::Read),
    ] {
        let details = e.client.contract_details(contract).unwrap();
        assert_eq!(details.id, contract.id().as_str());
        assert_eq!(details.access_type, access);
        assert_eq!(details.application.id, info.demo.application_id);
        assert_eq!(details.application.name, digime_sandbox::DEMO_APP_NAME);
        assert_eq!(details.partner_id, digime_sandbox::SANDBOX_PARTNER_ID);
        assert_eq!(
            details.expiration_date,
            digime_sandbox::CONTRACT_EXPIRATION_MS
        );
    }
    // A contract the sandbox does not know is the server's typed error.
    let stranger =
        Contract::new("stranger", digime_protocol::PrivateKey::generate().unwrap()).unwrap();
    let err = e.client.contract_details(&stranger).unwrap_err();
    assert_eq!(err.api().unwrap().code.as_str(), "InvalidClient");
}
