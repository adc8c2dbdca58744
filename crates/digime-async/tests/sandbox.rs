//! The async driver against the strict sandbox: the same flows as the blocking
//! driver's tests, with the same outcomes.

use digime_async::Client;
use digime_protocol::{
    AuthorizeOptions, CallbackError, Config, Contract, Error, ErrorCode, FileDescriptor,
    UserAccessToken, parse_callback,
};
use digime_sandbox::{ConsentMode, RunningSandbox, Sandbox, SandboxConfig};
use digime_testkit::control::AsyncControl;
use std::io::Cursor;
use std::sync::{Arc, Mutex};

const CALLBACK: &str = "http://127.0.0.1:9/cb";

struct Env {
    sandbox: RunningSandbox,
    /// The control plane, called from the blocking pool while this runtime serves.
    control: AsyncControl,
    client: Client,
    write: Contract,
    read: Contract,
}

async fn env(consent: ConsentMode) -> Env {
    let sandbox = Sandbox::start(SandboxConfig {
        consent,
        ..Default::default()
    })
    .await
    .unwrap();
    let info = sandbox.info().clone();
    Env {
        control: AsyncControl::new(&info),
        client: Client::new(info.client_config()),
        write: info.demo.write.contract().unwrap(),
        read: info.demo.read.contract().unwrap(),
        sandbox,
    }
}

impl Env {
    async fn authorize(&self, contract: &Contract, options: AuthorizeOptions) -> UserAccessToken {
        let auth = self
            .client
            .authorize_url(contract, CALLBACK, "st", options)
            .await
            .unwrap();
        let cb = parse_callback(&self.control.browse(&auth.url).await)
            .unwrap()
            .verify_state("st")
            .unwrap();
        self.client
            .exchange_code_for_token(contract, &cb.code, &auth.code_verifier)
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn write_flow_end_to_end_and_linked_read_contract() {
    let env = env(ConsentMode::Auto).await;
    let token = env.authorize(&env.write, AuthorizeOptions::default()).await;
    let user = token.user_id().unwrap().to_owned();
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let pushed = env
        .client
        .push_to_library(
            &env.write,
            &token,
            &FileDescriptor::new("application/octet-stream"),
            Cursor::new(body.clone()),
        )
        .await
        .unwrap();
    assert!(pushed.refreshed_token.is_none());
    let files = env.control.files(&user).await;
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["size"], 300_000);
    assert_eq!(
        env.control
            .file(&user, files[0]["id"].as_str().unwrap())
            .await,
        body
    );

    let read_token = env
        .authorize(
            &env.read,
            AuthorizeOptions {
                user_access_token: Some(token.clone()),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(read_token.user_id(), Some(user.as_str()));
}

#[tokio::test]
async fn expired_access_token_is_refreshed_once_and_surfaced() {
    let env = env(ConsentMode::Auto).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let client = env
        .client
        .clone()
        .on_token_refreshed(move |t| seen2.lock().unwrap().push(t.clone()));
    let token = env.authorize(&env.write, AuthorizeOptions::default()).await;
    let user = token.user_id().unwrap().to_owned();
    env.control.expire_access_tokens(&user).await;
    let pushed = client
        .push_to_library(
            &env.write,
            &token,
            &FileDescriptor::new("text/plain"),
            Cursor::new(b"hello".to_vec()),
        )
        .await
        .unwrap();
    let new = pushed.refreshed_token.expect("refreshed");
    assert_ne!(new.access_token.value, token.access_token.value);
    assert_eq!(seen.lock().unwrap().as_slice(), [new]);
    let files = env.control.files(&user).await;
    assert_eq!(files.len(), 1);
    assert_eq!(
        env.control
            .file(&user, files[0]["id"].as_str().unwrap())
            .await,
        b"hello"
    );
}

#[tokio::test]
async fn dead_refresh_token_needs_reauthorization_and_writes_nothing() {
    let env = env(ConsentMode::Auto).await;
    let token = env.authorize(&env.write, AuthorizeOptions::default()).await;
    let user = token.user_id().unwrap().to_owned();
    env.control.expire_access_tokens(&user).await;
    env.control.expire_refresh_tokens(&user).await;
    let err = env
        .client
        .push_to_library(
            &env.write,
            &token,
            &FileDescriptor::new("text/plain"),
            Cursor::new(vec![0u8; 1 << 20]),
        )
        .await
        .unwrap_err();
    assert!(err.needs_reauthorization(), "{err:?}");
    assert!(env.control.files(&user).await.is_empty());
}

#[tokio::test]
async fn bad_verifier_invalid_descriptor_and_wrong_state() {
    let env = env(ConsentMode::Auto).await;
    let auth = env
        .client
        .authorize_url(&env.write, CALLBACK, "mine", AuthorizeOptions::default())
        .await
        .unwrap();
    let redirect = env.control.browse(&auth.url).await;
    assert_eq!(
        parse_callback(&redirect)
            .unwrap()
            .verify_state("theirs")
            .err(),
        Some(CallbackError::StateMismatch)
    );
    let cb = parse_callback(&redirect).unwrap();
    let wrong = digime_protocol::CodeVerifier::generate().unwrap();
    let err = env
        .client
        .exchange_code_for_token(&env.write, &cb.code, &wrong)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Api(ref a) if a.code == ErrorCode::InvalidGrant),
        "{err:?}"
    );

    let token = env.authorize(&env.write, AuthorizeOptions::default()).await;
    let err = env
        .client
        .push_to_library(
            &env.write,
            &token,
            &FileDescriptor::new(""),
            Cursor::new(vec![]),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)));
    assert_eq!(env.control.requests_to("/import").await, 0);
}

