//! Concurrent calls on one expired token, through the async driver against the
//! sandbox: one refresh for all of them, every call succeeds, the new token is
//! announced once and returned to each.

use digime_async::Client;
use digime_protocol::{
    AuthorizeOptions, PullOptions, ReadAllOptions, UserAccessToken, parse_callback,
};
use digime_sandbox::{ConsentMode, Sandbox, SandboxConfig};
use digime_testkit::control::{AsyncControl, quick_config};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    let (store, heard) = (announced.clone(), announced.clone());
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

    // A read-all among the calls: still one refresh, announced once, and the run
    // returns the new token whether it refreshed or took another call's.
    let persisted = announced[0].clone();
    let session = (client.read_session(&read, &persisted, &PullOptions::default()))
        .await
        .unwrap()
        .value
        .key;
    control.expire_access_tokens(token.user_id().unwrap()).await;
    let before = control.requests_to("oauth/token").await;
    let options = ReadAllOptions {
        poll_interval: Duration::from_millis(50),
        ..ReadAllOptions::default()
    };
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let (client, read, token) = (client.clone(), read.clone(), persisted.clone());
            tokio::spawn(async move { client.read_accounts(&read, &token).await })
        })
        .collect();
    let all = (client.read_all_files(&read, &persisted, &session, options, |_| {})).await;
    let mut results = Vec::new();
    for call in calls {
        results.push(call.await.unwrap());
    }
    assert_eq!(
        control.requests_to("oauth/token").await - before,
        1,
        "one refresh"
    );
    let heard = heard.lock().unwrap().clone();
    assert_eq!(heard.len(), 2, "the second refresh announced once");
    let newest = heard[1].refresh_token.value.expose();
    let summary = all.expect("the read-all succeeds");
    let from_run = summary
        .refreshed_token
        .expect("the run returns the new token");
    assert_eq!(from_run.refresh_token.value.expose(), newest);
    for r in results {
        let new = r.unwrap().refreshed_token.expect("the new token");
        assert_eq!(new.refresh_token.value.expose(), newest);
    }
}
