//! A blocking client of the sandbox's control API (`/_sandbox/...`) and of its
//! consent pages, as a browser would follow them.
//!
//! Blocking on purpose: call it from a thread, not from inside an async runtime that
//! also runs the sandbox (use [`digime_sandbox::Sandbox::spawn`], which runs it on its
//! own thread, or `spawn_blocking`).

use digime_sandbox::{BackgroundSandbox, ConsentMode, Sandbox, SandboxConfig, SandboxInfo};
use serde_json::Value;
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

    /// GET a control path; its body as bytes (any status).
    pub fn get_bytes(&self, path: &str) -> Vec<u8> {
        let mut r = self.http.get(&self.url(path)).call().expect("control GET");
        r.body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .expect("body")
    }

    /// GET a control path; its body as JSON.
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
            .filter(|r| r["path"].as_str().is_some_and(|p| p.ends_with(suffix)))
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

    /// Generates files for a user (`users/USER/generate-files`).
    pub fn generate(&self, user: &str, body: Value) -> Vec<Value> {
        self.post_json(&format!("users/{user}/generate-files"), body)["files"]
            .as_array()
            .expect("files")
            .clone()
    }
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
