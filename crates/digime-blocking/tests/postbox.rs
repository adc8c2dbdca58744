//! The postbox era through the blocking driver against the strict sandbox: E0 (session,
//! one-off postbox through the native app, header-authenticated push, imported when the
//! user opens the app), E1 (one-off and ongoing postboxes, PKCE, the flat token, pushes
//! with the stored token), E2 (the postbox of the web authorization, `pending` answered
//! with one refresh and a second push), and the sad paths.

use digime_blocking::Client;
use digime_protocol::legacy::{
    self, Postbox, PostboxAuth, PostboxResult, PostboxStatus, parse_ongoing_postbox_callback,
    parse_postbox_callback, parse_saas_postbox_callback,
};
use digime_protocol::read::FileMetadata;
use digime_protocol::{
    AuthorizeOptions, CallbackError, Contract, ContractId, Error, FileDescriptor, PrivateKey,
    PullOptions, ReadAllEvent, ReadAllOptions, SessionKey, UserAccessToken,
};
use digime_sandbox::{BackgroundSandbox, ConsentMode, Sandbox, SandboxConfig};
use digime_testkit::control::Control;
use serde_json::{Value, json};
use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CALLBACK: &str = "https://app.example/postbox?from=test";

struct Env {
    sandbox: BackgroundSandbox,
    control: Control,
    write: Contract,
    read: Contract,
    refreshes: Arc<Mutex<Vec<UserAccessToken>>>,
}

/// The sandbox's control plane (`new_user`, `open_in_app`, `postbox_import`,
/// `expire_*`, `browse`, ...) is the shared harness's.
impl std::ops::Deref for Env {
    type Target = Control;
    fn deref(&self) -> &Control {
        &self.control
    }
}

fn env() -> Env {
    let sandbox = Sandbox::spawn(SandboxConfig {
        consent: ConsentMode::Auto,
        sync_step: Duration::from_millis(10),
        ..SandboxConfig::default()
    })
    .unwrap();
    let info = sandbox.info().clone();
    Env {
        control: Control::new(&info),
        write: info.demo.write.contract().unwrap(),
        read: info.demo.read.contract().unwrap(),
        sandbox,
        refreshes: Arc::new(Mutex::new(Vec::new())),
    }
}

