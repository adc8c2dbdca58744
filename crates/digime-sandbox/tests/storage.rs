//! Storage, exercised as a server: raw HTTP, request and storage JWTs signed by hand,
//! answers checked on the wire. `POST`/`GET storage` and the `cloudId` reference on the
//! API base, the `authorize` page's `storageRef`, and the cloud base's list, upload,
//! download and delete behind the storage JWT.

mod support;

use digime_crypto::PrivateKey;
use digime_crypto::envelope::{self, Format};
use digime_sandbox::state::ContractKind;
use digime_sandbox::{
    ConsentMode, ContractRegistration, DEMO_APP_ID, DEMO_READ_CONTRACT, DEMO_WRITE_CONTRACT,
    SandboxConfig,
};
use serde_json::{Value, json};
use support::{
    Env, Reply, agent, config, now_ms, param, read_client, reply, sign_with_header, start,
    storage_bearer, storage_claims, storage_header, write_client,
};

/// Another application, its id in mixed case (listings lower-case it in `path`).
const OTHER_APP: &str = "Other-App";
const OTHER_CONTRACT: &str = "other-1";
const CALLBACK: &str = "http://localhost:9999/cb";

/// A sandbox with the demo contracts and one of [`OTHER_APP`]; that contract's key.
fn env_with(consent: ConsentMode, state_dir: Option<std::path::PathBuf>) -> (Env, PrivateKey) {
    let other = PrivateKey::generate().unwrap();
    let config = SandboxConfig {
        state_dir,
        contracts: vec![ContractRegistration {
            app_id: OTHER_APP.into(),
            contract_id: OTHER_CONTRACT.into(),
            public_key: other.public_key(),
            kind: ContractKind::ReadWrite,
        }],
        ..config(consent)
    };
    (start(config), other)
}

fn env() -> (Env, PrivateKey) {
    env_with(ConsentMode::Auto, None)
}

fn other_client() -> String {
    format!("{OTHER_APP}_{OTHER_CONTRACT}")
}