#[tokio::test]
async fn denied_consent_and_jku_pinning() {
    let env = env(ConsentMode::Page).await;
    let auth = env
        .client
        .authorize_url(&env.write, CALLBACK, "s", AuthorizeOptions::default())
        .await
        .unwrap();
    let code = url::Url::parse(&auth.url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let (_, location) = env.control.decide(&code, "deny").await;
    assert!(matches!(
        parse_callback(&location.expect("a redirect")),
        Err(CallbackError::Failed { .. })
    ));

    let info = env.sandbox.info();
    let pinned_elsewhere = Client::new(
        Config::new(&info.demo.application_id)
            .unwrap()
            .with_base_url(&info.api)
            .unwrap()
            .with_jwks_url("https://keys.example/jwks")
            .unwrap(),
    );
    let err = pinned_elsewhere
        .authorize_url(&env.write, CALLBACK, "s", AuthorizeOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UntrustedKeySet { .. }), "{err:?}");
}

#[tokio::test]
async fn a_stalled_server_is_a_timeout_not_a_hang() {
    // Accepts connections, reads nothing, never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let conn = listener.accept().await;
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        drop(conn);
    });
    let config = Config::new("app")
        .unwrap()
        .with_base_url(&format!("http://{addr}/v1.7/"))
        .unwrap();
    let client = Client::new(config).with_idle_timeout(std::time::Duration::from_millis(300));
    let contract = Contract::new("c", digime_protocol::PrivateKey::generate().unwrap()).unwrap();
    let token: UserAccessToken = serde_json::from_str(
        r#"{"accessToken":{"value":"a","expiry":1},"refreshToken":{"value":"r","expiry":2}}"#,
    )
    .unwrap();
    // A large upload into a peer that never reads: the stall is detected too.
    let err = client
        .push_to_library(
            &contract,
            &token,
            &FileDescriptor::new("text/plain"),
            Cursor::new(vec![0u8; 64 << 20]),
        )
        .await
        .unwrap_err();
    // The body went out (in part): the push may have been processed.
    assert!(err.outcome_unknown(), "{err:?}");
    assert!(
        matches!(err.cause(), Error::Transport(t) if t.kind == digime_protocol::TransportErrorKind::Timeout),
        "{err:?}"
    );
    holder.await.unwrap();
}

#[tokio::test]
async fn contract_details_of_the_write_and_the_read_contract() {
    use digime_protocol::ContractAccess;
    let e = env(ConsentMode::Auto).await;
    let info = e.sandbox.info();
    for (contract, access) in [
        (&e.write, ContractAccess::Write),
        (&e.read, ContractAccess::Read),
    ] {
        let details = e.client.contract_details(contract).await.unwrap();
        assert_eq!(details.id, contract.id().as_str());
        assert_eq!(details.access_type, access);
        assert_eq!(details.application.id, info.demo.application_id);
        assert_eq!(
            details.expiration_date,
            digime_sandbox::CONTRACT_EXPIRATION_MS
        );
    }
    let stranger =
        Contract::new("stranger", digime_protocol::PrivateKey::generate().unwrap()).unwrap();
    let err = e.client.contract_details(&stranger).await.unwrap_err();
    assert_eq!(err.api().unwrap().code.as_str(), "InvalidClient");
}
