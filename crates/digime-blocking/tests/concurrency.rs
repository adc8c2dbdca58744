//! Concurrent calls on one expired token, through the blocking driver against the
//! sandbox: one refresh for all of them, every call succeeds, the new token is
//! announced once and returned to each.

use digime_blocking::Client;
use digime_protocol::{
    AuthorizeOptions, PullOptions, ReadAllOptions, UserAccessToken, parse_callback,
};
use digime_testkit::control::{quick_config, sandbox};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[test]
fn eight_threads_on_one_expired_token_share_one_refresh() {
    let (sandbox, control) = sandbox();
    let info = sandbox.info().clone();
    let announced: Arc<Mutex<Vec<UserAccessToken>>> = Arc::default();
    let (store, heard) = (announced.clone(), announced.clone());
    // The app persists the token from the listener while the other calls are in flight.
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
        .unwrap();
    let cb = parse_callback(&control.browse(&auth.url)).unwrap();
    let token = (client)
        .exchange_code_for_token(&read, &cb.code, &auth.code_verifier)
        .unwrap();
    control.expire_access_tokens(token.user_id().unwrap());
    let refreshes_before = control.requests_to("oauth/token");

    let results: Vec<_> = std::thread::scope(|scope| {
        let calls: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| client.read_accounts(&read, &token)))
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });

    assert_eq!(
        control.requests_to("oauth/token") - refreshes_before,
        1,
        "one refresh"
    );
    let announced = announced.lock().unwrap().clone();
    assert_eq!(announced.len(), 1, "announced once");
    for r in &results {
        let done = r.as_ref().expect("every call succeeds");
        let new = done
            .refreshed_token
            .as_ref()
            .expect("each call returns the new token");
        assert_eq!(
            new.refresh_token.value.expose(),
            announced[0].refresh_token.value.expose()
        );
    }
    // The persisted token works, and so does a late call with the spent one (it goes
    // with the new token, and says so).
    let persisted = &announced[0];
    assert!(
        client
            .read_accounts(&read, persisted)
            .unwrap()
            .refreshed_token
            .is_none()
    );
    let late = client.read_accounts(&read, &token).unwrap();
    assert_eq!(
        late.refreshed_token.unwrap().access_token.value.expose(),
        persisted.access_token.value.expose()
    );
    assert_eq!(control.requests_to("oauth/token") - refreshes_before, 1);

    // Three calls refresh the token again; a read-all that starts with the spent one
    // goes on with theirs, without refreshing or announcing it again, and returns it.
    // (The async suite races a read-all with the calls.)
    let session = (client.read_session(&read, persisted, &PullOptions::default()))
        .unwrap()
        .value
        .key;
    control.expire_access_tokens(token.user_id().unwrap());
    let before = control.requests_to("oauth/token");
    let options = ReadAllOptions {
        poll_interval: Duration::from_millis(50),
        ..ReadAllOptions::default()
    };
    let calls: Vec<_> = std::thread::scope(|scope| {
        let calls: Vec<_> = (0..3)
            .map(|_| scope.spawn(|| client.read_accounts(&read, persisted)))
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let all = client.read_all_files(&read, persisted, &session, options, |_| {});
    assert_eq!(
        control.requests_to("oauth/token") - before,
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
    for c in calls {
        let new = c.unwrap().refreshed_token.expect("the new token");
        assert_eq!(new.refresh_token.value.expose(), newest);
    }
}