/// Deterministic bytes of a valid envelope length (the cloud stores bytes; only the
/// length is an envelope's).
fn opaque(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    digime_crypto::sha256(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Env {
    fn cloud(&self, storage: &str, app: &str, path: &str) -> String {
        format!(
            "{}clouds/{storage}/files/apps/{app}{path}",
            self.sandbox.info().cloud
        )
    }
    /// A storage bearer of the demo read contract.
    fn s_bearer(&self) -> String {
        storage_bearer(&self.read_key, DEMO_READ_CONTRACT, DEMO_APP_ID)
    }

    fn post_storage(&self, authorization: &str, body: &str) -> Reply {
        reply(
            self.http
                .post(&self.api("storage"))
                .header("authorization", authorization)
                .content_type("application/json")
                .send(body),
        )
    }
    fn get_storage(&self, client: &str, at: &str) -> Reply {
        reply(
            self.http
                .get(&self.api("storage"))
                .header("authorization", self.user_bearer(client, at))
                .call(),
        )
    }
    fn cloud_reference(&self, client: &str, storage: &str) -> Reply {
        reply(
            self.http
                .post(&self.api("reference"))
                .header("authorization", self.bearer(client, json!({})))
                .content_type("application/json")
                .send(json!({"type": "cloudId", "value": storage}).to_string()),
        )
    }

    fn upload_as(&self, bearer: &str, url: &str, body: &[u8]) -> Reply {
        reply(
            self.http
                .post(url)
                .header("authorization", bearer)
                .content_type("application/octet-stream")
                .send(body),
        )
    }
    /// Uploads `body` to `path` of the demo app's folder.
    fn upload(&self, storage: &str, path: &str, body: &[u8]) -> Reply {
        self.upload_as(
            &self.s_bearer(),
            &self.cloud(storage, DEMO_APP_ID, path),
            body,
        )
    }
    fn list_as(&self, bearer: &str, url: &str) -> Reply {
        reply(
            self.http
                .get(url)
                .header("authorization", bearer)
                .header("accept", "application/json")
                .call(),
        )
    }
    /// Lists `folder` of the demo app's folder (`recursive` as given).
    fn list_files(&self, storage: &str, folder: &str, recursive: bool) -> Value {
        let url = format!(
            "{}?recursive={recursive}",
            self.cloud(storage, DEMO_APP_ID, folder)
        );
        self.list_as(&self.s_bearer(), &url).ok(200)
    }
    fn download(&self, storage: &str, path: &str) -> Reply {
        reply(
            self.http
                .get(&self.cloud(storage, DEMO_APP_ID, path))
                .header("authorization", self.s_bearer())
                .header("accept", "application/octet-stream")
                .call(),
        )
    }
    fn delete(&self, storage: &str, path: &str) -> Reply {
        reply(
            self.http
                .delete(&self.cloud(storage, DEMO_APP_ID, path))
                .header("authorization", self.s_bearer())
                .call(),
        )
    }
    /// The blobs on disk of a storage (none once its folder is gone).
    fn blobs(&self, storage: &str) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(self.state_dir().join("cloud").join(storage))
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
        names.sort();
        names
    }
    fn control_files(&self, storage: &str) -> Vec<Value> {
        self.control_json(&format!("clouds/{storage}/files"))["files"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// `oauth/authorize` for the demo read contract (with `extra` claims), then its
    /// `authorize` page with `link` appended; the answer and the PKCE verifier.
    fn authorize_page(&self, extra: Value, link: &str) -> (Reply, String) {
        let (url, verifier) = self.authorize_link(extra, link);
        (self.get(&url), verifier)
    }

    /// The `authorize` page URL of a new `oauth/authorize` of the demo read contract
    /// (with `extra` claims), `link` appended; and the PKCE verifier.
    fn authorize_link(&self, extra: Value, link: &str) -> (String, String) {
        let verifier = digime_crypto::random::alphanumeric(43).unwrap();
        let challenge = digime_crypto::pkce::challenge_of(&verifier);
        let mut claims = json!({"response_type": "code", "response_mode": "query",
            "code_challenge_method": "S256", "code_challenge": challenge,
            "redirect_uri": CALLBACK, "state": "st"});
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        let r = reply(
            self.http
                .post(&self.api("oauth/authorize"))
                .header("authorization", self.bearer(&read_client(), claims))
                .content_type("application/json")
                .send(json!({"agent": agent()}).to_string()),
        );
        let pre = self.server_payload(
            r.ok(201)["token"].as_str().unwrap(),
            &self.api("jwks/oauth"),
        );
        let code = pre["preauthorization_code"].as_str().unwrap();
        (
            self.onboard(&format!("authorize?code={code}{link}")),
            verifier,
        )
    }
}

// ---------------------------------------------------------------------------
// The API base.

#[test]
fn post_storage_makes_a_provisional_storage_of_the_application() {
    let (env, other_key) = env();
    let r = env.post_storage(&env.bearer(&read_client(), json!({})), "");
    let v = r.ok(201);
    assert_eq!(v.as_object().unwrap().len(), 2, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(v["kid"], format!("{DEMO_READ_CONTRACT}_{DEMO_APP_ID}_0"));
    // A new one on every call; the write contract's carries its own kid.
    let w = env
        .post_storage(&env.bearer(&write_client(), json!({})), "")
        .ok(201);
    assert_ne!(w["id"], v["id"]);
    assert_eq!(w["kid"], format!("{DEMO_WRITE_CONTRACT}_{DEMO_APP_ID}_0"));
    let o = env
        .post_storage(
            &support::bearer(&other_key, &support::claims(&other_client(), json!({}))),
            "",
        )
        .ok(201);
    assert_eq!(o["kid"], format!("{OTHER_CONTRACT}_{OTHER_APP}_0"));
    // The control view: the application's, nobody's yet, empty.
    let storages = env.control_json("clouds")["storages"].clone();
    let mine = storages
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(mine["appId"], DEMO_APP_ID);
    assert_eq!(mine["userId"], Value::Null);
    assert_eq!(mine["files"], 0);
    assert_eq!(storages.as_array().unwrap().len(), 3);
    // No body, a bearer as everywhere.
    env.post_storage(&env.bearer(&read_client(), json!({})), "{}")
        .error(400, "ValidationErrors");
    env.post_storage("Bearer nonsense", "")
        .error(406, "ValidationErrors");
    let b = env.bearer(&read_client(), json!({}));
    env.post_storage(&b, "").ok(201);
    env.post_storage(&b, "").error(406, "InvalidRequest");
    assert_eq!(
        env.control_json("clouds")["storages"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

#[test]
fn get_storage_makes_the_users_storage_once() {
    let (env, _) = env();
    let u = env.user();
    let first = env.get_storage(&read_client(), &u.read_at).ok(200);
    assert_eq!(first.as_object().unwrap().len(), 2, "{first}");
    assert_eq!(
        first["kid"],
        format!("{DEMO_READ_CONTRACT}_{DEMO_APP_ID}_0")
    );
    // Stable, and the application's: the write contract of the same app gets it too.
    assert_eq!(env.get_storage(&read_client(), &u.read_at).ok(200), first);
    assert_eq!(env.get_storage(&write_client(), &u.write_at).ok(200), first);
    // Another user has another.
    let u2 = env.user();
    let second = env.get_storage(&read_client(), &u2.read_at).ok(200);
    assert_ne!(second["id"], first["id"]);
    let storages = env.control_json("clouds")["storages"].clone();
    assert_eq!(storages.as_array().unwrap().len(), 2);
    let s = storages
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == first["id"])
        .unwrap();
    assert_eq!(s["userId"], u.id.as_str());
    // A user call: a bad token is 401, so that SDKs refresh.
    env.get_storage(&read_client(), "at_unknown")
        .error(401, "InvalidToken");
    env.control_post(&format!("users/{}/expire-access-tokens", u.id), json!({}))
        .ok(200);
    env.get_storage(&read_client(), &u.read_at)
        .error(401, "InvalidToken");
}

#[test]
fn a_cloud_reference_names_a_storage_of_the_callers_application() {
    let (env, other_key) = env();
    let mine = env.provisional_storage(&read_client());
    let v = env.cloud_reference(&read_client(), &mine).ok(200);
    assert!(v["id"].as_str().unwrap().starts_with("ref_"));
    // The other contract of the same application may name it too.
    env.cloud_reference(&write_client(), &mine).ok(200);
    let m = env
        .cloud_reference(&read_client(), "stg_made_up")
        .error(404, "StorageNotFound");
    assert!(m.contains("stg_made_up"), "{m}");
    let theirs = env
        .post_storage(
            &support::bearer(&other_key, &support::claims(&other_client(), json!({}))),
            "",
        )
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    env.cloud_reference(&read_client(), &theirs)
        .error(404, "StorageNotFound");
}

#[test]
fn authorize_with_a_storage_ref_makes_the_storage_the_users() {
    let (env, _) = env();
    let storage = env.provisional_storage(&read_client());
    let reference = env.cloud_reference(&read_client(), &storage).ok(200)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (page, verifier) = env.authorize_page(
        json!({}),
        &format!("&sourceType=pull&storageRef={reference}"),
    );
    let (_, q) = page.redirect();
    assert_eq!(param(&q, "success").as_deref(), Some("true"), "{q:?}");
    let at = env.access_token_of(&read_client(), &param(&q, "code").unwrap(), &verifier);
    let v = env.get_storage(&read_client(), &at).ok(200);
    assert_eq!(v["id"], storage.as_str());
    assert_eq!(v["kid"], format!("{DEMO_READ_CONTRACT}_{DEMO_APP_ID}_0"));
    // The files uploaded before the authorization are the user's storage's.
    env.upload(&storage, "/early.bin", &opaque(288, 1)).ok(201);
    assert_eq!(env.list_files(&storage, "/", false)["total"], 1);
    // The same user authorizing again with the same storage: still theirs.
    let reference2 = env.cloud_reference(&read_client(), &storage).ok(200)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (page, _) = env.authorize_page(
        json!({"access_token": at}),
        &format!("&storageRef={reference2}"),
    );
    let (_, q) = page.redirect();
    assert_eq!(param(&q, "success").as_deref(), Some("true"), "{q:?}");
}

#[test]
fn a_bad_storage_ref_ends_the_authorization_with_onboard_error() {
    let (env, _) = env();
    let u = env.user();
    let storage = env.provisional_storage(&read_client());
    let of_write = env.cloud_reference(&write_client(), &storage).ok(200)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let account = reply(
        env.http
            .post(&env.api("reference"))
            .header("authorization", env.bearer(&read_client(), json!({})))
            .content_type("application/json")
            .send(json!({"type": "accountId", "value": "12_x"}).to_string()),
    )
    .ok(200)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Another user's storage (made for them by GET storage) cannot be linked.
    let taken = env.get_storage(&read_client(), &u.read_at).ok(200)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let of_taken = env.cloud_reference(&read_client(), &taken).ok(200)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for bad in [of_write.as_str(), &account, "ref_made_up", &of_taken] {
        let (page, _) = env.authorize_page(json!({}), &format!("&storageRef={bad}"));
        let (url, q) = page.redirect();
        assert_eq!(url.path(), "/cb");
        assert_eq!(param(&q, "success").as_deref(), Some("false"), "{bad}");
        assert_eq!(
            param(&q, "errorCode").as_deref(),
            Some("ONBOARD_ERROR"),
            "{bad}"
        );
        assert_eq!(param(&q, "state").as_deref(), Some("st"));
    }
    // An empty one is a malformed link: an error page, nowhere to send the user.
    let (page, _) = env.authorize_page(json!({}), "&storageRef=");
    assert_eq!(page.status, 400);
    assert!(page.text().contains("ONBOARD_ERROR"));
    // Nothing was linked: the provisional storage is still nobody's.
    let storages = env.control_json("clouds")["storages"].clone();
    let s = storages
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == storage.as_str())
        .unwrap();
    assert_eq!(s["userId"], Value::Null);
}

#[test]
fn the_consent_page_carries_the_storage_ref_to_the_decision() {
    let (env, _) = env_with(ConsentMode::Page, None);
    let storage = env.provisional_storage(&read_client());
    let reference = env.cloud_reference(&read_client(), &storage).ok(200)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (link, _) = env.authorize_link(json!({}), &format!("&storageRef={reference}"));
    let page = env.get(&link);
    assert_eq!(page.status, 200);
    assert!(page.text().contains(&reference));
    // Nothing linked until the user allows.
    let control = digime_testkit::control::Control::new(env.sandbox.info());
    assert_eq!(control.storages()[0]["userId"], Value::Null);
    let (status, location) = control.decide_on(&link, "allow");
    assert_eq!(status, 302);
    assert!(location.unwrap().contains("success=true"));
    let storages = control.storages();
    let s = storages
        .iter()
        .find(|s| s["id"] == storage.as_str())
        .unwrap();
    assert!(s["userId"].as_str().unwrap().starts_with("usr_"), "{s}");
}

// ---------------------------------------------------------------------------
// The cloud base: files.

#[test]
fn listings_show_the_paths_as_requested_and_lower_cased() {
    let (env, other_key) = env();
    let bearer = || storage_bearer(&other_key, OTHER_CONTRACT, OTHER_APP);
    let storage = env
        .post_storage(
            &support::bearer(&other_key, &support::claims(&other_client(), json!({}))),
            "",
        )
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for path in [
        "/b.json",
        "/a.json",
        "/invoices/2024/r.pdf",
        "/invoices/x.bin",
    ] {
        let v = env
            .upload_as(
                &bearer(),
                &env.cloud(&storage, OTHER_APP, path),
                &opaque(304, 2),
            )
            .ok(201);
        let (folder, name) = path.rsplit_once('/').unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["id", "name", "originalName", "originalPath", "path"],
            "{v}"
        );
        assert_eq!(v["name"], name);
        assert_eq!(v["originalName"], name);
        assert_eq!(v["originalPath"], format!("/apps/{OTHER_APP}{folder}/"));
        assert_eq!(v["path"], format!("/apps/other-app{folder}/"));
        assert!(v["id"].as_str().is_some_and(|id| !id.is_empty()));
    }
    let list = |folder: &str, recursive: &str| {
        env.list_as(
            &bearer(),
            &format!(
                "{}?recursive={recursive}",
                env.cloud(&storage, OTHER_APP, folder)
            ),
        )
    };
    let names = |v: &Value| -> Vec<(String, String)> {
        v["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["path"].as_str().unwrap().to_owned(),
                    f["name"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let root = list("/", "false").ok(200);
    assert_eq!(root["total"], 2);
    assert_eq!(
        names(&root),
        [
            ("/apps/other-app/".into(), "a.json".into()),
            ("/apps/other-app/".into(), "b.json".into())
        ]
    );
    assert_eq!(root["files"][0]["originalPath"], "/apps/Other-App/");
    // Recursive: by folder, then name.
    let all = list("/", "true").ok(200);
    assert_eq!(all["total"], 4);
    assert_eq!(
        names(&all),
        [
            ("/apps/other-app/".into(), "a.json".into()),
            ("/apps/other-app/".into(), "b.json".into()),
            ("/apps/other-app/invoices/".into(), "x.bin".into()),
            ("/apps/other-app/invoices/2024/".into(), "r.pdf".into()),
        ]
    );
    let invoices = list("/invoices/", "false").ok(200);
    assert_eq!(
        names(&invoices),
        [("/apps/other-app/invoices/".into(), "x.bin".into())]
    );
    assert_eq!(
        invoices["files"][0]["originalPath"],
        "/apps/Other-App/invoices/"
    );
    assert_eq!(list("/invoices/", "true").ok(200)["total"], 2);
    // A folder with no files.
    assert_eq!(
        list("/nothing/here/", "true").ok(200),
        json!({"files": [], "total": 0})
    );
    // `recursive` is required, true or false, once.
    for q in [
        "",
        "?recursive=yes",
        "?recursive=true&recursive=false",
        "?recursive",
    ] {
        env.list_as(
            &bearer(),
            &format!("{}{q}", env.cloud(&storage, OTHER_APP, "/")),
        )
        .error(400, "ValidationErrors");
    }
    // The app id compares case-sensitively to the JWT's.
    env.list_as(
        &bearer(),
        &env.cloud(&storage, "other-app", "/?recursive=true"),
    )
    .error(403, "InsufficientScope");
}

#[test]
fn uploads_are_stored_as_sent_and_download_byte_identical() {
    let (env, _) = env();
    let storage = env.provisional_storage(&read_client());
    let plain = b"a secret note, only for the contract key".to_vec();
    let sealed = envelope::encrypt(&env.read_key.public_key(), &plain, Format::Current).unwrap();
    env.upload(&storage, "/notes/n1.json", &sealed).ok(201);
    let r = env.download(&storage, "/notes/n1.json");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(
        r.header("content-length"),
        Some(sealed.len().to_string().as_str())
    );
    assert_eq!(r.body, sealed);
    assert_eq!(
        envelope::decrypt(&env.read_key, &r.body, Format::Current).unwrap(),
        plain
    );
    // What the sandbox keeps is the ciphertext, as uploaded.
    let files = env.control_files(&storage);
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["path"], "/notes/n1.json");
    assert_eq!(files[0]["size"], sealed.len());
    assert_eq!(files[0]["sha256"], sha256_hex(&sealed));
    let raw = env.control_get(&format!("clouds/{storage}/files?path=%2Fnotes%2Fn1.json"));
    assert_eq!(raw.status, 200);
    assert_eq!(raw.body, sealed);
    assert!(!raw.body.windows(plain.len()).any(|w| w == plain));
    let blob = std::fs::read(
        env.state_dir()
            .join("cloud")
            .join(&storage)
            .join(files[0]["id"].as_str().unwrap()),
    )
    .unwrap();
    assert_eq!(blob, sealed);
    // The testkit reads the same.
    let control = digime_testkit::control::Control::new(env.sandbox.info());
    assert_eq!(control.cloud_file(&storage, "/notes/n1.json"), sealed);
    assert_eq!(control.cloud_files(&storage), files);
    // The control API on what it does not have.
    assert_eq!(
        env.control_get(&format!("clouds/{storage}/files?path=/nope"))
            .status,
        404
    );
    assert_eq!(env.control_get("clouds/stg_nope/files").status, 404);
}

#[test]
fn uploading_the_same_path_again_replaces_the_file() {
    let (env, _) = env();
    let storage = env.provisional_storage(&read_client());
    let first = env.upload(&storage, "/x.bin", &opaque(288, 1)).ok(201);
    let second_bytes = opaque(400, 9);
    let second = env.upload(&storage, "/x.bin", &second_bytes).ok(201);
    assert_ne!(first["id"], second["id"]);
    let list = env.list_files(&storage, "/", true);
    assert_eq!(list["total"], 1);
    assert_eq!(list["files"][0]["id"], second["id"]);
    assert_eq!(env.download(&storage, "/x.bin").body, second_bytes);
    // The old bytes are gone from disk.
    assert_eq!(env.blobs(&storage), [second["id"].as_str().unwrap()]);
}

#[test]
fn deletes_remove_a_file_a_folder_or_the_app_folder() {
    let (env, _) = env();
    let storage = env.provisional_storage(&read_client());
    for path in ["/a.bin", "/d/b.bin", "/d/e/c.bin", "/d/e/f.bin", "/g/h.bin"] {
        env.upload(&storage, path, &opaque(288, 3)).ok(201);
    }
    assert_eq!(env.blobs(&storage).len(), 5);
    assert_eq!(
        env.delete(&storage, "/a.bin").ok(200),
        json!({"deleted": 1})
    );
    env.delete(&storage, "/a.bin").error(404, "FileNotFound");
    env.download(&storage, "/a.bin").error(404, "FileNotFound");
    // A folder: everything under it, sub-folders too.
    assert_eq!(env.delete(&storage, "/d/e/").ok(200), json!({"deleted": 2}));
    assert_eq!(env.list_files(&storage, "/", true)["total"], 2);
    env.delete(&storage, "/d/e/").error(404, "FileNotFound");
    // A file path is not its folder.
    env.delete(&storage, "/d").error(404, "FileNotFound");
    assert_eq!(env.blobs(&storage).len(), 2);
    // The app folder: no path at all.
    assert_eq!(env.delete(&storage, "").ok(200), json!({"deleted": 2}));
    assert_eq!(
        env.list_files(&storage, "/", true),
        json!({"files": [], "total": 0})
    );
    assert!(env.blobs(&storage).is_empty());
    env.delete(&storage, "").error(404, "FileNotFound");
    env.delete(&storage, "/").error(404, "FileNotFound");
    // `/` is everything too.
    env.upload(&storage, "/z/z.bin", &opaque(288, 4)).ok(201);
    assert_eq!(env.delete(&storage, "/").ok(200), json!({"deleted": 1}));
}

#[test]
fn a_missing_file_is_404() {
    let (env, _) = env();
    let storage = env.provisional_storage(&read_client());
    let m = env
        .download(&storage, "/not/there.bin")
        .error(404, "FileNotFound");
    assert!(m.contains("/not/there.bin"), "{m}");
    env.upload(&storage, "/not/here.bin", &opaque(288, 0))
        .ok(201);
    env.download(&storage, "/not/there.bin")
        .error(404, "FileNotFound");
    // A folder path is a listing, not a file.
    env.download(&storage, "/not/")
        .error(400, "ValidationErrors");
    // No path at all is neither.
    env.download(&storage, "").error(400, "ValidationErrors");
}

#[test]
fn only_envelope_lengths_are_stored() {
    let (env, _) = env();
    let storage = env.provisional_storage(&read_client());
    for len in [0, 16, 272, 287, 289, 300, 1000] {
        env.upload(&storage, "/x.bin", &opaque(len, 5))
            .error(400, "ValidationErrors");
    }
    // Chunked (no length known before the end): read, then refused.
    for len in [287usize, 5 << 20 | 1] {
        let body = opaque(len, 6);
        let r = reply(
            env.http
                .post(&env.cloud(&storage, DEMO_APP_ID, "/chunked.bin"))
                .header("authorization", env.s_bearer())
                .content_type("application/octet-stream")
                .send(ureq::SendBody::from_reader(&mut &body[..])),
        );
        r.error(400, "ValidationErrors");
    }
    // Another content type.
    reply(
        env.http
            .post(&env.cloud(&storage, DEMO_APP_ID, "/x.bin"))
            .header("authorization", env.s_bearer())
            .content_type("application/json")
            .send(&opaque(288, 1)[..]),
    )
    .error(400, "ValidationErrors");
    // Nothing stored, nothing left on disk.
    assert!(env.control_files(&storage).is_empty());
    assert!(env.blobs(&storage).is_empty(), "{:?}", env.blobs(&storage));
    // The smallest envelope is fine.
    env.upload(&storage, "/x.bin", &opaque(288, 1)).ok(201);
}

#[test]
fn a_few_mib_chunked_upload_streams_to_disk_and_back() {
    let (env, _) = env();
    let storage = env.provisional_storage(&read_client());
    let body = opaque((5 << 20) + 288, 7);
    // ureq sends a reader chunked, in pieces.
    let r = reply(
        env.http
            .post(&env.cloud(&storage, DEMO_APP_ID, "/big/blob.bin"))
            .header("authorization", env.s_bearer())
            .content_type("application/octet-stream")
            .send(ureq::SendBody::from_reader(&mut &body[..])),
    );
    r.ok(201);
    let files = env.control_files(&storage);
    assert_eq!(files[0]["size"], body.len());
    assert_eq!(files[0]["sha256"], sha256_hex(&body));
    let back = env.download(&storage, "/big/blob.bin");
    assert_eq!(back.status, 200);
    assert_eq!(
        back.header("content-length"),
        Some(body.len().to_string().as_str())
    );
    assert!(back.body == body, "the download differs");
    assert_eq!(env.blobs(&storage).len(), 1, "no partial file is left");
}

#[test]
fn bad_paths_are_400() {
    let (env, _) = env();
    let storage = env.provisional_storage(&read_client());
    for path in [
        "//x.bin",
        "/a//x.bin",
        "/%2E%2E/x.bin",
        "/%2e/x.bin",
        "/a%20b.bin",
        "/a%01b.bin",
        "/a%2Fb.bin",
        "/a%zzb.bin",
        "/a%FFb.bin",
    ] {
        let r = env.upload(&storage, path, &opaque(288, 0));
        r.error(400, "ValidationErrors");
        env.download(&storage, path).error(400, "ValidationErrors");
        env.delete(&storage, path).error(400, "ValidationErrors");
    }
    let long = format!("/{}.bin", "n".repeat(300));
    env.upload(&storage, &long, &opaque(288, 0))
        .error(400, "ValidationErrors");
    // An upload to a folder.
    env.upload(&storage, "/folder/", &opaque(288, 0))
        .error(400, "ValidationErrors");
    // Literal dot segments, as a raw client would send them.
    let (mut w, mut r, addr) = support::raw_connection(&env);
    for path in ["/../x.bin", "/./x.bin", "/a/../x.bin"] {
        let target = format!("/cloud/v1/clouds/{storage}/files/apps/{DEMO_APP_ID}{path}");
        let req = format!(
            "GET {target} HTTP/1.1\r\nhost: {addr}\r\nauthorization: {}\r\n\r\n",
            env.s_bearer()
        );
        std::io::Write::write_all(&mut w, req.as_bytes()).unwrap();
        let answer = support::read_response(&mut r).unwrap();
        answer.error(400, "ValidationErrors");
    }
    assert!(env.control_files(&storage).is_empty());
}

// ---------------------------------------------------------------------------
// The cloud base: the caller.

#[test]
fn storage_jwts_are_verified_strictly() {
    let (env, other_key) = env();
    let storage = env.provisional_storage(&read_client());
    env.upload(&storage, "/x.bin", &opaque(288, 0)).ok(201);
    let url = format!("{}?recursive=true", env.cloud(&storage, DEMO_APP_ID, "/"));
    let call = |auth: Option<&str>| {
        let mut req = env.http.get(&url);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        reply(req.call())
    };
    let with = |key: &PrivateKey, header: Value, claims: Value| {
        call(Some(&format!(
            "Bearer {}",
            sign_with_header(key, &header, &claims)
        )))
    };
    let header = || storage_header(DEMO_READ_CONTRACT, DEMO_APP_ID);
    let claims = || storage_claims(DEMO_READ_CONTRACT, DEMO_APP_ID);
    let edit = |mut v: Value, k: &str, x: Value| {
        if x.is_null() {
            v.as_object_mut().unwrap().remove(k);
        } else {
            v[k] = x;
        }
        v
    };
    let now = now_ms() / 1000;
    // Good: iat+60 and iat+61 (two clock readings), a little clock skew.
    assert_eq!(with(&env.read_key, header(), claims()).ok(200)["total"], 1);
    let c = edit(
        edit(claims(), "iat", json!(now - 1)),
        "exp",
        json!(now + 60),
    );
    with(&env.read_key, header(), c).ok(200);
    let c = edit(
        edit(claims(), "iat", json!(now + 200)),
        "exp",
        json!(now + 260),
    );
    with(&env.read_key, header(), c).ok(200);
    // The write contract of the same application is the same caller.
    call(Some(&storage_bearer(
        &env.write_key,
        DEMO_WRITE_CONTRACT,
        DEMO_APP_ID,
    )))
    .ok(200);

    // Malformed: 406.
    call(None).error(406, "ValidationErrors");
    call(Some("Bearer nonsense")).error(406, "ValidationErrors");
    call(Some("Basic abc")).error(406, "ValidationErrors");
    for h in [
        edit(header(), "typ", json!("JWT")),
        edit(header(), "alg", json!("RS256")),
        edit(header(), "kid", Value::Null),
        edit(header(), "jku", json!("http://x")),
        edit(header(), "kid", json!(5)),
    ] {
        with(&env.read_key, h.clone(), claims()).error(406, "ValidationErrors");
    }
    // A foreign key: the demo contract's kid, signed with another key.
    with(&other_key, header(), claims()).error(406, "ValidationErrors");
    // A kid of no contract (the other order too: it is contractId_applicationId_0).
    for kid in [
        "nobody_sandbox-demo-app_0".to_owned(),
        format!("{DEMO_APP_ID}_{DEMO_READ_CONTRACT}_0"),
        format!("{DEMO_READ_CONTRACT}_{DEMO_APP_ID}_1"),
    ] {
        let m = with(&env.read_key, edit(header(), "kid", json!(kid)), claims())
            .error(400, "InvalidClient");
        assert!(m.contains(&kid), "{m}");
    }
    // Claims: 401.
    for c in [
        edit(claims(), "sub", json!("another-app")),
        edit(claims(), "sub", Value::Null),
        edit(claims(), "iss", json!(DEMO_WRITE_CONTRACT)),
        edit(claims(), "aud", json!("api")),
        edit(claims(), "aud", Value::Null),
        edit(claims(), "iat", Value::Null),
        edit(claims(), "exp", json!("later")),
        // Too long-lived, and issued too far ahead.
        edit(edit(claims(), "iat", json!(now)), "exp", json!(now + 301)),
        edit(
            edit(claims(), "iat", json!(now + 400)),
            "exp",
            json!(now + 460),
        ),
        edit(
            edit(claims(), "iat", json!(now + 50)),
            "exp",
            json!(now + 10),
        ),
    ] {
        with(&env.read_key, header(), c.clone()).error(401, "InvalidToken");
    }
    let expired = edit(
        edit(claims(), "iat", json!(now - 120)),
        "exp",
        json!(now - 60),
    );
    let m = with(&env.read_key, header(), expired).error(401, "InvalidToken");
    assert_eq!(m, "The token is expired");
    let m = with(
        &env.read_key,
        header(),
        edit(edit(claims(), "iat", json!(now - 60)), "exp", json!(now)),
    )
    .error(401, "InvalidToken");
    assert_eq!(m, "The token is expired");
    // An upload refused for its bearer stores nothing.
    env.upload_as(
        &format!(
            "Bearer {}",
            sign_with_header(&other_key, &header(), &claims())
        ),
        &env.cloud(&storage, DEMO_APP_ID, "/y.bin"),
        &opaque(288, 0),
    )
    .error(406, "ValidationErrors");
    assert_eq!(env.control_files(&storage).len(), 1);
}

#[test]
fn unknown_storages_and_other_applications_are_refused() {
    let (env, other_key) = env();
    let mine = env.provisional_storage(&read_client());
    env.upload(&mine, "/x.bin", &opaque(288, 0)).ok(201);
    let theirs = env
        .post_storage(
            &support::bearer(&other_key, &support::claims(&other_client(), json!({}))),
            "",
        )
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other_bearer = storage_bearer(&other_key, OTHER_CONTRACT, OTHER_APP);
    // Unknown storage.
    let m = env
        .download("stg_made_up", "/x.bin")
        .error(404, "StorageNotFound");
    assert!(m.contains("stg_made_up"), "{m}");
    env.upload("stg_made_up", "/x.bin", &opaque(288, 0))
        .error(404, "StorageNotFound");
    env.delete("stg_made_up", "").error(404, "StorageNotFound");
    env.download("stg%zz", "/x.bin")
        .error(404, "StorageNotFound");
    env.download(&format!("{}%20", mine), "/x.bin")
        .error(404, "StorageNotFound");
    // Another application's storage, whichever app id the path names.
    env.download(&theirs, "/x.bin")
        .error(404, "StorageNotFound");
    reply(
        env.http
            .get(&env.cloud(&theirs, OTHER_APP, "/x.bin"))
            .header("authorization", env.s_bearer())
            .call(),
    )
    .error(404, "StorageNotFound");
    // The other app on my storage.
    for path in ["/x.bin", ""] {
        reply(
            env.http
                .delete(&env.cloud(&mine, OTHER_APP, path))
                .header("authorization", &other_bearer)
                .call(),
        )
        .error(404, "StorageNotFound");
    }
    // My storage under an app id that is not my JWT's sub.
    for app in [OTHER_APP, "SANDBOX-DEMO-APP", "x"] {
        reply(
            env.http
                .get(&env.cloud(&mine, app, "/x.bin"))
                .header("authorization", env.s_bearer())
                .call(),
        )
        .error(403, "InsufficientScope");
    }
    env.upload_as(
        &env.s_bearer(),
        &env.cloud(&mine, "Sandbox-Demo-App", "/y.bin"),
        &opaque(288, 0),
    )
    .error(403, "InsufficientScope");
    // Still there, and only that.
    assert_eq!(env.download(&mine, "/x.bin").status, 200);
    assert_eq!(env.control_files(&mine).len(), 1);
    assert!(env.control_files(&theirs).is_empty());
}

#[test]
fn other_methods_and_paths_of_the_cloud_base() {
    let (env, _) = env();
    let storage = env.provisional_storage(&read_client());
    let r = reply(
        env.http
            .put(&env.cloud(&storage, DEMO_APP_ID, "/x.bin"))
            .header("authorization", env.s_bearer())
            .send(&opaque(288, 0)[..]),
    );
    r.error(405, "MethodNotAllowed");
    for path in [
        format!("clouds/{storage}"),
        format!("clouds/{storage}/files"),
        format!("clouds/{storage}/files/x/{DEMO_APP_ID}/a.bin"),
        "nothing".to_owned(),
    ] {
        env.get(&format!("{}{path}", env.sandbox.info().cloud))
            .error(404, "NotFound");
    }
}

// ---------------------------------------------------------------------------
// Lifetimes.

#[test]
fn storages_and_files_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (storage, bytes, user) = {
        let (env, _) = env_with(ConsentMode::Auto, Some(dir.path().to_path_buf()));
        let u = env.user();
        let storage = env.get_storage(&read_client(), &u.read_at).ok(200)["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let bytes = opaque(1024, 8);
        env.upload(&storage, "/kept/k.bin", &bytes).ok(201);
        (storage, bytes, u)
    };
    // What an interrupted upload would leave behind.
    let stray = dir
        .path()
        .join("cloud")
        .join(&storage)
        .join("file_x.partial");
    std::fs::write(&stray, b"half").unwrap();
    let (env, _) = env_with(ConsentMode::Auto, Some(dir.path().to_path_buf()));
    assert!(!stray.exists(), "the start sweeps partial files");
    assert_eq!(env.download(&storage, "/kept/k.bin").body, bytes);
    assert_eq!(env.list_files(&storage, "/", true)["total"], 1);
    assert_eq!(
        env.get_storage(&read_client(), &user.read_at).ok(200)["id"],
        storage.as_str()
    );
}

#[test]
fn deleting_the_user_keeps_the_applications_storage() {
    let (env, _) = env();
    let u = env.user();
    let storage = env.get_storage(&read_client(), &u.read_at).ok(200)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    env.upload(&storage, "/x.bin", &opaque(288, 0)).ok(201);
    reply(
        env.http
            .delete(&env.api("user"))
            .header("authorization", env.read_bearer(&u.read_at))
            .call(),
    )
    .ok(200);
    // The app still has it, and its files; it is nobody's storage now, and cannot be
    // linked to anyone else.
    assert_eq!(env.download(&storage, "/x.bin").status, 200);
    let s = env.control_json("clouds")["storages"][0].clone();
    assert_eq!(s["id"], storage.as_str());
    assert_eq!(s["userId"], Value::Null);
    let reference = env.cloud_reference(&read_client(), &storage).ok(200)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (page, _) = env.authorize_page(json!({}), &format!("&storageRef={reference}"));
    assert_eq!(
        param(&page.redirect().1, "errorCode").as_deref(),
        Some("ONBOARD_ERROR")
    );
    // The app deletes the files itself.
    assert_eq!(env.delete(&storage, "").ok(200), json!({"deleted": 1}));
}

#[test]
fn reset_forgets_every_storage() {
    let (env, _) = env();
    let storage = env.provisional_storage(&read_client());
    env.upload(&storage, "/x.bin", &opaque(288, 0)).ok(201);
    env.control_post("reset", json!({})).ok(200);
    assert!(
        env.control_json("clouds")["storages"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(env.blobs(&storage).is_empty());
    env.download(&storage, "/x.bin")
        .error(404, "StorageNotFound");
}

#[test]
fn the_info_line_names_the_cloud_and_control_bases() {
    let (env, _) = env();
    let info = env.sandbox.info();
    let origin = info.api.trim_end_matches("/v1.7/");
    assert_eq!(info.cloud, format!("{origin}/cloud/v1/"));
    assert_eq!(info.control, format!("{origin}/_sandbox/"));
    assert_eq!(info.control(), info.control);
    let line = serde_json::to_value(info).unwrap();
    assert_eq!(line["cloud"], info.cloud.as_str());
    assert_eq!(line["control"], info.control.as_str());
    assert_eq!(env.control_json("info")["cloud"], info.cloud.as_str());
    assert_eq!(info.client_config().cloud_base_url(), info.cloud);
}

#[test]
fn the_async_control_shows_the_same_storages_and_bytes() {
    let (env, _) = env();
    let storage = env.provisional_storage(&read_client());
    let bytes = opaque(320, 11);
    env.upload(&storage, "/a/x.bin", &bytes).ok(201);
    let control = digime_testkit::control::AsyncControl::new(env.sandbox.info());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (storages, files, stored) = rt.block_on(async {
        (
            control.storages().await,
            control.cloud_files(&storage).await,
            control.cloud_file(&storage, "/a/x.bin").await,
        )
    });
    assert_eq!(storages.len(), 1);
    assert_eq!(storages[0]["id"], storage.as_str());
    assert_eq!(storages[0]["files"], 1);
    assert_eq!(storages[0]["bytes"], 320);
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["path"], "/a/x.bin");
    assert_eq!(files[0]["folder"], "/a/");
    assert_eq!(files[0]["name"], "x.bin");
    assert_eq!(files[0]["sha256"], sha256_hex(&bytes));
    assert_eq!(stored, bytes);
}
