//! `read_all_files` through the public API: every task's
//! flow runs against the scripted server, downloads are really decrypted.

mod support;

use digime_protocol::read_all::{ReadAllStep, Task};
use digime_protocol::{ReadAllEvent, ReadAllOptions, StopHandle, SyncState};
use support::{Answer, World};

fn data(run: &support::ReadAllRun) -> Vec<String> {
    let text = |f: &digime_protocol::FileData| String::from_utf8(f.data.clone()).unwrap();
    run.files.iter().map(text).collect()
}

fn gets(run: &support::ReadAllRun) -> Vec<&str> {
    let is_get = |l: &&String| l.starts_with("get ");
    run.log.iter().filter(is_get).map(String::as_str).collect()
}

#[test]
fn a_sync_from_pending_to_completed_reads_new_and_updated_files_once_in_list_order() {
    let w = World::new();
    let mut s = w.script();
    s.then(World::list("pending", &[("x", 5)]))
        .then(World::list("running", &[("a", 10), ("b", 10)]))
        .then(w.file(b"A10"))
        .then(w.file(b"B10"))
        .then(World::list("running", &[("a", 10), ("b", 20), ("z", 0)]))
        .then(w.file(b"B20"))
        .then(World::list("completed", &[("a", 9), ("b", 20), ("c", 30)]))
        .then(w.file(b"C30"));
    let run = s.read_all(w.read_all(ReadAllOptions::default()));

    assert_eq!(
        run.log,
        [
            "list",
            "sleep 3000ms",
            "list",
            "status running",
            "get a@10",
            "get b@10",
            "file a",
            "file b",
            "sleep 3000ms",
            "list",
            "get b@20",
            "file b",
            "sleep 3000ms",
            "list",
            "status completed",
            "get c@30",
            "file c",
        ]
    );
    assert_eq!(data(&run), ["A10", "B10", "B20", "C30"]);
    let file_path = &s.endpoints()[2];
    assert_eq!(file_path, "GET permission-access/query/s1/a");
    let summary = run.summary();
    assert_eq!(summary.status.state, SyncState::Completed);
    assert_eq!((summary.files_read, summary.files_failed), (4, 0));
    assert!(!summary.stopped && summary.refreshed_token.is_none());
}

#[test]
fn downloads_in_flight_reach_but_never_pass_max_concurrency() {
    for (max, files) in [(1, 3), (2, 5), (4, 6)] {
        let w = World::new();
        let mut s = w.script();
        let names: Vec<String> = (0..files).map(|i| format!("f{i}")).collect();
        let entries: Vec<(&str, i64)> = names.iter().map(|n| (n.as_str(), 1)).collect();
        s.then(World::list("completed", &entries));
        for n in &names {
            s.then(w.file(n.as_bytes()));
        }
        let run = s.read_all(w.read_all(ReadAllOptions {
            max_concurrency: max,
            ..Default::default()
        }));
        assert_eq!(run.max_downloads, max, "max_concurrency {max}");
        assert_eq!(data(&run), names, "each file once, in list order");
    }
}

#[test]
fn a_401_on_every_download_in_flight_is_one_shared_refresh() {
    let w = World::new();
    let mut s = w.script();
    s.then(World::list("completed", &[("a", 1), ("b", 1), ("c", 1)]));
    for _ in 0..3 {
        s.then(Answer::api_error(401, "InvalidToken"));
    }
    s.then(w.keys.token_answer("a2", "r2"))
        .then(w.file(b"a"))
        .then(w.file(b"b"))
        .then(w.file(b"c"));
    let run = s.read_all(w.read_all(ReadAllOptions::default()));

    let refreshes: Vec<_> = s
        .requests
        .iter()
        .filter(|r| r.path == "oauth/token")
        .collect();
    assert_eq!(refreshes.len(), 1, "{:?}", s.endpoints());
    assert_eq!(refreshes[0].claim("refresh_token"), "r1");
    let last_three: Vec<&str> = s.requests[5..]
        .iter()
        .map(|r| r.claim("access_token"))
        .collect();
    assert_eq!(last_three, ["a2", "a2", "a2"]);
    assert_eq!(run.count("token a2"), 1);
    assert_eq!(data(&run), ["a", "b", "c"]);
    let summary = run.summary();
    let token = summary.refreshed_token.as_ref().unwrap();
    assert_eq!(token.refresh_token.value.expose(), "r2");
}

#[test]
fn a_401_on_the_file_list_refreshes_and_asks_again_with_the_new_token() {
    let w = World::new();
    let mut s = w.script();
    s.then(Answer::status(401))
        .then(w.keys.token_answer("a2", "r2"))
        .then(World::list("completed", &[("a", 1)]))
        .then(w.file(b"a"));
    let run = s.read_all(w.read_all(ReadAllOptions::default()));
    assert_eq!(run.log[..4], ["list", "refresh", "token a2", "list"]);
    assert_eq!(s.requests[2].claim("access_token"), "a2");
    assert_eq!(s.requests[3].claim("access_token"), "a2");
    assert!(run.summary().refreshed_token.is_some());
}

