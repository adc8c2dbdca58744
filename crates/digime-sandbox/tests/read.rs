//! The read side of the sandbox, exercised as a server: raw HTTP, request JWTs signed
//! by hand, responses checked byte for byte (no SDK request builders).

mod support;

use digime_crypto::envelope::{Decryptor, Format, decrypt};
use digime_crypto::{CryptoError, jws};
use digime_sandbox::{ConsentMode, DEMO_APP_ID, DEMO_WRITE_CONTRACT, SandboxConfig};
use serde_json::{Value, json};
use std::io::Read;
use std::time::{Duration, Instant};
use support::{
    Env, Reply, User, agent_with, bearer, claims, config, file_names, nonce, now_ms,
    raw_connection, read_client, read_response, reply, start, write_client,
};

fn env_with(tweak: impl FnOnce(&mut SandboxConfig)) -> Env {
    let mut config = config(ConsentMode::Auto);
    tweak(&mut config);
    start(config)
}

fn env() -> Env {
    env_with(|_| {})
}

/// The agent of this suite's requests: one with a `meta` that is not empty.
fn agent() -> Value {
    agent_with(json!({"rust": "1.88"}))
}

impl Env {
    fn settings(&self, body: Value) {
        let r = self.control_post("settings", body);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }

    fn trigger_with(&self, authorization: &str, body: &Value) -> Reply {
        reply(
            self.http
                .post(&self.api("permission-access/trigger"))
                .header("authorization", authorization)
                .content_type("application/json")
                .send(body.to_string()),
        )
    }

    fn trigger(&self, u: &User, mut options: Value) -> String {
        options["agent"] = agent();
        let r = self.trigger_with(&self.read_bearer(&u.read_at), &options);
        assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
        let v = r.json();
        let expiry = v["session"]["expiry"].as_u64().unwrap();
        assert!(expiry > now_ms() + 29 * 60 * 1000 && expiry <= now_ms() + 30 * 60 * 1000);
        v["session"]["key"].as_str().unwrap().to_owned()
    }

    fn get_file(&self, at: &str, key: &str, name: &str) -> Reply {
        reply(
            self.http
                .get(&self.api(&format!("permission-access/query/{key}/{name}")))
                .header("authorization", self.read_bearer(at))
                .header("accept", "application/octet-stream")
                .call(),
        )
    }

    fn head_file(&self, at: &str, key: &str, name: &str) -> Reply {
        reply(
            self.http
                .head(&self.api(&format!("permission-access/query/{key}/{name}")))
                .header("authorization", self.read_bearer(at))
                .call(),
        )
    }

