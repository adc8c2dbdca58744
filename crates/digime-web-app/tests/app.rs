//! The web app as its users meet it: a process on SQLite, against the sandbox's real
//! consent pages, driven by a browser that posts what the app's forms post.

mod support;

use std::sync::{Arc, Mutex};
use support::{App, Browser, assert_no_secret, sandbox, token_secrets};

fn user_of(app: &App, name: &str) -> String {
    let (token, _) = app.token(name, "write").unwrap();
    token["user"]["id"].as_str().unwrap().to_owned()
}

#[test]
fn a_user_connects_pushes_reads_downloads_reconnects_and_deletes_their_data() {
    let (sandbox, control) = sandbox();
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(&sandbox, dir.path(), 0, Arc::default());
    let mut b = Browser::new(&app.base);

    // Signed out, the app offers only sign-in; pages that need a user send home.
    assert!(b.get("/").expect(200).text().contains("Sign in"));
    assert_eq!(b.get("/library").expect(303).location.as_deref(), Some("/"));
    b.sign_up("ann", "a long passphrase");
    assert!(b.get("/").expect(200).text().contains("Hello, ann"));

    // Connect: the write contract, then the read contract, linked to one library.
    let done = b.connect(&control, &["allow", "allow"]);
    assert_eq!(done.expect(303).location.as_deref(), Some("/library"));
    let (write, _) = app.token("ann", "write").unwrap();
    let (read, _) = app.token("ann", "read").unwrap();
    assert_eq!(write["user"]["id"], read["user"]["id"], "one library");
    let user = user_of(&app, "ann");
    assert!(
        b.get("/")
            .expect(200)
            .text()
            .contains("Your digi.me library is connected")
    );

    // Push: the bytes land in the library, and in the history.
    let csrf = b.csrf();
    let receipt: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    b.push_ok(&csrf, "receipt.bin", &receipt);
    let library = control.library(&user);
    assert!(
        library.iter().any(|(_, bytes)| *bytes == receipt),
        "not in the library"
    );
    let upload = b.get("/upload").expect(200).text();
    assert!(
        upload.contains("receipt.bin") && upload.contains("300000"),
        "{upload}"
    );

    // Read the library; the pushed file is listed and downloads byte for byte.
    let page = b.read_library(&csrf);
    assert!(page.contains("files read, 0 failed"), "{page}");
    let ids: Vec<String> = page
        .split("href=\"/library/files/")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().to_owned())
        .collect();
    assert!(ids.len() >= 2, "{page}");
    let downloads: Vec<Vec<u8>> = ids
        .iter()
        .map(|id| b.get(&format!("/library/files/{id}")).expect(200).body)
        .collect();
    assert!(
        downloads.contains(&receipt),
        "the pushed file did not come back whole"
    );
    // Another user's file ids are not this user's.
    let mut other = Browser::new(&app.base);
    other.sign_up("bob", "another passphrase");
    other.get(&format!("/library/files/{}", ids[0])).expect(404);
    // A second read fetches only what changed (the sandbox rewrites the files it
    // syncs, not the pushed ones).
    let read_count = |page: &str| -> u64 {
        let before = page.split(" files read").next().unwrap();
        before.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let first = read_count(&page);
    let again = b.read_library(&csrf);
    assert!(read_count(&again) + 2 <= first, "{first} then: {again}");
    assert_eq!(
        again.split("href=\"/library/files/").count() - 1,
        ids.len(),
        "{again}"
    );

    // An expired access token is refreshed, and the refreshed token is stored with
    // the push (the sandbox revokes a rotated refresh token: a lost one would show).
    control.expire_access_tokens(&user);
    let before = app.token("ann", "write").unwrap().0;
    b.push_ok(&csrf, "second.json", b"{\"n\":2}");
    let after = app.token("ann", "write").unwrap().0;
    assert_ne!(
        before["refreshToken"]["value"],
        after["refreshToken"]["value"]
    );
    assert_eq!(app.count("SELECT count(*) FROM pushes"), 2);
    b.push_ok(&csrf, "third.json", b"{\"n\":3}");

    // A dead refresh token: the push sends the user home to reconnect, which
    // reauthorizes the same library; then the read token, likewise.
    control.expire_refresh_tokens(&user);
    control.expire_access_tokens(&user);
    let p = b.push(&csrf, "fourth.json", b"{\"n\":4}").expect(303);
    assert_eq!(p.location.as_deref(), Some("/"));
    assert!(app.token("ann", "write").unwrap().1, "marked dead");
    assert!(b.get("/").expect(200).text().contains("Reconnect digi.me"));
    assert_eq!(
        app.count("SELECT count(*) FROM pushes"),
        3,
        "a failed push is not history"
    );
    let done = b.connect(&control, &["allow"]);
    assert_eq!(done.expect(303).location.as_deref(), Some("/library"));
    assert!(!app.token("ann", "write").unwrap().1);
    assert_eq!(user_of(&app, "ann"), user, "the same library");
    b.push_ok(&csrf, "fourth.json", b"{\"n\":4}");
    let page = b.read_library(&csrf);
    assert!(page.contains("reconnect from the home page"), "{page}");
    assert!(
        app.token("ann", "read").unwrap().1,
        "the read token was dead too"
    );
    b.connect(&control, &["allow"]).expect(303);
    assert!(b.read_library(&csrf).contains("sync completed"));

    // Nothing secret in the pages or the log.
    let mut secrets = b.secrets.clone();
    for kind in ["write", "read"] {
        secrets.extend(token_secrets(&app.token("ann", kind).unwrap().0));
    }
    secrets.extend(token_secrets(&before));
    for page in ["/", "/upload", "/library", "/delete"] {
        assert_no_secret(&b.get(page).text(), &secrets, page);
    }

    // Delete my data: confirmed, it deletes the digi.me user, then the app's rows and
    // files, and signs the browser out.
    let files_dir = dir.path().join("files");
    assert!(std::fs::read_dir(&files_dir).unwrap().count() > 0);
    b.post_form("/delete", &[("csrf", &csrf)]).expect(400);
    // Not while a read runs in the background (it would write after the deletion).
    control.post_json("settings", serde_json::json!({"syncStepMs": 500}));
    b.post_form("/library/read", &[("csrf", &csrf)]).expect(303);
    let busy = b.post_form("/delete", &[("csrf", &csrf), ("confirm", "yes")]);
    assert!(busy.expect(409).text().contains("being read"));
    control.post_json("settings", serde_json::json!({"syncStepMs": 20}));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while b.get("/library").text().contains("Reading your library") {
        assert!(std::time::Instant::now() < deadline, "the read never ended");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let old_cookie = b.jar.clone();
    let gone = b
        .post_form("/delete", &[("csrf", &csrf), ("confirm", "yes")])
        .expect(200);
    assert!(gone.text().contains("deleted"));
    let users = control.get_json("users");
    assert!(
        !users.to_string().contains(&user),
        "the digi.me user is still there: {users}"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM users WHERE name = 'ann'"),
        0
    );
    assert_eq!(app.count("SELECT count(*) FROM pushes"), 0);
    assert_eq!(app.count("SELECT count(*) FROM tokens"), 0);
    assert_eq!(app.count("SELECT count(*) FROM library_files"), 0);
    assert_eq!(std::fs::read_dir(&files_dir).unwrap().count(), 0);
    assert_eq!(
        std::fs::read_dir(dir.path().join("uploads"))
            .unwrap()
            .count(),
        0
    );
    b.jar = old_cookie;
    assert!(
        b.get("/").expect(200).text().contains("Sign in"),
        "the old session still works"
    );

    let log = app.log.lock().unwrap().clone();
    secrets.push(csrf);
    assert!(
        log.contains("file pushed") && log.contains("library read"),
        "{log}"
    );
    assert_no_secret(&log, &secrets, "the log");
}

#[test]
fn forged_replayed_expired_and_denied_requests_are_refused() {
    let (sandbox, control) = sandbox();
    let dir = tempfile::tempdir().unwrap();
    let app = App::start_with(
        &sandbox,
        dir.path(),
        0,
        Arc::default(),
        &["--max-upload", "1"],
    );
    let mut ann = Browser::new(&app.base);
    ann.sign_up("ann", "a long passphrase");
    let csrf = ann.csrf();

    // Sign-up and sign-in rules.
    let mut eve = Browser::new(&app.base);
    let eve_csrf = eve.get("/").expect(200).csrf();
    eve.post_form(
        "/signup",
        &[
            ("name", "ANN"),
            ("password", "whatever long"),
            ("csrf", &eve_csrf),
        ],
    )
    .expect(409);
    eve.post_form(
        "/signup",
        &[("name", "eve"), ("password", "short"), ("csrf", &eve_csrf)],
    )
    .expect(400);
    eve.post_form(
        "/login",
        &[
            ("name", "ann"),
            ("password", "a wrong passphrase"),
            ("csrf", &eve_csrf),
        ],
    )
    .expect(401);
    eve.post_form(
        "/login",
        &[
            ("name", "ann"),
            ("password", "a long passphrase"),
            ("csrf", "forged"),
        ],
    )
    .expect(403);

    // State-changing requests need the session's own CSRF token: another site's form,
    // or another session's token, changes nothing.
    ann.post_form("/connect", &[]).expect(422);
    ann.post_form("/connect", &[("csrf", &eve_csrf)])
        .expect(403);
    let forged = ann.push("", "x.json", b"{}").expect(403);
    let onboard = &sandbox.info().onboard;
    let origin = &onboard[..onboard[8..].find('/').unwrap() + 8];
    let csp = &forged.headers["content-security-policy"];
    assert!(
        csp.contains(&format!("form-action 'self' {origin};")),
        "{csp}"
    );
    for header in [
        "content-security-policy",
        "cache-control",
        "referrer-policy",
    ] {
        assert!(
            forged.headers.contains_key(header),
            "{header} missing on an error page"
        );
    }
    ann.push(&eve_csrf, "x.json", b"{}").expect(403);
    let huge_csrf = "x".repeat(32 << 10);
    ann.push(&huge_csrf, "x.json", b"{}").expect(403);
    ann.post_form("/library/read", &[("csrf", "x")]).expect(403);
    ann.post_form("/delete", &[("csrf", "x"), ("confirm", "yes")])
        .expect(403);
    ann.post_form("/logout", &[("csrf", "x")]).expect(403);
    assert_eq!(app.count("SELECT count(*) FROM pending_authorizations"), 0);
    assert_eq!(app.count("SELECT count(*) FROM users"), 1);
    assert_eq!(app.count("SELECT count(*) FROM pushes"), 0);
    assert_eq!(
        std::fs::read_dir(dir.path().join("uploads"))
            .unwrap()
            .count(),
        0
    );
    // Signed-out visitors cost no rows: only ann's session is stored.
    for _ in 0..5 {
        Browser::new(&app.base).get("/").expect(200);
    }
    assert_eq!(app.count("SELECT count(*) FROM sessions"), 1);

    // Two tabs start a fresh authorization: the second to come back is refused, so the
    // write and read contracts cannot end up on two libraries.
    let first = ann.post_form("/connect", &[("csrf", &csrf)]).expect(303);
    let second = ann.post_form("/connect", &[("csrf", &csrf)]).expect(303);
    let (_, first_back) = control.decide_on(first.location.as_deref().unwrap(), "allow");
    let (_, second_back) = control.decide_on(second.location.as_deref().unwrap(), "allow");
    ann.get(&first_back.unwrap()).expect(303);
    let library = app.token("ann", "write").unwrap().0["user"]["id"].clone();
    let refused = ann.get(&second_back.unwrap()).expect(400).text();
    assert!(refused.contains("already connected"), "{refused}");
    assert_eq!(app.token("ann", "write").unwrap().0["user"]["id"], library);
    app.db()
        .execute("DELETE FROM pending_authorizations", [])
        .unwrap();
    app.db().execute("DELETE FROM tokens", []).unwrap();

    // A return that another browser started, or one used before, is refused.
    let p = ann.post_form("/connect", &[("csrf", &csrf)]).expect(303);
    let (_, back) = control.decide_on(p.location.as_deref().unwrap(), "allow");
    let back = back.unwrap();
    eve.get(&back).expect(400);
    let mut stranger = Browser::new(&app.base);
    assert!(
        stranger
            .get(&back)
            .expect(400)
            .text()
            .contains("another browser")
    );
    ann.get(&back).expect(303); // on to the read contract's consent
    assert!(ann.get(&back).expect(400).text().contains("already used"));
    assert!(app.token("ann", "write").is_some());

    // An authorization that took too long is refused.
    let p = ann.post_form("/connect", &[("csrf", &csrf)]).expect(303);
    app.db()
        .execute("UPDATE pending_authorizations SET expires_at = 0", [])
        .unwrap();
    let (_, back) = control.decide_on(p.location.as_deref().unwrap(), "allow");
    assert!(
        ann.get(&back.unwrap())
            .expect(400)
            .text()
            .contains("took too long")
    );
    assert!(app.token("ann", "read").is_none());

    // Deny: the app's error page, nothing stored; the user can try again.
    let p = ann.post_form("/connect", &[("csrf", &csrf)]).expect(303);
    let (_, back) = control.decide_on(p.location.as_deref().unwrap(), "deny");
    let denied = ann.get(&back.unwrap()).expect(400).text();
    assert!(
        denied.contains("was not connected") && denied.contains("USER_CANCEL"),
        "{denied}"
    );
    assert!(app.token("ann", "read").is_none());
    assert_eq!(
        ann.connect(&control, &["allow"])
            .expect(303)
            .location
            .as_deref(),
        Some("/library")
    );

    // An upload larger than the app takes, or an empty one, is refused, and leaves
    // nothing behind.
    ann.push(&csrf, "big.bin", &vec![7u8; (1 << 20) + 1])
        .expect(413);
    ann.push(&csrf, "empty.json", b"").expect(400);
    assert_eq!(app.count("SELECT count(*) FROM pushes"), 0);
    assert_eq!(
        std::fs::read_dir(dir.path().join("uploads"))
            .unwrap()
            .count(),
        0
    );
    ann.push_ok(&csrf, "small.json", b"{}");
    // A type that is no MIME type gives way to one from the name.
    let p = ann
        .push_typed(&csrf, "typed.json", "not a type", b"{}")
        .expect(303);
    assert_eq!(p.location.as_deref(), Some("/upload"));
    let types: Vec<String> = app
        .db()
        .prepare("SELECT mime_type FROM pushes ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(types, ["application/json", "application/json"]);

    // A made-up return, and no return at all.
    ann.get("/return?success=true&code=x&state=made-up")
        .expect(400);
    ann.get("/return").expect(400);

    // Signing out ends the session; its CSRF token goes with it.
    ann.post_form("/logout", &[("csrf", &csrf)]).expect(303);
    assert!(ann.get("/").expect(200).text().contains("Sign in"));
    ann.push(&csrf, "x.json", b"{}").expect(303);
    assert_eq!(app.count("SELECT count(*) FROM pushes"), 2);

    // With every token dead, "delete my data" cannot reach digi.me: it says so, and
    // deletes the app's copy only when asked to.
    let mut bo = Browser::new(&app.base);
    bo.sign_up("bo", "another passphrase");
    bo.connect(&control, &["allow", "allow"]).expect(303);
    let bo_user = user_of(&app, "bo");
    control.expire_refresh_tokens(&bo_user);
    control.expire_access_tokens(&bo_user);
    let bo_csrf = bo.csrf();
    bo.push(&bo_csrf, "x.json", b"{}").expect(303);
    bo.read_library(&bo_csrf);
    let refused = bo
        .post_form("/delete", &[("csrf", &bo_csrf), ("confirm", "yes")])
        .expect(409)
        .text();
    assert!(refused.contains("Delete only this app"), "{refused}");
    assert!(app.token("bo", "write").is_some());
    let done = bo
        .post_form(
            "/delete",
            &[("csrf", &bo_csrf), ("confirm", "yes"), ("app_only", "yes")],
        )
        .expect(200)
        .text();
    assert!(done.contains("Your digi.me library is not"), "{done}");
    assert_eq!(app.count("SELECT count(*) FROM users WHERE name = 'bo'"), 0);
    assert!(control.get_json("users").to_string().contains(&bo_user));

    // Password guessing: after 5 failures within 15 minutes a name is refused, the
    // right password too, until the window is over.
    let mut mallory = Browser::new(&app.base);
    let m_csrf = mallory.get("/").expect(200).csrf();
    let login = |b: &mut Browser, password: &str| {
        let fields = [("name", "ann"), ("password", password), ("csrf", &m_csrf)];
        b.post_form("/login", &fields).status
    };
    // (One failure was counted above.)
    for _ in 0..4 {
        assert_eq!(login(&mut mallory, "a wrong passphrase"), 401);
    }
    assert_eq!(login(&mut mallory, "a long passphrase"), 429);
    app.db()
        .execute("UPDATE sign_in_failures SET since = since - 901", [])
        .unwrap();
    assert_eq!(login(&mut mallory, "a long passphrase"), 303);
    assert_eq!(app.count("SELECT count(*) FROM sign_in_failures"), 0);
}

#[test]
fn it_survives_a_crash_in_the_middle_of_an_authorization() {
    let (sandbox, control) = sandbox();
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let app = App::start(&sandbox, dir.path(), 0, log.clone());
    let mut b = Browser::new(&app.base);
    b.sign_up("ann", "a long passphrase");
    let csrf = b.csrf();
    let p = b.post_form("/connect", &[("csrf", &csrf)]).expect(303);
    let onboard = p.location.unwrap();

    // The app dies while the user is on digi.me's page, and comes back.
    let (port, log) = app.kill();
    let (_, back) = control.decide_on(&onboard, "allow");
    let app = App::start(&sandbox, dir.path(), port, log);

    // The same browser lands back: still signed in, and the authorization goes on to
    // the read contract, which the user denies for now.
    let p = b.get(&back.unwrap()).expect(303);
    assert!(app.token("ann", "write").is_some());
    let (_, back) = control.decide_on(p.location.as_deref().unwrap(), "deny");
    b.get(&back.unwrap()).expect(400);
    let user = user_of(&app, "ann");

    // Later, with the write access token expired, Connect renews it to link the read
    // contract; the renewed token is the one kept (the old refresh token is spent).
    control.expire_access_tokens(&user);
    let done = b.connect(&control, &["allow"]);
    assert_eq!(done.expect(303).location.as_deref(), Some("/library"));
    let (app, user) = {
        let (port, log) = app.kill();
        (App::start(&sandbox, dir.path(), port, log), user)
    };
    b.push_ok(&csrf, "renewed.json", b"{}");
    assert!(!app.token("ann", "write").unwrap().1);

    // A token refreshed by a push survives a crash right after it.
    control.expire_access_tokens(&user);
    b.push_ok(&csrf, "refreshed.json", b"{}");
    let (port, log) = app.kill();
    // What a crash leaves half done is gone at the next start; whole files stay.
    std::fs::write(dir.path().join("uploads/half.upload"), b"x").unwrap();
    let folder = dir.path().join("files/1");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("a.json~partial"), b"x").unwrap();
    std::fs::write(folder.join("b.json"), b"x").unwrap();
    let app = App::start(&sandbox, dir.path(), port, log);
    assert_eq!(
        std::fs::read_dir(dir.path().join("uploads"))
            .unwrap()
            .count(),
        0
    );
    let left: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["b.json"]);
    control.expire_access_tokens(&user);
    b.push_ok(&csrf, "after.json", b"{\"restarted\":true}");
    assert_eq!(app.count("SELECT count(*) FROM pushes"), 3);
    assert!(
        control
            .library(&user)
            .iter()
            .any(|(_, bytes)| bytes == b"{\"restarted\":true}")
    );
    let log = app.log.lock().unwrap().clone();
    assert!(log.contains("database migrated"), "{log}");
    assert_eq!(
        log.matches("database migrated version=1").count(),
        1,
        "migrated once: {log}"
    );
}

#[test]
fn flags_out_of_range_are_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    for flags in [
        &["--poll", "0"][..],
        &["--poll", "nan"],
        &["--pending-ttl", "-5"],
        &["--pending-ttl", "99999999999999"],
        &["--max-upload", "0"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_digime-web-app"))
            .args(["--sandbox", "--listen", "127.0.0.1:0", "--data"])
            .arg(dir.path().join("data"))
            .args(flags)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flags:?}");
        assert!(!out.stderr.is_empty(), "{flags:?}");
    }
    assert!(!dir.path().join("data").exists(), "nothing was created");
}
