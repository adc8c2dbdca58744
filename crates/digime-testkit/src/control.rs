//! A blocking client of the sandbox's control API (`/_sandbox/...`) and of its
//! consent pages, as a browser would follow them.
//!
//! Blocking on purpose: call it from a thread, not from inside an async runtime that
//! also runs the sandbox (use [`digime_sandbox::Sandbox::spawn`], which runs it on its
//! own thread, or `spawn_blocking`); [`AsyncControl`] does the latter for each call.

use digime_sandbox::{BackgroundSandbox, ConsentMode, Sandbox, SandboxConfig, SandboxInfo};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// The control plane of one sandbox.
#[derive(Debug, Clone)]
pub struct Control {
    info: SandboxInfo,
    http: ureq::Agent,
}

impl Control {
    /// The control plane of the sandbox described by `info`.
    pub fn new(info: &SandboxInfo) -> Self {
        Control {
            info: info.clone(),
            http: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .max_redirects_will_error(false)
                .build()
                .new_agent(),
        }
    }

    /// The sandbox's info.
    pub fn info(&self) -> &SandboxInfo {
        &self.info
    }

    /// The URL of a control path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.info.control())
    }

    /// The raw HTTP agent (no redirects followed, every status an answer), for the
    /// odd request a test sends outside the control plane.
    pub fn agent(&self) -> &ureq::Agent {
        &self.http
    }

    /// GET a control path, which must answer 200; its body as bytes.
    pub fn get_bytes(&self, path: &str) -> Vec<u8> {
        let mut r = self.http.get(&self.url(path)).call().expect("control GET");
        assert_eq!(r.status(), 200, "{path}");
        r.body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .expect("body")
    }

    /// GET a control path, which must answer 200; its body as JSON.
    pub fn get_json(&self, path: &str) -> Value {
        serde_json::from_slice(&self.get_bytes(path)).expect("JSON")
    }

    /// POST JSON to a control path, which must answer 200 with JSON.
    pub fn post_json(&self, path: &str, body: Value) -> Value {
        let mut r = self
            .http
            .post(&self.url(path))
            .content_type("application/json")
            .send(body.to_string())
            .expect("control POST");
        assert_eq!(r.status(), 200, "{path}");
        serde_json::from_slice(&r.body_mut().read_to_vec().expect("body")).expect("JSON")
    }

    /// POST with no body to a control path, which must answer 200.
    pub fn post(&self, path: &str) {
        let r = self.http.post(&self.url(path)).send_empty().expect("POST");
        assert_eq!(r.status(), 200, "{path}");
    }

    /// How many requests the sandbox logged whose path ends with `suffix`.
    pub fn requests_to(&self, suffix: &str) -> usize {
        self.get_json("requests")["requests"]
            .as_array()
            .expect("a request log")
            .iter()
            .filter(|r| r["path"].as_str().expect("a logged path").ends_with(suffix))
            .count()
    }

    /// Opens `url` as a browser would and returns where the 302 answer sends it.
    pub fn browse(&self, url: &str) -> String {
        let r = self.http.get(url).call().expect("browse");
        assert_eq!(r.status(), 302, "{url}");
        r.headers()["location"]
            .to_str()
            .expect("a location")
            .to_owned()
    }

    /// The files in a user's library (control view).
    pub fn files(&self, user: &str) -> Vec<Value> {
        self.get_json(&format!("users/{user}/files"))["files"]
            .as_array()
            .expect("files")
            .clone()
    }

    /// The bytes of a user's file (pushed or generated) by its id or name.
    pub fn file(&self, user: &str, id: &str) -> Vec<u8> {
        self.get_bytes(&format!("users/{user}/files/{id}"))
    }

    /// Every file in a user's library (control view) with its bytes.
    pub fn library(&self, user: &str) -> Vec<(Value, Vec<u8>)> {
        self.files(user)
            .into_iter()
            .map(|f| {
                let id = f["id"].as_str().or(f["name"].as_str()).expect("a file id");
                let bytes = self.file(user, id);
                (f, bytes)
            })
            .collect()
    }

    /// Creates a user (no tokens, an empty library); its id.
    pub fn new_user(&self) -> String {
        self.post_json("users", Value::Object(Default::default()))["user"]["id"]
            .as_str()
            .expect("a user id")
            .to_owned()
    }

    /// Expires every access token of a user (the next call with one gets a 401).
    pub fn expire_access_tokens(&self, user: &str) {
        self.post(&format!("users/{user}/expire-access-tokens"));
    }

    /// Expires every refresh token of a user (a refresh needs reauthorization).
    pub fn expire_refresh_tokens(&self, user: &str) {
        self.post(&format!("users/{user}/expire-refresh-tokens"));
    }

    /// Expires a session by its key.
    pub fn expire_session(&self, session_key: &str) {
        self.post(&format!("sessions/{session_key}/expire"));
    }

    /// The user opens the native app: the pending postbox pushes are imported; the
    /// control answer (`{"imported":[...]}`).
    pub fn postbox_import(&self, user: &str) -> Value {
        self.post_json(
            &format!("users/{user}/postbox-import"),
            Value::Object(Default::default()),
        )
    }

    /// The emulated native app opens a postbox deep link for `user`; where its 302
    /// answer calls back.
    pub fn open_in_app(&self, deep_link: &str, user: &str) -> String {
        let url = self
            .info
            .native_app_url(deep_link, user)
            .expect("a postbox deep link");
        self.browse(&url)
    }

    /// The consent page (`ConsentMode::Page`) an authorize URL opens: its HTML.
    pub fn consent_page(&self, url: &str) -> String {
        let mut r = self.http.get(url).call().expect("consent page");
        assert_eq!(r.status(), 200, "{url}");
        r.body_mut().read_to_string().expect("HTML")
    }

    /// The user's decision (`"allow"` or `"deny"`) on the consent page of the
    /// preauthorization `code` (the `authorize` page): the answer's status and
    /// `location`, if any. [`Control::decide_on`] for the other pages.
    pub fn decide(&self, code: &str, decision: &str) -> (u16, Option<String>) {
        self.decide_on(code, decision)
    }

    /// The user's decision (`"allow"` or `"deny"`) on the consent page `page`: the URL
    /// of any onboard page (`authorize`, `user-reauth`, `onboard`, `reauthorize`,
    /// `revoke`, as the SDK or the revoke call gave it), or a bare preauthorization code
    /// (then the `authorize` page). Posts what the page's form posts (the link's
    /// parameters and the decision) to `{page}/decision`; the answer's status and
    /// `location`, if any.
    pub fn decide_on(&self, page: &str, decision: &str) -> (u16, Option<String>) {
        let page = page.split('#').next().unwrap_or_default();
        let (name, mut form) = match page.split_once("://") {
            // A page URL: its last path segment, and its query (already form-encoded,
            // as the form posts it).
            Some((_, rest)) => {
                let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
                let name = path.rsplit('/').next().unwrap_or("authorize").to_owned();
                (name, query.to_owned())
            }
            None => (
                "authorize".to_owned(),
                format!("code={}", form_encode(page)),
            ),
        };
        if !form.is_empty() {
            form.push('&');
        }
        form.push_str(&format!("decision={}", form_encode(decision)));
        let r = self
            .http
            .post(&format!("{}{name}/decision", self.info.onboard))
            .content_type("application/x-www-form-urlencoded")
            .send(form)
            .expect("decision");
        let location = r
            .headers()
            .get("location")
            .map(|l| l.to_str().expect("a location").to_owned());
        (r.status().as_u16(), location)
    }

    /// The user's accounts as the control API shows them (every contract's view):
    /// `permission-access/accounts` objects.
    pub fn accounts(&self, user: &str) -> Vec<Value> {
        self.get_json(&format!("users/{user}/accounts"))["accounts"]
            .as_array()
            .expect("accounts")
            .clone()
    }

    /// The ids of the user's accounts (every contract's view), in library order.
    pub fn account_ids(&self, user: &str) -> Vec<String> {
        self.accounts(user)
            .iter()
            .map(|a| a["id"].as_str().expect("an account id").to_owned())
            .collect()
    }

    /// The id of the user's account of a service type (`serviceTypeId`: 12 Fitbit, 4
    /// Instagram, 19 Spotify, 20 Garmin, 40 a MedMij provider), if they have one.
    pub fn account_of(&self, user: &str, service_type_id: u64) -> Option<String> {
        self.accounts(user)
            .iter()
            .find(|a| a["serviceTypeId"] == service_type_id)
            .map(|a| a["id"].as_str().expect("an account id").to_owned())
    }

    /// The control view of the user's accounts: `{"accounts", "failures":
    /// {accountId: error}, "revoked": {clientId: [accountId]}}`.
    pub fn account_state(&self, user: &str) -> Value {
        self.get_json(&format!("users/{user}/accounts"))
    }

    /// Marks an account as needing reauthorization (511 `ServiceAuthorizationError`,
    /// `reauth: true`): syncs started from now on end `partial` with that error until
    /// the user reauthorizes the account (or [`Control::heal_account`]).
    pub fn fail_account(&self, user: &str, account: &str) {
        self.fail_account_with(user, account, Value::Object(Default::default()));
    }

    /// Makes an account's syncs fail with `error` (`{"code"?, "statusCode"?,
    /// "message"?, "reauth"?}`, the defaults those of [`Control::fail_account`]).
    pub fn fail_account_with(&self, user: &str, account: &str, error: Value) {
        self.post_json(&format!("users/{user}/accounts/{account}/fail"), error);
    }

    /// Heals a failing account without the user (the control shortcut); whether it
    /// was failing.
    pub fn heal_account(&self, user: &str, account: &str) -> bool {
        let mut r = self
            .http
            .delete(&self.url(&format!("users/{user}/accounts/{account}/fail")))
            .call()
            .expect("control DELETE");
        assert_eq!(r.status(), 200, "heal {account}");
        let v: Value =
            serde_json::from_slice(&r.body_mut().read_to_vec().expect("body")).expect("JSON");
        v["healed"].as_bool().expect("healed")
    }

    /// What apps pushed to the providers of the user's push accounts
    /// (`permission-access/import/h:accountId/fhir/…`), in the order it came: `{"id",
    /// "accountId", "sourceId", "clientId", "standard", "version", "resourceType",
    /// "entries"? (a Bundle's), "size", "sha256", "received", "resource"}` each, where
    /// `resource` is the pushed JSON (fetched with [`Control::provider_push`]).
    pub fn provider_pushes(&self, user: &str) -> Vec<Value> {
        let list = self.get_json(&format!("users/{user}/provider-pushes"))["pushes"]
            .as_array()
            .expect("pushes")
            .clone();
        list.into_iter()
            .map(|mut push| {
                let id = push["id"].as_str().expect("a push id").to_owned();
                push["resource"] = self.provider_push(user, &id);
                push
            })
            .collect()
    }

    /// The FHIR resource of one provider push (an `id` of
    /// [`Control::provider_pushes`]), as it was pushed.
    pub fn provider_push(&self, user: &str, id: &str) -> Value {
        self.get_json(&format!("users/{user}/provider-pushes/{id}"))
    }

    /// The ids of the users the sandbox knows.
    pub fn users(&self) -> Vec<String> {
        self.get_json("users")["users"]
            .as_array()
            .expect("users")
            .iter()
            .map(|u| u["id"].as_str().expect("a user id").to_owned())
            .collect()
    }

    /// Whether the sandbox knows the user (false once the user was deleted).
    pub fn user_exists(&self, user: &str) -> bool {
        self.users().iter().any(|u| u == user)
    }

    /// Where the sandbox keeps a user's stored files on disk (`{state dir}/library/
    /// USER`); it exists once something was stored, and is gone after the user was
    /// deleted.
    pub fn library_dir(&self, user: &str) -> PathBuf {
        let key = &self.info.demo.write.private_key_path;
        key.parent()
            .expect("the state directory")
            .join("library")
            .join(user)
    }

    /// Every storage (control view): `{"id", "appId", "kid", "userId" (the user whose
    /// storage it is now, or null), "created", "files", "bytes"}` each.
    pub fn storages(&self) -> Vec<Value> {
        self.get_json("clouds")["storages"]
            .as_array()
            .expect("storages")
            .clone()
    }

    /// The files of a storage as they are stored: `{"path" (under the app folder, e.g.
    /// `/folder/x.json`), "folder", "name", "id", "size", "sha256" (of the stored
    /// bytes), "created"}` each.
    pub fn cloud_files(&self, storage: &str) -> Vec<Value> {
        self.get_json(&format!("clouds/{storage}/files"))["files"]
            .as_array()
            .expect("files")
            .clone()
    }

    /// The bytes stored for a storage's file (`path` under the app folder, e.g.
    /// `/folder/x.json`): what was uploaded, the ciphertext.
    pub fn cloud_file(&self, storage: &str, path: &str) -> Vec<u8> {
        self.get_bytes(&format!(
            "clouds/{storage}/files?path={}",
            form_encode(path)
        ))
    }

    /// Whether `refresh_token` is one of the user's live refresh tokens (compared by
    /// SHA-256: `users/USER/refresh-tokens` never shows a token).
    pub fn refresh_token_alive(&self, user: &str, refresh_token: &str) -> bool {
        let sha = crate::fixtures::hex(&digime_crypto::sha256(refresh_token.as_bytes()));
        self.get_json(&format!("users/{user}/refresh-tokens"))["refreshTokens"]
            .as_array()
            .expect("a token list")
            .iter()
            .any(|t| t["sha256"] == sha.as_str())
    }

    /// Changes the injected faults (`POST faults`, the fields given replace the current
    /// ones, the counters restart); the new view.
    pub fn set_faults(&self, body: Value) -> Value {
        self.post_json("faults", body)
    }

    /// Forces these faults (`"503"`, `"drop"`, ...), in order, on the next API requests.
    pub fn force_faults(&self, kinds: &[&str]) {
        self.set_faults(serde_json::json!({ "next": kinds }));
    }

    /// The injected faults: settings, counters (`GET faults`).
    pub fn faults(&self) -> Value {
        self.get_json("faults")
    }

    /// How many faults of `kind` were given since the last change.
    pub fn injected(&self, kind: &str) -> u64 {
        self.faults()["injected"][kind]
            .as_u64()
            .expect("a fault counter")
    }

    /// Generates files for a user (`users/USER/generate-files`).
    pub fn generate(&self, user: &str, body: Value) -> Vec<Value> {
        self.post_json(&format!("users/{user}/generate-files"), body)["files"]
            .as_array()
            .expect("files")
            .clone()
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// A sandbox on its own thread that consents automatically and syncs in 30 ms steps,
/// and its control plane.
pub fn sandbox() -> (BackgroundSandbox, Control) {
    sandbox_with(ConsentMode::Auto)
}

/// As [`sandbox`], with this consent mode.
pub fn sandbox_with(consent: ConsentMode) -> (BackgroundSandbox, Control) {
    let sandbox = Sandbox::spawn(SandboxConfig {
        consent,
        sync_step: Duration::from_millis(30),
        ..SandboxConfig::default()
    })
    .expect("a sandbox");
    let control = Control::new(sandbox.info());
    (sandbox, control)
}

/// The client configuration for a sandbox, with retries 5 ms apart.
pub fn quick_config(info: &SandboxInfo) -> digime_protocol::Config {
    let mut config = info.client_config();
    config.retry.base_delay = Duration::from_millis(5);
    config
}

/// [`Control`] for async tests: each call runs the blocking client on tokio's blocking
/// pool (`spawn_blocking`), so the runtime stays free to run a sandbox started on it
/// ([`Sandbox::start`]). A panic in the call (a failed assertion) is resumed as is.
#[derive(Debug, Clone)]
pub struct AsyncControl(Control);

impl AsyncControl {
    /// The control plane of the sandbox described by `info`.
    pub fn new(info: &SandboxInfo) -> Self {
        AsyncControl(Control::new(info))
    }

    /// The blocking client (for `block_in_place` inside a synchronous callback).
    pub fn blocking(&self) -> &Control {
        &self.0
    }

    /// Runs `f` with the blocking client on the blocking pool.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Control) -> T + Send + 'static,
    ) -> T {
        let control = self.0.clone();
        match tokio::task::spawn_blocking(move || f(&control)).await {
            Ok(v) => v,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("control call: {e}"),
        }
    }
}

