//! The postbox era through the async driver against the strict sandbox: the same eras
//! as the blocking driver's tests, with the same outcomes.

use digime_async::Client;
use digime_protocol::legacy::{
    Postbox, PostboxAuth, PostboxStatus, parse_ongoing_postbox_callback, parse_postbox_callback,
    parse_saas_postbox_callback,
};
use digime_protocol::{AuthorizeOptions, Contract, FileDescriptor, PrivateKey, UserAccessToken};
use digime_sandbox::{ConsentMode, RunningSandbox, Sandbox, SandboxConfig};
use digime_testkit::control::AsyncControl;
use std::io::Cursor;
use std::sync::{Arc, Mutex};

const CALLBACK: &str = "https://app.example/postbox";

struct Env {
    sandbox: RunningSandbox,
    /// The control plane, called from the blocking pool while this runtime serves.
    control: AsyncControl,
    write: Contract,
    refreshes: Arc<Mutex<Vec<UserAccessToken>>>,
}

async fn env() -> Env {
    let sandbox = Sandbox::start(SandboxConfig {
        consent: ConsentMode::Auto,
        ..Default::default()
    })
    .await
    .unwrap();
    let info = sandbox.info().clone();
    Env {
        control: AsyncControl::new(&info),
        write: info.demo.write.contract().unwrap(),
        sandbox,
        refreshes: Arc::new(Mutex::new(Vec::new())),
    }
}

impl Env {
    fn client(&self, version: &str) -> Client {
        let info = self.sandbox.info();
        let config = info
            .client_config()
            .with_base_url(&info.api_version(version))
            .unwrap();
        let seen = self.refreshes.clone();
        Client::new(config).on_token_refreshed(move |t| seen.lock().unwrap().push(t.clone()))
    }
    /// The bytes of every file in the user's library.
    async fn library(&self, user: &str) -> Vec<Vec<u8>> {
        let files = self.control.library(user).await;
        files.into_iter().map(|(_, bytes)| bytes).collect()
    }
}

fn descriptor() -> FileDescriptor {
    FileDescriptor::new("application/octet-stream")
}

fn file(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 13 + 1) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e0_one_off_push_lands_after_the_app_imports_it() {
    let env = env().await;
    let client = env.client("v1.4");
    let user = env.control.new_user().await;
    let session = client
        .legacy()
        .establish_session(env.write.id(), None)
        .await
        .unwrap();
    let link = client
        .legacy()
        .create_postbox_url_once(&session.session_key, CALLBACK)
        .unwrap();
    let back = env.control.open_in_app(&link.url, &user).await;
    let cb = parse_postbox_callback(&back, &link.state).unwrap();
    // A callback that did not come from this link is refused.
    let forged = back.replace(&format!("state={}", link.state), "state=forged");
    assert_eq!(
        parse_postbox_callback(&forged, &link.state).map(drop),
        Err(digime_protocol::CallbackError::StateMismatch)
    );
    let data = file(33_333);
    let pushed = client
        .legacy()
        .push_to_postbox(
            &cb.postbox,
            PostboxAuth::Headers {
                session_key: session.session_key.clone(),
            },
            "e0.bin",
            &descriptor(),
            Cursor::new(data.clone()),
        )
        .await
        .unwrap();
    assert_eq!(pushed.value.status, PostboxStatus::Pending);
    assert!(env.library(&user).await.is_empty());
    env.control.postbox_import(&user).await;
    assert_eq!(env.library(&user).await, vec![data]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e1_ongoing_pushes_twice_and_a_wrong_key_is_refused() {
    let env = env().await;
    let client = env.client("v1.5");
    let user = env.control.new_user().await;
    let session = client
        .legacy()
        .establish_session(env.write.id(), None)
        .await
        .unwrap();
    let ongoing = client
        .legacy()
        .create_postbox_url_ongoing(&env.write, &session.session_key, CALLBACK, Some("s1"))
        .await
        .unwrap();
    let cb = parse_ongoing_postbox_callback(&env.control.open_in_app(&ongoing.url, &user).await)
        .unwrap()
        .verify_state("s1")
        .unwrap();
    let token = client
        .legacy()
        .exchange_code_for_token_ongoing(&env.write, CALLBACK, cb.code(), &ongoing.code_verifier)
        .await
        .unwrap();
    let auth = PostboxAuth::SessionJwt {
        contract: env.write.clone(),
        session_key: session.session_key.clone(),
        redirect_uri: CALLBACK.into(),
        token: Some(token),
    };
    for len in [1, 4096] {
        let pushed = client
            .legacy()
            .push_to_postbox(
                &cb.postbox,
                auth.clone(),
                "e1.bin",
                &descriptor(),
                Cursor::new(file(len)),
            )
            .await
            .unwrap();
        assert_eq!(pushed.value.status, PostboxStatus::Delivered);
    }
    assert_eq!(env.library(&user).await, vec![file(1), file(4096)]);
    let other = PrivateKey::generate().unwrap().public_key().to_pkcs1_pem();
    let wrong = Postbox::new(cb.postbox.id.as_str(), &other).unwrap();
    let e = client
        .legacy()
        .push_to_postbox(&wrong, auth, "x", &descriptor(), Cursor::new(file(9)))
        .await
        .unwrap_err();
    assert_eq!(e.api().unwrap().status, 400);
    assert_eq!(env.library(&user).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2_pending_is_refreshed_once_and_pushed_again() {
    let env = env().await;
    let client = env.client("v1.7");
    let auth = client
        .authorize_url(&env.write, CALLBACK, "st", AuthorizeOptions::default())
        .await
        .unwrap();
    let cb = parse_saas_postbox_callback(&env.control.browse(&auth.url).await)
        .unwrap()
        .verify_state("st")
        .unwrap();
    let token = client
        .exchange_code_for_token(&env.write, cb.code(), &auth.code_verifier)
        .await
        .unwrap();
    let user = token.user_id().unwrap().to_owned();
    env.control.expire_access_tokens(&user).await;
    let data = file(200_000);
    let pushed = client
        .legacy()
        .push_to_postbox(
            &cb.postbox,
            PostboxAuth::TokenJwt {
                contract: env.write.clone(),
                token,
            },
            "e2.bin",
            &descriptor(),
            Cursor::new(data.clone()),
        )
        .await
        .unwrap();
    assert_eq!(pushed.value.status, PostboxStatus::Delivered);
    assert_eq!(
        *env.refreshes.lock().unwrap(),
        vec![pushed.refreshed_token.unwrap()]
    );
    assert_eq!(env.library(&user).await, vec![data]);
}