    /// GET, check the headers, decrypt, decompress: `(x-metadata, plaintext)`.
    fn download(&self, at: &str, key: &str, name: &str) -> (Value, Vec<u8>) {
        let r = self.get_file(at, key, name);
        assert_eq!(
            r.status,
            200,
            "{name}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        assert!(r.header("last-modified").unwrap().ends_with(" GMT"));
        let meta = x_metadata(&r);
        let plain = decrypt(&self.read_key, &r.body, Format::Current).unwrap();
        (meta.clone(), decompress(&meta, plain))
    }
}

fn x_metadata(r: &Reply) -> Value {
    let text = r.header("x-metadata").expect("X-Metadata");
    assert!(!text.contains('=') && !text.contains('+') && !text.contains('/'));
    serde_json::from_slice(&digime_crypto::b64url_decode(text).unwrap()).unwrap()
}

fn decompress(meta: &Value, data: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::new();
    match meta["compression"].as_str() {
        None => return data,
        Some("gzip") => flate2::read::GzDecoder::new(&data[..])
            .read_to_end(&mut out)
            .unwrap(),
        Some("brotli") => brotli::Decompressor::new(&data[..], 4096)
            .read_to_end(&mut out)
            .unwrap(),
        Some(other) => panic!("compression {other}"),
    };
    out
}

fn sha256_hex(data: &[u8]) -> String {
    digime_crypto::sha256(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn accounts(env: &Env, u: &User) -> Vec<Value> {
    let r = env.accounts_reply(&read_client(), &u.read_at);
    assert_eq!(r.status, 200);
    r.json().as_array().unwrap().clone()
}

#[test]
fn trigger_with_a_bad_bearer_is_406_never_401() {
    let env = env();
    let u = env.user();
    let body = json!({"agent": agent()});
    // No header, not a bearer, garbage, a signature by the wrong key.
    let wrong_key = bearer(
        &env.write_key,
        &claims(&read_client(), json!({"access_token": u.read_at})),
    );
    for auth in ["", "Basic abc", "Bearer not.a.jwt", wrong_key.as_str()] {
        let r = env.trigger_with(auth, &body);
        assert_eq!(r.status, 406, "{auth}");
        assert_eq!(r.code(), "ValidationErrors");
    }
    // A replayed nonce.
    let auth = env.read_bearer(&u.read_at);
    assert_eq!(env.trigger_with(&auth, &body).status, 202);
    let r = env.trigger_with(&auth, &body);
    assert_eq!((r.status, r.code().as_str()), (406, "InvalidRequest"));
    // An unknown access token is the 401 that makes clients refresh.
    let r = env.trigger_with(&env.read_bearer("at_nope"), &body);
    assert_eq!((r.status, r.code().as_str()), (401, "InvalidToken"));
    // The write contract's token with the read contract's key: not the same client.
    let r = env.trigger_with(&env.read_bearer(&u.write_at), &body);
    assert_eq!((r.status, r.code().as_str()), (401, "InvalidToken"));
}

#[test]
fn trigger_checks_scope_body_agent_and_option_types() {
    let env = env();
    let u = env.user();
    // A write-only contract cannot read.
    let auth = env.user_bearer(&write_client(), &u.write_at);
    let r = env.trigger_with(&auth, &json!({"agent": agent()}));
    assert_eq!((r.status, r.code().as_str()), (403, "InsufficientScope"));

    let r = reply(
        env.http
            .post(&env.api("permission-access/trigger"))
            .header("authorization", env.read_bearer(&u.read_at))
            .content_type("application/json")
            .send("[1,2]"),
    );
    assert_eq!((r.status, r.code().as_str()), (400, "ValidationErrors"));

    let r = env.trigger_with(&env.read_bearer(&u.read_at), &json!({}));
    assert_eq!((r.status, r.code().as_str()), (400, "ValidationErrors"));
    let r = env.trigger_with(
        &env.read_bearer(&u.read_at),
        &json!({"agent": {"sdk": {"name": "test", "version": "1.0.0"}}}),
    );
    assert_eq!((r.status, r.code().as_str()), (400, "SDKInvalid"));

    for bad in [
        json!({"sourceFetch": "yes"}),
        json!({"limits": {"duration": {"sourceFetch": "30"}}}),
        json!({"scope": []}),
        json!({"scope": {"timeRanges": [{"last": "6 months"}]}}),
        json!({"scope": {"timeRanges": [{"last": "6\u{e9}"}]}}),
        json!({"scope": {"timeRanges": [{"last": "d"}]}}),
        json!({"scope": {"criteria": [{"last": "-1d"}]}}),
        json!({"scope": {"timeRanges": [{"from": "1700000000"}]}}),
        json!({"scope": {"timeRanges": [5]}}),
        json!({"scope": {"serviceGroups": [{"id": 1}]}}),
        json!({"scope": {"serviceGroups": [{"id": "1", "serviceTypes": []}]}}),
        json!({"scope": {"serviceGroups": [{"id": 1, "serviceTypes": [{"id": 3, "serviceObjectTypes": [{"id": "x"}]}]}]}}),
        json!({"scope": {"criteria": [{"metadata": {"tags": "x"}}]}}),
        json!({"scope": {"criteria": [{"metadata": {"accounts": [{"id": "x"}]}}]}}),
        json!({"sourceFetchFilter": {"account": {"id": [1]}}}),
    ] {
        let mut body = bad.clone();
        body["agent"] = agent();
        let r = env.trigger_with(&env.read_bearer(&u.read_at), &body);
        assert_eq!(
            (r.status, r.code().as_str()),
            (400, "ValidationErrors"),
            "{bad}"
        );
    }
    // The protocol's full example of the session options, with an unknown key passed through, is accepted.
    env.trigger(
        &u,
        json!({
            "limits": {"duration": {"sourceFetch": 30}},
            "scope": {
                "timeRanges": [{"last": "6m"}],
                "serviceGroups": [{"id": 1, "serviceTypes": [{"id": 3, "serviceObjectTypes": [{"id": 1}]}]}],
                "criteria": [{"metadata": {"tags": ["x"]}}]
            },
            "sourceFetch": true,
            "sourceFetchFilter": {"account": {"id": ["1_abc"]}},
            "somethingNew": {"a": 1}
        }),
    );
}

#[test]
fn file_list_goes_pending_running_completed() {
    let env = env();
    // Steps long enough that a poll lands in each state even on a loaded machine.
    env.settings(json!({"syncStepMs": 700}));
    let u = env.user();
    let key = env.trigger(&u, json!({}));
    let first = env.list_ok(&u.read_at, &key);
    assert_eq!(first, json!({"status": {"state": "pending"}}));

    let mut states = vec!["pending".to_owned()];
    let mut last_len = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = loop {
        assert!(Instant::now() < deadline, "the sync never completed");
        let v = env.list_ok(&u.read_at, &key);
        let state = v["status"]["state"].as_str().unwrap().to_owned();
        if state != "pending" {
            let list = v["fileList"].as_array().unwrap();
            assert!(list.len() >= last_len, "the list never shrinks");
            last_len = list.len();
            for f in list {
                assert!(f["updatedDate"].as_u64().unwrap() > 1_600_000_000_000);
            }
            let details = v["status"]["details"].as_object().unwrap();
            assert_eq!(details.len(), 2);
            for d in details.values() {
                let s = d["state"].as_str().unwrap();
                assert!(s == "running" || s == "completed", "{d}");
            }
        }
        if states.last() != Some(&state) {
            states.push(state.clone());
        }
        if state == "completed" {
            break v;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(states, ["pending", "running", "completed"]);
    let ids: Vec<String> = accounts(&env, &u)
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        done["status"]["details"],
        json!({ids[0].clone(): {"state": "completed"}, ids[1].clone(): {"state": "completed"}})
    );
    let list = done["fileList"].as_array().unwrap();
    let mapped: Vec<&Value> = list.iter().filter(|f| f.get("schema").is_some()).collect();
    assert!((6..=12).contains(&mapped.len()), "{}", mapped.len());
    let objects: u64 = mapped
        .iter()
        .map(|f| f["objectCount"].as_u64().unwrap())
        .sum();
    assert!(objects >= 300, "{objects}");
    for f in &mapped {
        assert_eq!(
            f["schema"],
            json!({"standard": "digime", "version": "1.0.0"})
        );
        for key in ["serviceGroup", "serviceName", "objectType", "objectVersion"] {
            assert!(f[key].is_string(), "{f}");
        }
    }
    // The two raw demo files of the demo application.
    assert_eq!(list.len() - mapped.len(), 2);
}

#[test]
fn head_gives_x_metadata_and_get_decrypts_for_every_compression() {
    let env = env();
    let u = env.user();
    let generated = env.control_post(
        &format!("users/{}/generate-files", u.id),
        json!({"count": 1, "size": 100_000, "compression": "brotli", "prefix": "pinned"}),
    );
    assert_eq!(generated.status, 200);
    let generated = generated.json()["files"][0].clone();
    assert_eq!(generated["name"], "pinned0001.bin");
    let library = env.control_json(&format!("users/{}/files", u.id));
    let demo = library["demo"].as_array().unwrap().clone();
    assert_eq!(library["files"][0]["sha256"], generated["sha256"]);

    let key = env.trigger(&u, json!({"sourceFetch": false}));
    let list = env.list_ok(&u.read_at, &key);
    assert_eq!(list["status"], json!({"state": "completed"}));
    let mapped = list["fileList"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["objectType"] == "activity")
        .unwrap()
        .clone();
    let mapped_name = mapped["name"].as_str().unwrap();

    // HEAD: the headers of a GET, no body.
    let head = env.head_file(&u.read_at, &key, mapped_name);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let meta = x_metadata(&head);
    assert_eq!(
        meta,
        json!({"metadata": {
            "objectCount": mapped["objectCount"], "objectType": "activity",
            "serviceGroup": mapped["serviceGroup"], "serviceName": mapped["serviceName"],
            "schema": {"standard": "digime", "version": "1.0.0"}, "objectVersion": "1.0.0",
        }})
    );
    assert!(head.header("last-modified").is_some());
    let expected = demo.iter().find(|d| d["name"] == mapped_name).unwrap();
    let size = expected["size"].as_u64().unwrap();
    assert_eq!(
        head.header("content-length"),
        Some((272 + 16 * (size / 16 + 1)).to_string().as_str())
    );

    for compression in ["none", "gzip", "brotli"] {
        env.settings(json!({"compression": compression}));
        for d in &demo {
            let name = d["name"].as_str().unwrap();
            let (meta, plain) = env.download(&u.read_at, &key, name);
            assert_eq!(
                meta.get("compression").and_then(Value::as_str),
                (compression != "none").then_some(compression),
            );
            assert_eq!(sha256_hex(&plain), d["sha256"], "{name} {compression}");
            if d["kind"] == "mapped" {
                let objects: Vec<Value> = serde_json::from_slice(&plain).unwrap();
                assert_eq!(objects.len() as u64, d["objectCount"].as_u64().unwrap());
            }
        }
        // The generated file keeps its own compression.
        let (meta, plain) = env.download(&u.read_at, &key, "pinned0001.bin");
        assert_eq!(meta["compression"], "brotli");
        assert_eq!(plain.len(), 100_000);
        assert_eq!(sha256_hex(&plain), generated["sha256"]);
    }

    // Raw metadata of a demo raw file: lower-case keys plus appid, contractid, created.
    let (meta, plain) = env.download(&u.read_at, &key, "demo_workouts.csv");
    assert!(plain.starts_with(b"date,workout,"));
    let m = &meta["metadata"];
    assert_eq!(m["mimetype"], "text/csv");
    assert_eq!(m["accounts"], json!([{"accountid": "demo-account-1"}]));
    assert_eq!(m["appid"], DEMO_APP_ID);
    assert_eq!(m["contractid"], DEMO_WRITE_CONTRACT);
    assert!(m["created"].is_u64());
    // Every response has a fresh key and IV.
    let a = env.get_file(&u.read_at, &key, "demo_workouts.csv").body;
    let b = env.get_file(&u.read_at, &key, "demo_workouts.csv").body;
    assert_ne!(a[..272], b[..272]);
}

#[test]
fn sessions_unknown_foreign_and_expired() {
    let env = env();
    let u = env.user();
    let other = env.user();
    let key = env.trigger(&u, json!({"sourceFetch": false}));

    let r = env.list(&u.read_at, "sess_unknown");
    assert_eq!((r.status, r.code().as_str()), (404, "SessionNotFound"));
    // Another user's session looks exactly like an unknown one.
    let r = env.list(&other.read_at, &key);
    assert_eq!((r.status, r.code().as_str()), (404, "SessionNotFound"));
    let r = env.get_file(&other.read_at, &key, "demo_workouts.csv");
    assert_eq!((r.status, r.code().as_str()), (404, "SessionNotFound"));
    // An unknown file of a good session.
    let r = env.get_file(&u.read_at, &key, "nope.json");
    assert_eq!((r.status, r.code().as_str()), (404, "FileNotFound"));
    let r = env.head_file(&u.read_at, &key, "nope.json");
    assert_eq!(r.status, 404);

    let r = env.control_post(&format!("sessions/{key}/expire"), json!({}));
    assert_eq!(r.status, 200);
    let r = env.list(&u.read_at, &key);
    assert_eq!((r.status, r.code().as_str()), (410, "SessionExpired"));
    let r = env.get_file(&u.read_at, &key, "demo_workouts.csv");
    assert_eq!((r.status, r.code().as_str()), (410, "SessionExpired"));
    let r = env.control_post("sessions/sess_unknown/expire", json!({}));
    assert_eq!(r.status, 404);

    // An expired access token is the 401 that makes clients refresh.
    let key = env.trigger(&u, json!({}));
    let r = env.control_post(&format!("users/{}/expire-access-tokens", u.id), json!({}));
    assert_eq!(r.status, 200);
    let r = env.list(&u.read_at, &key);
    assert_eq!((r.status, r.code().as_str()), (401, "InvalidToken"));
    let r = env.head_file(&u.read_at, &key, "demo_workouts.csv");
    assert_eq!(r.status, 401);
}

#[test]
fn a_failing_account_ends_partial_and_heals() {
    let env = env();
    let u = env.user();
    let accs = accounts(&env, &u);
    let social = accs
        .iter()
        .find(|a| a["serviceGroupName"] == "Social")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("users/{}/accounts/{social}/fail", u.id);
    let r = env.control_post(&path, json!({}));
    assert_eq!(r.status, 200);
    let after: Vec<Value> = accounts(&env, &u);
    let acc = after.iter().find(|a| a["id"] == social.as_str()).unwrap();
    assert_eq!(acc["accessTokenStatus"]["authorized"], false);

    let key = env.trigger(&u, json!({}));
    let done = env.wait_done(&u.read_at, &key);
    assert_eq!(done["status"]["state"], "partial");
    assert_eq!(
        done["status"]["details"][&social],
        json!({"state": "partial", "error": {"code": "ServiceAuthorizationError",
            "statusCode": 511, "message": "Service authorization required", "reauth": true}})
    );
    let files = done["fileList"].as_array().unwrap();
    assert!(files.iter().all(|f| f["serviceName"] != "instagram"));
    assert!(files.iter().any(|f| f["serviceName"] == "fitbit"));

    // A custom error.
    let r = env.control_post(
        &path,
        json!({"code": "SourceUnavailable", "statusCode": 503, "reauth": false}),
    );
    assert_eq!(r.status, 200);
    let key = env.trigger(&u, json!({}));
    let done = env.wait_done(&u.read_at, &key);
    assert_eq!(
        done["status"]["details"][&social]["error"]["statusCode"],
        503
    );
    assert_eq!(done["status"]["details"][&social]["error"]["reauth"], false);

    let r = reply(env.http.delete(&env.control(&path)).call());
    assert_eq!((r.status, r.json()["healed"].as_bool()), (200, Some(true)));
    let key = env.trigger(&u, json!({}));
    let done = env.wait_done(&u.read_at, &key);
    assert_eq!(done["status"]["state"], "completed");
    assert!(
        done["fileList"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["serviceName"] == "instagram")
    );
    let r = env.control_post(&format!("users/{}/accounts/4_nope/fail", u.id), json!({}));
    assert_eq!(r.status, 404);
}

#[test]
fn a_file_rewritten_mid_sync_gets_a_later_date_and_new_content() {
    let env = env();
    env.settings(json!({"syncStepMs": 700, "rewriteMidSync": true}));
    let u = env.user();
    let key = env.trigger(&u, json!({}));
    let mut seen: Option<(String, u64, Vec<u8>)> = None;
    let mut rewritten = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = env.list_ok(&u.read_at, &key);
        let state = v["status"]["state"].as_str().unwrap().to_owned();
        if let Some(first) = v["fileList"].as_array().and_then(|l| l.first()) {
            let name = first["name"].as_str().unwrap().to_owned();
            let date = first["updatedDate"].as_u64().unwrap();
            match &seen {
                None => {
                    let (_, plain) = env.download(&u.read_at, &key, &name);
                    seen = Some((name, date, plain));
                }
                Some((n, d, old)) if *n == name && date > *d && rewritten.is_none() => {
                    assert_eq!(state, "running", "rewritten in a running list");
                    let (meta, plain) = env.download(&u.read_at, &key, &name);
                    assert_ne!(&plain, old);
                    let objects: Vec<Value> = serde_json::from_slice(&plain).unwrap();
                    assert_eq!(
                        objects.len() as u64,
                        meta["metadata"]["objectCount"].as_u64().unwrap()
                    );
                    rewritten = Some(date);
                }
                _ => {}
            }
        }
        if state == "completed" {
            break;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(15));
    }
    assert!(rewritten.is_some(), "no rewrite seen");
}

#[test]
fn filters_select_accounts_services_and_raw_files() {
    let env = env();
    let u = env.user();
    let accs = accounts(&env, &u);
    assert_eq!(accs.len(), 2);
    for a in &accs {
        for key in [
            "id",
            "reference",
            "type",
            "createdDate",
            "updatedDate",
            "serviceGroupId",
            "serviceGroupName",
            "serviceTypeId",
            "serviceTypeName",
            "serviceTypeReference",
            "sourceId",
            "accessTokenStatus",
        ] {
            assert!(a.get(key).is_some(), "{key} in {a}");
        }
        let id = a["id"].as_str().unwrap();
        assert!(id.starts_with(&format!("{}_", a["serviceTypeId"])), "{id}");
    }
    let fitbit = accs
        .iter()
        .find(|a| a["serviceTypeReference"] == "fitbit")
        .unwrap();
    let fitbit_id = fitbit["id"].as_str().unwrap();

    // Only the Fitbit account syncs; the other account's data is already there.
    let key = env.trigger(
        &u,
        json!({"sourceFetchFilter": {"account": {"id": [fitbit_id]}}}),
    );
    let done = env.wait_done(&u.read_at, &key);
    let details = done["status"]["details"].as_object().unwrap();
    assert_eq!(details.keys().collect::<Vec<_>>(), [fitbit_id]);
    let list = done["fileList"].as_array().unwrap();
    assert!(list.iter().any(|f| f["serviceName"] == "instagram"));

    // serviceGroups: social only; criteria: raw files tagged "fitness".
    let key = env.trigger(
        &u,
        json!({"scope": {
            "serviceGroups": [{"id": 1, "serviceTypes": []}],
            "criteria": [{"metadata": {"tags": ["fitness"]}}],
        }}),
    );
    let done = env.wait_done(&u.read_at, &key);
    let list = done["fileList"].as_array().unwrap();
    let mapped: Vec<&Value> = list.iter().filter(|f| f.get("schema").is_some()).collect();
    assert!(!mapped.is_empty());
    assert!(mapped.iter().all(|f| f["serviceGroup"] == "social"));
    assert_eq!(
        file_names(&done)
            .into_iter()
            .filter(|n| n.starts_with("demo_"))
            .collect::<Vec<_>>(),
        ["demo_workouts.csv"]
    );
    // An object-type filter inside a service.
    let key = env.trigger(
        &u,
        json!({"scope": {"serviceGroups": [{"id": 4, "serviceTypes": [{"id": 12, "serviceObjectTypes": [{"id": 301}]}]}]}}),
    );
    let done = env.wait_done(&u.read_at, &key);
    let list = done["fileList"].as_array().unwrap();
    let types: Vec<&str> = list
        .iter()
        .filter_map(|f| f["objectType"].as_str())
        .collect();
    assert!(
        !types.is_empty() && types.iter().all(|t| *t == "sleep"),
        "{types:?}"
    );
    // timeRanges far in the past: no mapped data.
    let key = env.trigger(
        &u,
        json!({"scope": {"timeRanges": [{"from": 0, "to": 86_400}]}}),
    );
    let done = env.wait_done(&u.read_at, &key);
    assert!(
        done["fileList"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f.get("schema").is_none())
    );
}

#[test]
fn pushed_files_are_read_back_with_raw_metadata() {
    let env = env();
    let u = env.user();
    let content = b"hello from a library push\n".repeat(1000);
    let descriptor = json!({"metadata": {"mimeType": "text/plain",
        "accounts": [{"accountId": "acc-1"}], "reference": ["r.txt"], "tags": ["t1"]}});
    let r = env.import(&u.write_at, &descriptor, &content);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let stored = env.control_json(&format!("users/{}/files", u.id));
    let stored = &stored["files"][0];
    assert_eq!(stored["sha256"], sha256_hex(&content));
    let name = stored["name"].as_str().unwrap();

    let key = env.trigger(&u, json!({"sourceFetch": false}));
    let list = env.list_ok(&u.read_at, &key);
    let entry = list["fileList"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap();
    assert_eq!(entry["updatedDate"], stored["created"]);
    for compression in ["none", "gzip"] {
        env.settings(json!({"compression": compression}));
        let (meta, plain) = env.download(&u.read_at, &key, name);
        assert_eq!(plain, content);
        assert_eq!(
            meta["metadata"],
            json!({"mimetype": "text/plain", "accounts": [{"accountid": "acc-1"}],
                "reference": ["r.txt"], "tags": ["t1"], "appid": DEMO_APP_ID,
                "contractid": DEMO_WRITE_CONTRACT, "created": stored["created"]})
        );
    }
}

#[test]
fn big_generated_files_stream_and_damaged_files_fail_alone() {
    let env = env();
    let u = env.user();
    let size: u64 = 8 << 20;
    let r = env.control_post(
        &format!("users/{}/generate-files", u.id),
        json!({"count": 3, "size": size, "prefix": "big"}),
    );
    assert_eq!(r.status, 200);
    let files = r.json()["files"].as_array().unwrap().clone();
    assert_eq!(files.len(), 3);
    let r = env.control_post(
        &format!("users/{}/generate-files", u.id),
        json!({"count": 1, "size": 10, "prefix": "big"}),
    );
    assert_eq!(r.status, 400, "names are unique");

    env.settings(json!({"corrupt": ["big0002.bin"], "truncate": ["big0003.bin"]}));
    let key = env.trigger(&u, json!({"sourceFetch": false}));

    // Stream-decrypt the first one, checking length and digest.
    let head = env.head_file(&u.read_at, &key, "big0001.bin");
    assert_eq!(
        head.header("content-length"),
        Some((272 + 16 * (size / 16 + 1)).to_string().as_str())
    );
    let (total, digest) = stream_download(&env, &u.read_at, &key, "big0001.bin");
    assert_eq!(
        (total, digest.as_str()),
        (size, files[0]["sha256"].as_str().unwrap())
    );
    env.settings(json!({"compression": "brotli"}));
    let (total, digest) = stream_download(&env, &u.read_at, &key, "big0001.bin");
    assert_eq!(
        (total, digest.as_str()),
        (size, files[0]["sha256"].as_str().unwrap())
    );
    env.settings(json!({"compression": "none"}));

    // The corrupted file: a 200 whose padding check fails.
    let r = env.get_file(&u.read_at, &key, "big0002.bin");
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len() as u64, 272 + 16 * (size / 16 + 1));
    assert!(matches!(
        decrypt(&env.read_key, &r.body, Format::Current),
        Err(CryptoError::BadPadding)
    ));
    // The truncated file: a 200 with the header only.
    let r = env.get_file(&u.read_at, &key, "big0003.bin");
    assert_eq!((r.status, r.body.len()), (200, 272));
    assert!(matches!(
        decrypt(&env.read_key, &r.body, Format::Current),
        Err(CryptoError::InvalidFileSize { .. })
    ));
    // Damage works on compressed files too, and the others are unharmed.
    env.settings(json!({"compression": "gzip", "corrupt": ["demo_workouts.csv"], "truncate": []}));
    let r = env.get_file(&u.read_at, &key, "demo_workouts.csv");
    assert!(decrypt(&env.read_key, &r.body, Format::Current).is_err());
    let (_, plain) = env.download(&u.read_at, &key, "big0003.bin");
    assert_eq!(sha256_hex(&plain), files[2]["sha256"]);

    // The control API serves the plaintext too.
    let r = reply(
        env.http
            .get(&env.control(&format!("users/{}/files/big0003.bin", u.id)))
            .call(),
    );
    assert_eq!(sha256_hex(&r.body), files[2]["sha256"]);
}

/// Peak resident memory of this process (client and sandbox), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Streams `name` through a decryptor and the decompressor its `X-Metadata` names:
/// `(bytes of plaintext, sha256 hex)`.
fn stream_download(env: &Env, at: &str, key: &str, name: &str) -> (u64, String) {
    use std::io::Write;
    let mut resp = env
        .http
        .get(&env.api(&format!("permission-access/query/{key}/{name}")))
        .header("authorization", env.read_bearer(at))
        .call()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let meta = x_metadata(&Reply {
        status: 200,
        headers: resp.headers().clone(),
        body: Vec::new(),
    });
    let hasher = Sha256Stream::default();
    let mut sink: Box<dyn Write> = match meta["compression"].as_str() {
        None => Box::new(hasher.clone()),
        Some("gzip") => Box::new(flate2::write::GzDecoder::new(hasher.clone())),
        Some("brotli") => Box::new(brotli::DecompressorWriter::new(hasher.clone(), 4096)),
        Some(other) => panic!("{other}"),
    };
    let mut reader = resp.body_mut().with_config().limit(u64::MAX).reader();
    let mut decryptor = Decryptor::new(&env.read_key, Format::Current);
    let mut buf = vec![0u8; 1 << 16];
    let mut out = Vec::new();
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        decryptor.update(&buf[..n], &mut out).unwrap();
        sink.write_all(&out).unwrap();
        out.clear();
    }
    decryptor.finish(&mut out).unwrap();
    sink.write_all(&out).unwrap();
    sink.flush().unwrap();
    drop(sink); // finishes the decompressor
    hasher.result()
}

/// Slow in debug builds (about a minute): `cargo test -p digime-sandbox -- --ignored`.
#[test]
#[ignore]
fn a_gibibyte_file_is_served_in_constant_memory() {
    let env = env();
    let u = env.user();
    let size: u64 = 1 << 30;
    let r = env.control_post(
        &format!("users/{}/generate-files", u.id),
        json!({"count": 1, "size": size, "prefix": "huge"}),
    );
    assert_eq!(r.status, 200);
    let sha = r.json()["files"][0]["sha256"].as_str().unwrap().to_owned();
    let key = env.trigger(&u, json!({"sourceFetch": false}));
    let before = peak_rss_kib();
    for compression in ["none", "gzip"] {
        env.settings(json!({"compression": compression}));
        let (total, digest) = stream_download(&env, &u.read_at, &key, "huge0001.bin");
        assert_eq!(
            (total, digest.as_str()),
            (size, sha.as_str()),
            "{compression}"
        );
    }
    let grown = peak_rss_kib().saturating_sub(before);
    assert!(grown < 64 * 1024, "peak memory grew by {grown} KiB");
}

/// SHA-256 and length of a stream; clones share the state.
#[derive(Default, Clone)]
struct Sha256Stream(std::rc::Rc<std::cell::RefCell<(sha2::Sha256, u64)>>);

impl std::io::Write for Sha256Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let mut st = self.0.borrow_mut();
        st.0.update(buf);
        st.1 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Sha256Stream {
    fn result(&self) -> (u64, String) {
        use sha2::Digest;
        let st = self.0.borrow();
        let hex =
            st.0.clone()
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
        (st.1, hex)
    }
}

#[test]
fn the_session_of_an_authorization_reads_after_consent() {
    let env = env();
    let client = read_client();
    let verifier = digime_crypto::random::alphanumeric(64).unwrap();
    let challenge = digime_crypto::pkce::challenge_of(&verifier);
    let claims = json!({
        "client_id": client, "nonce": nonce(),
        "timestamp": now_ms(), "response_type": "code", "response_mode": "query",
        "code_challenge_method": "S256", "code_challenge": challenge,
        "redirect_uri": "http://localhost:9999/cb", "state": "st",
    });
    let r = reply(
        env.http
            .post(&env.api("oauth/authorize"))
            .header("authorization", bearer(&env.read_key, &claims))
            .content_type("application/json")
            .send(json!({"agent": agent()}).to_string()),
    );
    assert_eq!(r.status, 201);
    let v = r.json();
    let session = v["session"]["key"].as_str().unwrap().to_owned();
    let token = jws::Compact::parse(v["token"].as_str().unwrap()).unwrap();
    let pre: Value = serde_json::from_slice(&token.payload().unwrap()).unwrap();
    let pre = pre["preauthorization_code"].as_str().unwrap();

    let r = reply(
        env.http
            .get(&env.onboard(&format!("authorize?code={pre}")))
            .call(),
    );
    assert_eq!(r.status, 302);
    let location = url::Url::parse(r.header("location").unwrap()).unwrap();
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();

    let claims = json!({
        "client_id": client, "nonce": nonce(),
        "timestamp": now_ms(), "grant_type": "authorization_code", "code": code,
        "code_verifier": verifier,
    });
    let r = reply(
        env.http
            .post(&env.api("oauth/token"))
            .header("authorization", bearer(&env.read_key, &claims))
            .send_empty(),
    );
    assert_eq!(r.status, 201);
    let body = r.json();
    let token = jws::Compact::parse(body["token"].as_str().unwrap()).unwrap();
    let payload: Value = serde_json::from_slice(&token.payload().unwrap()).unwrap();
    let at = payload["access_token"]["value"].as_str().unwrap();

    let done = env.wait_done(at, &session);
    assert_eq!(done["status"]["state"], "completed");
    assert!(file_names(&done).len() >= 8);
    let name = file_names(&done)[0].clone();
    let (meta, plain) = env.download(at, &session, &name);
    assert!(meta["metadata"]["objectCount"].is_u64());
    assert!(serde_json::from_slice::<Vec<Value>>(&plain).is_ok());
}

#[test]
fn control_api_validates_its_input() {
    let env = env_with(|c| c.demo_data = false);
    let u = env.user();
    for (path, body) in [
        ("settings", json!({"syncStepMs": 0})),
        ("settings", json!({"compression": "zip"})),
        ("settings", json!({"corrupt": "x"})),
        ("users", json!({"id": "../etc"})),
        ("users", json!({"clients": ["nope_nope"]})),
        (
            &*format!("users/{}/generate-files", u.id),
            json!({"count": 0, "size": 1}),
        ),
        (
            &*format!("users/{}/generate-files", u.id),
            json!({"count": 1}),
        ),
        (
            &*format!("users/{}/generate-files", u.id),
            json!({"count": 1, "size": 1, "prefix": "a/b"}),
        ),
    ] {
        let r = env.control_post(path, body.clone());
        assert_eq!(r.status, 400, "{path} {body}");
    }
    let r = env.control_post(
        "users/usr_nobody/generate-files",
        json!({"count": 1, "size": 1}),
    );
    assert_eq!(r.status, 404);
    // Without demo data the library and the accounts are empty.
    assert!(accounts(&env, &u).is_empty());
    let key = env.trigger(&u, json!({}));
    let done = env.wait_done(&u.read_at, &key);
    assert_eq!(done["fileList"], json!([]));
    let s = env.control_json("settings");
    assert_eq!(s["settings"]["syncStepMs"], 20);
    // The shortcut with a chosen id is idempotent on the user.
    let a = env.control_post("users", json!({"id": "alice"})).json();
    let b = env.control_post("users", json!({"id": "alice"})).json();
    assert_eq!(a["user"], b["user"]);
}

#[test]
fn posts_with_an_unread_empty_chunked_body_keep_the_connection_usable() {
    use std::io::Write;
    let env = env();
    let (mut conn, mut reader, addr) = raw_connection(&env);
    // Bodyless calls sent with an empty chunked body (as ureq's send_empty does), then
    // another request on the same connection.
    for (path, expected) in [
        ("/v1.7/oauth/token", 406),
        ("/_sandbox/sessions/sess_nope/expire", 404),
        ("/_sandbox/reset", 200),
    ] {
        // The empty body's terminator arrives after the headers, as from a client that
        // writes the body separately.
        write!(
            conn,
            "POST {path} HTTP/1.1\r\nhost: {addr}\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        .unwrap();
        conn.flush().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        conn.write_all(b"0\r\n\r\n").unwrap();
        assert_eq!(
            read_response(&mut reader).unwrap().status,
            expected,
            "{path}"
        );
        write!(conn, "GET /_sandbox/info HTTP/1.1\r\nhost: {addr}\r\n\r\n").unwrap();
        let r = read_response(&mut reader).expect("the connection is still open");
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
}

#[test]
fn a_get_with_a_chunked_body_keeps_the_connection_usable() {
    use std::io::Write;
    let env = env();
    let (mut conn, mut reader, addr) = raw_connection(&env);
    for path in ["/v1.7/jwks/oauth", "/_sandbox/info"] {
        // The body comes in two chunks, the second after a pause, as from a client that
        // streams it.
        write!(
            conn,
            "GET {path} HTTP/1.1\r\nhost: {addr}\r\ntransfer-encoding: chunked\r\n\r\n\
             5\r\nhello\r\n"
        )
        .unwrap();
        conn.flush().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        conn.write_all(b"6\r\n world\r\n0\r\n\r\n").unwrap();
        let r = read_response(&mut reader).unwrap();
        assert_eq!(
            r.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        write!(conn, "GET {path} HTTP/1.1\r\nhost: {addr}\r\n\r\n").unwrap();
        let r = read_response(&mut reader).expect("the connection is still open");
        assert_eq!(
            r.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
}

#[test]
fn a_get_with_a_body_over_64_kib_is_413_and_the_client_reads_it() {
    use std::io::Write;
    let env = env();
    let (mut conn, mut reader, addr) = raw_connection(&env);
    // 1 MiB: far more than the server reads before deciding, so an answer sent without
    // draining would meet unread data and reset the connection.
    let body = vec![b'x'; 1 << 20];
    write!(
        conn,
        "GET /v1.7/jwks/oauth HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    let mut writer = conn.try_clone().unwrap();
    let sent = std::thread::spawn(move || writer.write_all(&body));
    let r = read_response(&mut reader).expect("the 413 is read, not reset");
    sent.join().unwrap().expect("the whole body was taken");
    r.error(413, "PayloadTooLarge");
    assert_eq!(
        r.json()["error"]["message"],
        "The request body is larger than 65536 bytes"
    );
    // The body was drained, so the connection goes on.
    write!(
        conn,
        "GET /v1.7/jwks/oauth HTTP/1.1\r\nhost: {addr}\r\n\r\n"
    )
    .unwrap();
    let r = read_response(&mut reader).expect("the connection is still open");
    assert_eq!(r.status, 200);
    // The refusal is in the request log, as every API request.
    let log = env.control_json("requests");
    let entries = log["requests"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["path"] == "/v1.7/jwks/oauth" && e["status"] == 413),
        "{log}"
    );
}

#[test]
fn a_get_with_a_malformed_chunked_body_is_400_in_the_standard_shape() {
    use std::io::Write;
    let env = env();
    let (mut conn, mut reader, addr) = raw_connection(&env);
    write!(
        conn,
        "GET /v1.7/jwks/oauth HTTP/1.1\r\nhost: {addr}\r\ntransfer-encoding: chunked\r\n\r\n\
         zz\r\nhello\r\n0\r\n\r\n"
    )
    .unwrap();
    let r = read_response(&mut reader).unwrap();
    r.error(400, "ValidationErrors");
}

#[test]
fn unknown_paths_and_methods_answer_in_the_standard_shape_after_reading_the_body() {
    use std::io::Write;
    let env = env();
    let (mut conn, mut reader, addr) = raw_connection(&env);
    for (method, path, status, code) in [
        (
            "PATCH",
            "/v1.7/permission-access/trigger",
            405,
            "MethodNotAllowed",
        ),
        ("PUT", "/v1.7/oauth/token", 405, "MethodNotAllowed"),
        ("POST", "/_sandbox/info", 405, "MethodNotAllowed"),
        ("PUT", "/_sandbox/reset", 405, "MethodNotAllowed"),
        ("POST", "/v1.7/nothing/here", 404, "NotFound"),
        ("POST", "/_sandbox/nothing", 404, "NotFound"),
    ] {
        // A body the handler never reads: it is drained, and the connection goes on.
        let body = vec![b'x'; 100_000];
        write!(
            conn,
            "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        conn.write_all(&body).unwrap();
        let r = read_response(&mut reader).unwrap();
        r.error(status, code);
        write!(conn, "GET /_sandbox/info HTTP/1.1\r\nhost: {addr}\r\n\r\n").unwrap();
        let r = read_response(&mut reader).expect("the connection is still open");
        assert_eq!(r.status, 200, "after {method} {path}");
    }
}