/// Async counterparts of [`Control`]'s methods, each run through [`AsyncControl::run`].
macro_rules! async_mirror {
    ($($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)?;)*) => {
        impl AsyncControl {
            $(
                $(#[$doc])*
                pub async fn $name(&self, $($arg: $ty),*) $(-> $ret)? {
                    $(let $arg = $arg.to_owned();)*
                    self.run(move |c| c.$name($(&$arg),*)).await
                }
            )*
        }
    };
}

async_mirror! {
    /// [`Control::get_json`].
    fn get_json(path: &str) -> Value;
    /// [`Control::post`].
    fn post(path: &str);
    /// [`Control::requests_to`].
    fn requests_to(suffix: &str) -> usize;
    /// [`Control::browse`].
    fn browse(url: &str) -> String;
    /// [`Control::files`].
    fn files(user: &str) -> Vec<Value>;
    /// [`Control::file`].
    fn file(user: &str, id: &str) -> Vec<u8>;
    /// [`Control::library`].
    fn library(user: &str) -> Vec<(Value, Vec<u8>)>;
    /// [`Control::expire_access_tokens`].
    fn expire_access_tokens(user: &str);
    /// [`Control::expire_refresh_tokens`].
    fn expire_refresh_tokens(user: &str);
    /// [`Control::expire_session`].
    fn expire_session(session_key: &str);
    /// [`Control::postbox_import`].
    fn postbox_import(user: &str) -> Value;
    /// [`Control::open_in_app`].
    fn open_in_app(deep_link: &str, user: &str) -> String;
    /// [`Control::decide`].
    fn decide(code: &str, decision: &str) -> (u16, Option<String>);
    /// [`Control::decide_on`].
    fn decide_on(page: &str, decision: &str) -> (u16, Option<String>);
    /// [`Control::accounts`].
    fn accounts(user: &str) -> Vec<Value>;
    /// [`Control::account_ids`].
    fn account_ids(user: &str) -> Vec<String>;
    /// [`Control::account_state`].
    fn account_state(user: &str) -> Value;
    /// [`Control::fail_account`].
    fn fail_account(user: &str, account: &str);
    /// [`Control::heal_account`].
    fn heal_account(user: &str, account: &str) -> bool;
    /// [`Control::provider_pushes`].
    fn provider_pushes(user: &str) -> Vec<Value>;
    /// [`Control::provider_push`].
    fn provider_push(user: &str, id: &str) -> Value;
    /// [`Control::users`].
    fn users() -> Vec<String>;
    /// [`Control::user_exists`].
    fn user_exists(user: &str) -> bool;
    /// [`Control::library_dir`].
    fn library_dir(user: &str) -> PathBuf;
    /// [`Control::consent_page`].
    fn consent_page(url: &str) -> String;
    /// [`Control::storages`].
    fn storages() -> Vec<Value>;
    /// [`Control::cloud_files`].
    fn cloud_files(storage: &str) -> Vec<Value>;
    /// [`Control::cloud_file`].
    fn cloud_file(storage: &str, path: &str) -> Vec<u8>;
    /// [`Control::faults`].
    fn faults() -> Value;
    /// [`Control::injected`].
    fn injected(kind: &str) -> u64;
}

