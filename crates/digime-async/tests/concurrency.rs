//! Concurrent calls on one expired token, through the async driver against the
//! sandbox: one refresh for all of them, every call succeeds, the new token is
//! announced once and returned to each.

use digime_async::Client;
use digime_protocol::{AuthorizeOptions, UserAccessToken, parse_callback};
use digime_sandbox::{ConsentMode, Sandbox, SandboxConfig};
use digime_testkit::control::{AsyncControl, quick_config};
use std::sync::{Arc, Mutex};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_tasks_on_one_expired_token_share_one_refresh() {
    let sandbox = Sandbox::start(SandboxConfig {
        consent: ConsentMode::Auto,
        ..Default::default()
    })
    .await
    .unwrap();
    let info = sandbox.info().clone();
    let control = AsyncControl::new(&info);
    let announced: Arc<Mutex<Vec<UserAccessToken>>> = Arc::default();
    let store = announced.clone();
    let client = Client::new(quick_config(&info))
        .on_token_refreshed(move |t| store.lock().unwrap().push(t.clone()));
    let read = info.demo.read.contract().unwrap();
    let auth = (client)
        .authorize_url(
            &read,
            "http://localhost/cb",
            "s",
            AuthorizeOptions::default(),
        )
        .await
        .unwrap();
    let cb = parse_callback(&control.browse(&auth.url).await).unwrap();
    let token = (client)
        .exchange_code_for_token(&read, &cb.code, &auth.code_verifier)
        .await
        .unwrap();
    control.expire_access_tokens(token.user_id().unwrap()).await;
    let before = control.requests_to("oauth/token").await;

    let calls = (0..8).map(|_| {
        let (client, read, token) = (client.clone(), read.clone(), token.clone());
        tokio::spawn(async move { client.read_accounts(&read, &token).await })
    });
    let mut results = Vec::new();
    for call in calls.collect::<Vec<_>>() {
        results.push(call.await.unwrap());
    }

    assert_eq!(
        control.requests_to("oauth/token").await - before,
        1,
        "one refresh"
    );
    let announced = announced.lock().unwrap().clone();
    assert_eq!(announced.len(), 1, "announced once");
    for r in results {
        let new = r
            .expect("every call succeeds")
            .refreshed_token
            .expect("the new token");
        assert_eq!(
            new.refresh_token.value.expose(),
            announced[0].refresh_token.value.expose()
        );
    }
}