/// The listeners hear of a token once: from the refresh that issued it. A run that
/// takes a token another call refreshed still hears of it itself, and returns it.
#[test]
fn a_run_announces_its_own_refresh_and_not_one_it_took_from_another_call() {
    let w = World::new();
    let mut s = w.script();
    s.then(Answer::status(401))
        .then(w.keys.token_answer("a2", "r2"))
        .then(World::list("completed", &[]));
    let own = s.read_all(w.read_all(ReadAllOptions::default()));
    assert_eq!(own.count("token a2"), 1);
    assert_eq!(s.trace.iter().filter(|l| l.starts_with("event")).count(), 1);
    assert!(s.trace.contains(&"event TokenRefreshed a2".to_owned()));

    // The run's list is refused; before the run refreshes, another call refreshes
    // the same token and announces it. The run takes that token: no second refresh,
    // no second announcement.
    let w = World::new();
    let mut s = w.script();
    let mut all = w.read_all(ReadAllOptions::default());
    let ReadAllStep::Run(Task::List(list)) = all.poll(s.now()) else {
        panic!("the run starts with the list")
    };
    s.then(Answer::status(401));
    let refused = s.run(list.into_flow());
    s.then(Answer::status(401))
        .then(w.keys.token_answer("a2", "r2"))
        .then(Answer::json("[]"));
    s.run(w.sdk.read_accounts(&w.contract, &w.token)).unwrap();
    assert_eq!(s.events.len(), 1);
    all.list_done(refused, s.now());
    let ReadAllStep::Run(Task::Refresh(refresh)) = all.poll(s.now()) else {
        panic!("a refresh")
    };
    let sent = s.requests.len();
    let token = s.run(refresh.into_flow()).unwrap();
    assert_eq!(s.requests.len(), sent, "refreshed again");
    assert_eq!(s.events.len(), 1, "announced again: {:?}", s.trace);
    all.refresh_done(Ok(token));
    match all.poll(s.now()) {
        ReadAllStep::Event(ReadAllEvent::TokenRefreshed(t)) => {
            assert_eq!(t.access_token.value.expose(), "a2")
        }
        other => panic!("{other:?}"),
    }
}

/// A run that starts with a token another call has already refreshed goes on with the
/// new one, and returns it.
#[test]
fn a_run_started_with_a_superseded_token_goes_on_with_the_new_one() {
    let w = World::new();
    let mut s = w.script();
    s.then(Answer::status(401))
        .then(w.keys.token_answer("a2", "r2"))
        .then(Answer::json("[]"));
    s.run(w.sdk.read_accounts(&w.contract, &w.token)).unwrap();
    s.then(World::list("running", &[("a", 1)]))
        .then(w.file(b"a"))
        .then(World::list("completed", &[]));
    let run = s.read_all(w.read_all(ReadAllOptions::default()));
    assert_eq!(
        run.log[..3],
        ["list", "token a2", "status running"],
        "{:?}",
        run.log
    );
    for r in &s.requests[3..] {
        assert_eq!(r.claim("access_token"), "a2", "{}", r.path);
    }
    assert_eq!(s.events.len(), 1);
    let token = run.summary().refreshed_token.as_ref().unwrap();
    assert_eq!(token.access_token.value.expose(), "a2");
    assert_eq!(run.summary().files_read, 1);
}

#[test]
fn a_401_with_a_flat_error_body_on_the_file_list_refreshes_as_a_plain_call_does() {
    let w = World::new();
    let mut s = w.script();
    s.then(Answer::status(401).body(r#"{"error":"Unauthorized","message":"expired"}"#))
        .then(w.keys.token_answer("a2", "r2"))
        .then(World::list("completed", &[("a", 1)]))
        .then(w.file(b"a"));
    let run = s.read_all(w.read_all(ReadAllOptions::default()));
    assert_eq!(run.log[..4], ["list", "refresh", "token a2", "list"]);
    assert_eq!(s.requests[2].claim("access_token"), "a2");
    assert!(run.summary().refreshed_token.is_some());
}

#[test]
fn a_dead_refresh_token_ends_the_run_and_reports_the_waiting_download() {
    let w = World::new();
    let mut s = w.script();
    s.then(World::list("completed", &[("a", 1)]))
        .then(Answer::status(401))
        .then(Answer::api_error(401, "InvalidToken"));
    let run = s.read_all(w.read_all(ReadAllOptions::default()));
    let err = run.result.as_ref().unwrap().as_ref().unwrap_err();
    assert!(err.needs_reauthorization(), "{err:?}");
    assert_eq!(
        run.log.iter().filter(|l| l.starts_with("error a")).count(),
        1
    );
}

#[test]
fn a_failed_download_is_reported_and_the_others_go_on() {
    let w = World::new();
    let mut s = w.script();
    s.then(World::list("completed", &[("a", 1), ("b", 1)]))
        .then(Answer::api_error(404, "FileNotFound"))
        .then(w.file(b"b"));
    let run = s.read_all(w.read_all(ReadAllOptions::default()));
    assert!(
        run.log.iter().any(|l| l.starts_with("error a")),
        "{:?}",
        run.log
    );
    assert_eq!(data(&run), ["b"]);
    let summary = run.summary();
    assert_eq!((summary.files_read, summary.files_failed), (1, 1));
}

#[test]
fn a_stop_starts_nothing_new_and_lets_the_running_download_finish() {
    let w = World::new();
    let stop = StopHandle::default();
    let mut s = w.script();
    let file_a = w.file(b"a");
    let stopper = stop.clone();
    s.then(World::list("running", &[("a", 1), ("b", 1)]))
        .then(Answer::with(move |_| {
            stopper.stop();
            file_a
        }));
    // No answer for b nor for another file list: either would panic as unscripted.
    let run = s.read_all(w.read_all(ReadAllOptions {
        max_concurrency: 1,
        stop,
        ..Default::default()
    }));
    assert_eq!(gets(&run), ["get a@1"]);
    assert_eq!(data(&run), ["a"]);
    let summary = run.summary();
    assert!(summary.stopped);
    assert_eq!(summary.status.state, SyncState::Running);
}