impl Env {
    /// A client of the demo application on the API base of `version`.
    fn client(&self, version: &str) -> Client {
        let info = self.sandbox.info();
        let config = info
            .client_config()
            .with_base_url(&info.api_version(version))
            .unwrap();
        let seen = self.refreshes.clone();
        Client::new(config).on_token_refreshed(move |t| seen.lock().unwrap().push(t.clone()))
    }
    /// The pushed files in the user's library: (descriptor, bytes).
    fn pushed(&self, user: &str) -> Vec<(Value, Vec<u8>)> {
        self.library(user)
            .into_iter()
            .filter(|(f, _)| f.get("generated").is_none())
            .map(|(f, bytes)| (f["descriptor"].clone(), bytes))
            .collect()
    }
    fn pending(&self, user: &str) -> usize {
        self.get_json(&format!("users/{user}/postboxes"))["postboxes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["pending"].as_array().unwrap().len())
            .sum()
    }
    fn write_id(&self) -> ContractId {
        self.write.id().clone()
    }
}

fn descriptor(tag: &str) -> FileDescriptor {
    let mut d = FileDescriptor::new("application/json");
    d.reference = Some(vec![format!("{tag}.json")]);
    d.tags = Some(vec![tag.to_owned()]);
    d
}

/// Bytes of `len` that are not a multiple of the AES block.
fn file(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

#[test]
fn e0_one_off_push_is_pending_until_the_user_opens_the_app() {
    let env = env();
    let client = env.client("v1.4");
    let user = env.new_user();
    let session = client
        .legacy()
        .establish_session(&env.write_id(), None)
        .unwrap();
    let link = client
        .legacy()
        .create_postbox_url_once(&session.session_key, CALLBACK)
        .unwrap();
    assert!(link.url.starts_with("digime://postbox/create?callbackUrl="));
    let back = env.open_in_app(&link.url, &user);
    assert!(back.starts_with("https://app.example/postbox?from=test&state="));
    let callback = parse_postbox_callback(&back, &link.state).unwrap();
    assert!(matches!(
        callback.result,
        PostboxResult::Success | PostboxResult::PostboxReady
    ));
    assert_eq!(callback.extra, vec![("from".into(), "test".into())]);
    let data = file(100_001);
    let pushed = client
        .legacy()
        .push_to_postbox(
            &callback.postbox,
            PostboxAuth::Headers {
                session_key: session.session_key.clone(),
            },
            "dir/receipt-e0.json",
            &descriptor("e0"),
            Cursor::new(data.clone()),
        )
        .unwrap();
    assert_eq!(pushed.value.status, PostboxStatus::Pending);
    assert!(pushed.refreshed_token.is_none());
    assert!(env.pushed(&user).is_empty(), "not imported yet");
    assert_eq!(env.pending(&user), 1);
    let imported = env.postbox_import(&user);
    assert_eq!(imported["imported"].as_array().unwrap().len(), 1);
    let library = env.pushed(&user);
    assert_eq!(library.len(), 1);
    assert_eq!(
        library[0].1, data,
        "the library holds exactly the pushed bytes"
    );
    assert_eq!(library[0].0["tags"], json!(["e0"]));
}

#[test]
fn e1_ongoing_postbox_pushes_twice_with_the_stored_token() {
    let env = env();
    let client = env.client("v1.5");
    let user = env.new_user();
    let session = client
        .legacy()
        .establish_session(&env.write_id(), None)
        .unwrap();
    let ongoing = client
        .legacy()
        .create_postbox_url_ongoing(&env.write, &session.session_key, CALLBACK, Some("st-9"))
        .unwrap();
    assert!(ongoing.url.contains("preauthorizationCode="));
    let back = env.open_in_app(&ongoing.url, &user);
    let callback = parse_ongoing_postbox_callback(&back)
        .unwrap()
        .verify_state("st-9")
        .unwrap();
    let token = client
        .legacy()
        .exchange_code_for_token_ongoing(
            &env.write,
            CALLBACK,
            callback.code(),
            &ongoing.code_verifier,
        )
        .unwrap();
    // SDK v4's flat token names no user (docs/protocol.md, "Postbox era").
    assert!(!token.access_token.value.is_empty());
    // Persisted and loaded back, as an app would between the two pushes.
    let stored = serde_json::to_string(&token).unwrap();
    for (i, tag) in ["first", "second"].into_iter().enumerate() {
        let token: UserAccessToken = serde_json::from_str(&stored).unwrap();
        let data = file(5000 + i);
        let pushed = client
            .legacy()
            .push_to_postbox(
                &callback.postbox,
                PostboxAuth::SessionJwt {
                    contract: env.write.clone(),
                    session_key: session.session_key.clone(),
                    redirect_uri: CALLBACK.into(),
                    token: Some(token),
                },
                "ongoing.json",
                &descriptor(tag),
                Cursor::new(data),
            )
            .unwrap();
        assert_eq!(pushed.value.status, PostboxStatus::Delivered, "{tag}");
    }
    let library = env.pushed(&user);
    assert_eq!(library.len(), 2);
    assert_eq!(env.pending(&user), 0);
    // A one-off E1 push (no token) waits in its postbox.
    let once = client
        .legacy()
        .create_postbox_url_once(&session.session_key, CALLBACK)
        .unwrap();
    let cb = parse_postbox_callback(&env.open_in_app(&once.url, &user), &once.state).unwrap();
    let pushed = client
        .legacy()
        .push_to_postbox(
            &cb.postbox,
            PostboxAuth::SessionJwt {
                contract: env.write.clone(),
                session_key: session.session_key.clone(),
                redirect_uri: CALLBACK.into(),
                token: None,
            },
            "once.json",
            &descriptor("once"),
            Cursor::new(file(10)),
        )
        .unwrap();
    assert_eq!(pushed.value.status, PostboxStatus::Pending);
    // The flat refresh works and rotates.
    let refreshed = client
        .legacy()
        .refresh_token_ongoing(
            &env.write,
            CALLBACK,
            &serde_json::from_str(&stored).unwrap(),
        )
        .unwrap();
    assert_ne!(
        refreshed.refresh_token.value.expose(),
        serde_json::from_str::<UserAccessToken>(&stored)
            .unwrap()
            .refresh_token
            .value
            .expose()
    );
}

/// Authorizes the write contract on v1.7; the callback carries the postbox.
fn e2_authorize(env: &Env, client: &Client) -> (Postbox, UserAccessToken) {
    let auth = client
        .authorize_url(&env.write, CALLBACK, "st-e2", AuthorizeOptions::default())
        .unwrap();
    let callback = parse_saas_postbox_callback(&env.browse(&auth.url))
        .unwrap()
        .verify_state("st-e2")
        .unwrap();
    let token = client
        .exchange_code_for_token(&env.write, callback.code(), &auth.code_verifier)
        .unwrap();
    (callback.postbox, token)
}

#[test]
fn e2_push_is_delivered_and_read_back_by_a_read_contract() {
    let env = env();
    let client = env.client("v1.7");
    let (postbox, token) = e2_authorize(&env, &client);
    let data = br#"{"e2":"receipt","total":3.5}"#.to_vec();
    let pushed = client
        .legacy()
        .push_to_postbox(
            &postbox,
            PostboxAuth::TokenJwt {
                contract: env.write.clone(),
                token: token.clone(),
            },
            "receipt-e2.json",
            &descriptor("e2"),
            Cursor::new(data.clone()),
        )
        .unwrap();
    assert_eq!(pushed.value.status, PostboxStatus::Delivered);
    assert!(pushed.refreshed_token.is_none());
    // "Once data is pushed to the user, you can also request data back."
    let read_token = {
        let auth = client
            .authorize_url(
                &env.read,
                CALLBACK,
                "st-r",
                AuthorizeOptions {
                    user_access_token: Some(token),
                    ..Default::default()
                },
            )
            .unwrap();
        let cb = digime_protocol::parse_callback(&env.browse(&auth.url))
            .unwrap()
            .verify_state("st-r")
            .unwrap();
        client
            .exchange_code_for_token(&env.read, &cb.code, &auth.code_verifier)
            .unwrap()
    };
    let session = client
        .read_session(&env.read, &read_token, &PullOptions::default())
        .unwrap()
        .value;
    let mut found = Vec::new();
    client
        .read_all_files(
            &env.read,
            &read_token,
            &session.key,
            ReadAllOptions {
                poll_interval: Duration::from_millis(20),
                ..Default::default()
            },
            |e| {
                if let ReadAllEvent::File(f) = e
                    && matches!(&f.head.metadata, FileMetadata::Raw(m) if m.tags.as_deref() == Some(&["e2".to_string()][..]))
                {
                    found.push(f.data);
                }
            },
        )
        .unwrap();
    assert_eq!(found, vec![data]);
}

#[test]
fn e2_an_expired_token_is_answered_pending_then_refreshed_once_and_pushed_again() {
    let env = env();
    let client = env.client("v1.7");
    let (postbox, token) = e2_authorize(&env, &client);
    let user = token.user_id().unwrap().to_owned();
    env.expire_access_tokens(&user);
    let data = file(70_000);
    let pushed = client
        .legacy()
        .push_to_postbox(
            &postbox,
            PostboxAuth::TokenJwt {
                contract: env.write.clone(),
                token: token.clone(),
            },
            "big.bin",
            &descriptor("refreshed"),
            Cursor::new(data.clone()),
        )
        .unwrap();
    assert_eq!(pushed.value.status, PostboxStatus::Delivered);
    let new = pushed
        .refreshed_token
        .expect("the refreshed token is handed over");
    assert_eq!(*env.refreshes.lock().unwrap(), vec![new.clone()]);
    let library = env.pushed(&user);
    assert_eq!(library.len(), 1, "delivered once");
    assert_eq!(library[0].1, data);
    // The first push waits in the postbox (the server does not dedup).
    assert_eq!(env.pending(&user), 1);
    // The old refresh token is spent.
    assert!(client.refresh_token(&env.write, &token).is_err());
}

#[test]
fn a_postbox_takes_only_the_pushes_of_its_own_era() {
    let env = env();
    let client = env.client("v1.7");
    let (postbox, token) = e2_authorize(&env, &client);
    let user = token.user_id().unwrap().to_owned();
    // Anyone can open an E0 session with the public app and contract ids; an unsigned
    // E0 push must not reach a postbox that takes only contract-signed E2 pushes.
    let e0 = env.client("v1.4");
    let session = e0
        .legacy()
        .establish_session(&env.write_id(), None)
        .unwrap();
    let e = e0
        .legacy()
        .push_to_postbox(
            &postbox,
            PostboxAuth::Headers {
                session_key: session.session_key,
            },
            "x.json",
            &descriptor("x"),
            Cursor::new(file(64)),
        )
        .unwrap_err();
    assert_eq!(e.api().unwrap().status, 404);
    assert!(env.pushed(&user).is_empty());
    assert_eq!(env.pending(&user), 0);
}

#[test]
fn a_wrong_public_key_or_a_dead_session_is_refused_and_nothing_is_stored() {
    let env = env();
    let client = env.client("v1.4");
    let user = env.new_user();
    let session = client
        .legacy()
        .establish_session(&env.write_id(), None)
        .unwrap();
    let link = client
        .legacy()
        .create_postbox_url_once(&session.session_key, CALLBACK)
        .unwrap();
    let real = parse_postbox_callback(&env.open_in_app(&link.url, &user), &link.state)
        .unwrap()
        .postbox;
    let other = PrivateKey::generate().unwrap().public_key().to_pkcs1_pem();
    let wrong = Postbox::new(real.id.as_str(), &other).unwrap();
    let auth = PostboxAuth::Headers {
        session_key: session.session_key.clone(),
    };
    let e = client
        .legacy()
        .push_to_postbox(
            &wrong,
            auth.clone(),
            "x.json",
            &descriptor("x"),
            Cursor::new(file(64)),
        )
        .unwrap_err();
    let api = e.api().expect("the server's error");
    assert_eq!((api.status, api.code.as_str()), (400, "ValidationErrors"));
    // Unknown postbox.
    let unknown = Postbox::new("no-such-postbox", &other).unwrap();
    let e = client
        .legacy()
        .push_to_postbox(
            &unknown,
            auth.clone(),
            "x.json",
            &descriptor("x"),
            Cursor::new(file(64)),
        )
        .unwrap_err();
    assert_eq!(e.api().unwrap().status, 404);
    // An expired session.
    env.expire_session(session.session_key.as_str());
    let e = client
        .legacy()
        .push_to_postbox(
            &real,
            auth,
            "x.json",
            &descriptor("x"),
            Cursor::new(file(64)),
        )
        .unwrap_err();
    assert_eq!(e.api().unwrap().code.as_str(), "SessionExpired");
    // An unknown session key.
    let e = client
        .legacy()
        .push_to_postbox(
            &real,
            PostboxAuth::Headers {
                session_key: SessionKey::new("sk-unknown").unwrap(),
            },
            "x.json",
            &descriptor("x"),
            Cursor::new(file(64)),
        )
        .unwrap_err();
    assert_eq!(e.api().unwrap().status, 404);
    assert!(env.pushed(&user).is_empty());
    assert_eq!(env.pending(&user), 0);
}

#[test]
fn garbage_callbacks_are_typed_errors() {
    let key = PrivateKey::generate().unwrap().public_key().to_pkcs1_pem();
    let enc: String = form_urlencoded::byte_serialize(key.as_bytes()).collect();
    assert!(
        parse_postbox_callback(
            &format!("https://a.example/cb?state=s&result=SUCCESS&postboxId=p1&publicKey={enc}"),
            "s"
        )
        .is_ok()
    );
    for bad in [
        "",
        "not a url",
        "https://a.example/cb",
        "https://a.example/cb?result=SUCCESS&postboxId=p1",
        "https://a.example/cb?result=SUCCESS&postboxId=p1&publicKey=bm90IGEga2V5",
        "https://a.example/cb?result=SUCCESS&postboxId=p1&postboxId=p2&publicKey=x",
    ] {
        assert!(parse_postbox_callback(bad, "s").is_err(), "{bad:?}");
        let with_state = bad.replace("/cb?", "/cb?state=s&");
        assert!(parse_postbox_callback(&with_state, "s").is_err(), "{bad:?}");
    }
    // Forged: the app's link carries a state the forger does not know.
    assert_eq!(
        parse_postbox_callback(
            &format!("https://a.example/cb?result=SUCCESS&postboxId=p1&publicKey={enc}"),
            "s"
        )
        .map(drop),
        Err(CallbackError::StateMismatch)
    );
    match parse_postbox_callback("https://a.example/cb?state=s&result=CANCEL", "s") {
        Err(CallbackError::Failed { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(
        parse_ongoing_postbox_callback(&format!(
            "https://a.example/cb?result=SUCCESS&postboxId=p1&publicKey={enc}"
        ))
        .is_err(),
        "an ongoing callback needs its code"
    );
    assert!(
        parse_saas_postbox_callback("https://a.example/cb?success=false&errorCode=ACCESS_DENIED")
            .is_err()
    );
    let _ = legacy::BASE_URL_V1_4;
    let _: Option<Error> = None;
}