impl AsyncControl {
    /// [`Control::new_user`].
    pub async fn new_user(&self) -> String {
        self.run(|c| c.new_user()).await
    }

    /// [`Control::post_json`].
    pub async fn post_json(&self, path: &str, body: Value) -> Value {
        let path = path.to_owned();
        self.run(move |c| c.post_json(&path, body)).await
    }

    /// [`Control::set_faults`].
    pub async fn set_faults(&self, body: Value) -> Value {
        self.run(move |c| c.set_faults(body)).await
    }

    /// [`Control::force_faults`].
    pub async fn force_faults(&self, kinds: &[&str]) {
        let kinds: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
        self.run(move |c| {
            let kinds: Vec<&str> = kinds.iter().map(String::as_str).collect();
            c.force_faults(&kinds)
        })
        .await
    }

    /// [`Control::generate`].
    pub async fn generate(&self, user: &str, body: Value) -> Vec<Value> {
        let user = user.to_owned();
        self.run(move |c| c.generate(&user, body)).await
    }

    /// [`Control::account_of`].
    pub async fn account_of(&self, user: &str, service_type_id: u64) -> Option<String> {
        let user = user.to_owned();
        self.run(move |c| c.account_of(&user, service_type_id))
            .await
    }

    /// [`Control::fail_account_with`].
    pub async fn fail_account_with(&self, user: &str, account: &str, error: Value) {
        let (user, account) = (user.to_owned(), account.to_owned());
        self.run(move |c| c.fail_account_with(&user, &account, error))
            .await
    }
}
