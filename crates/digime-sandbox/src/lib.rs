//! A strict local emulator of the digi.me API, for tests, demos and offline work.
//!
//! Scope:
//! * In: the JWKS, `oauth/authorize`, the onboard consent page, `oauth/token` (code
//!   exchange with PKCE, refresh with rotation), `permission-access/import`, and a
//!   control API under `/_sandbox/`. Every request JWT is verified against the
//!   registered contract key; nonces are single-use; timestamps must be within five
//!   minutes; errors have the real status codes and body shapes.
//! * Out (for now): read sessions and file downloads, postbox-era endpoints.
//!
//! Start it in-process on `127.0.0.1:0`:
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let sandbox = digime_sandbox::Sandbox::start(digime_sandbox::SandboxConfig::default()).await?;
//! println!("API at {}", sandbox.info().api);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod api;
mod checks;
mod control;
pub mod state;

use crate::state::{ContractKind, Persisted, RegisteredContract};
use digime_crypto::{PrivateKey, PublicKey};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

/// How the onboard page answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConsentMode {
    /// An HTML page with Allow and Deny buttons.
    #[default]
    Page,
    /// Redirect straight back with success.
    Auto,
}

/// A contract to register, with its public key.
#[derive(Debug, Clone)]
pub struct ContractRegistration {
    /// Application id.
    pub app_id: String,
    /// Contract id.
    pub contract_id: String,
    /// Its public key.
    pub public_key: PublicKey,
    /// What it may do.
    pub kind: ContractKind,
}

/// Sandbox settings.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Where to listen (default `127.0.0.1:0`).
    pub listen: SocketAddr,
    /// Where state, keys and library files live; a temporary directory when `None`.
    pub state_dir: Option<PathBuf>,
    /// Consent page or automatic consent.
    pub consent: ConsentMode,
    /// Lifetime of access tokens.
    pub access_token_ttl: Duration,
    /// Lifetime of refresh tokens.
    pub refresh_token_ttl: Duration,
    /// Keep a refresh token usable after it was rotated (default: it is revoked).
    pub keep_rotated_refresh_tokens: bool,
    /// Extra contracts besides the demo ones.
    pub contracts: Vec<ContractRegistration>,
    /// Accepted `agent.sdk.name` values.
    pub agents: Vec<String>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            state_dir: None,
            consent: ConsentMode::Page,
            access_token_ttl: Duration::from_secs(3600),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            keep_rotated_refresh_tokens: false,
            contracts: Vec::new(),
            agents: ["nodejs", "js", "ios", "android", "rust"]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// The demo application id.
pub const DEMO_APP_ID: &str = "sandbox-demo-app";
/// The demo write contract id.
pub const DEMO_WRITE_CONTRACT: &str = "demo-write";
/// The demo read contract id.
pub const DEMO_READ_CONTRACT: &str = "demo-read";

/// One demo contract: its id and where its PKCS#1 private key is.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DemoContract {
    /// Contract id.
    pub contract_id: String,
    /// Path of the PKCS#1 PEM private key.
    pub private_key_path: PathBuf,
}

impl DemoContract {
    /// Reads the private key PEM.
    pub fn private_key_pem(&self) -> std::io::Result<String> {
        std::fs::read_to_string(&self.private_key_path)
    }

    /// The contract, with its private key loaded, for an SDK client.
    pub fn contract(&self) -> std::io::Result<digime_protocol::Contract> {
        digime_protocol::Contract::from_pem(&self.contract_id, &self.private_key_pem()?)
            .map_err(std::io::Error::other)
    }
}

/// The demo application and its contracts.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Demo {
    /// Application id.
    pub application_id: String,
    /// The contract that writes.
    pub write: DemoContract,
    /// The contract that reads raw data.
    pub read: DemoContract,
}

/// Where the sandbox is and what it offers (the JSON line the binary prints).
#[derive(Debug, Clone, Serialize)]
pub struct SandboxInfo {
    /// API base, e.g. `http://127.0.0.1:PORT/v1.7/`.
    pub api: String,
    /// Onboard base, e.g. `http://127.0.0.1:PORT/apps/saas/`.
    pub onboard: String,
    /// The demo application.
    pub demo: Demo,
}

impl SandboxInfo {
    /// An SDK configuration for the demo application, pointed at this sandbox.
    pub fn client_config(&self) -> digime_protocol::Config {
        // The sandbox's own URLs are always valid bases.
        digime_protocol::Config::new(&self.demo.application_id)
            .and_then(|c| c.with_base_url(&self.api))
            .and_then(|c| c.with_onboard_url(&self.onboard))
            .unwrap_or_else(|e| unreachable!("sandbox URLs are valid: {e}"))
    }

    /// The control API base, `http://HOST:PORT/_sandbox/`.
    pub fn control(&self) -> String {
        self.api.replace("/v1.7/", "/_sandbox/")
    }
}

/// A logged request (control API `requests`).
#[derive(Debug, Clone, Serialize)]
pub struct LoggedRequest {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Status answered.
    pub status: u16,
}

pub(crate) struct Inner {
    pub(crate) config: SandboxConfig,
    pub(crate) dir: PathBuf,
    pub(crate) persist: bool,
    pub(crate) contracts: HashMap<String, RegisteredContract>,
    pub(crate) signing_key: PrivateKey,
    pub(crate) kid: String,
    pub(crate) jwks: String,
    pub(crate) info: SandboxInfo,
    pub(crate) state: Mutex<Persisted>,
    pub(crate) log: Mutex<VecDeque<LoggedRequest>>,
}

/// Shared server state.
#[derive(Clone)]
pub(crate) struct Shared(pub(crate) Arc<Inner>);

impl std::ops::Deref for Shared {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Persisted> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
    pub(crate) fn contract(&self, client_id: &str) -> Option<RegisteredContract> {
        self.contracts.get(client_id).cloned()
    }
    pub(crate) fn library_dir(&self) -> PathBuf {
        self.dir.join("library")
    }
    /// Saves the state (atomically: temp file, then rename) when persistence is on.
    pub(crate) fn save(&self, st: &Persisted) -> std::io::Result<()> {
        if !self.persist {
            return Ok(());
        }
        let bytes = serde_json::to_vec(st).map_err(std::io::Error::other)?;
        let tmp = self.dir.join("state.json.tmp");
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(tmp, self.dir.join("state.json"))
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn random_id(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        digime_crypto::random::alphanumeric(24).unwrap_or_default()
    )
}

fn load_or_create_key(path: &Path) -> std::io::Result<PrivateKey> {
    if let Ok(pem) = std::fs::read_to_string(path) {
        return PrivateKey::from_pem(&pem)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())));
    }
    let key = PrivateKey::generate().map_err(std::io::Error::other)?;
    let pem = key.to_pkcs1_pem().map_err(std::io::Error::other)?;
    write_private(path, pem.as_bytes())?;
    Ok(key)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write;
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// The emulator.
pub struct Sandbox;

/// A running sandbox; dropping it stops the server.
pub struct RunningSandbox {
    info: SandboxInfo,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _temp: Option<tempfile::TempDir>,
}

impl RunningSandbox {
    /// Where it is and what it offers.
    pub fn info(&self) -> &SandboxInfo {
        &self.info
    }
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// Stops the server and waits for it (state is saved after every change).
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(t) => t.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningSandbox {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Sandbox {
    /// Starts the sandbox on the current tokio runtime.
    pub async fn start(config: SandboxConfig) -> std::io::Result<RunningSandbox> {
        let (temp, dir, persist) = match &config.state_dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                (None, d.clone(), true)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("digime-sandbox-")
                    .tempdir()?;
                let p = t.path().to_path_buf();
                (Some(t), p, false)
            }
        };
        std::fs::create_dir_all(dir.join("library"))?;
        let signing_key = load_or_create_key(&dir.join("server-signing-key.pem"))?;
        let kid = format!(
            "sandbox-{}",
            &digime_crypto::b64url_encode(&digime_crypto::sha256(
                signing_key.public_key().to_pkcs1_der()
            ))[..12]
        );
        let mut contracts = HashMap::new();
        let demo_write_path = dir.join("demo-write-contract.pem");
        let demo_read_path = dir.join("demo-read-contract.pem");
        for (id, path, kind, name) in [
            (
                DEMO_WRITE_CONTRACT,
                &demo_write_path,
                ContractKind::Write,
                "Sandbox demo (write)",
            ),
            (
                DEMO_READ_CONTRACT,
                &demo_read_path,
                ContractKind::Read,
                "Sandbox demo (read raw data)",
            ),
        ] {
            let key = load_or_create_key(path)?;
            let c = RegisteredContract {
                app_id: DEMO_APP_ID.into(),
                contract_id: id.into(),
                key: key.public_key(),
                kind,
                name: name.into(),
            };
            contracts.insert(c.client_id(), c);
        }
        for reg in &config.contracts {
            let c = RegisteredContract {
                app_id: reg.app_id.clone(),
                contract_id: reg.contract_id.clone(),
                key: reg.public_key.clone(),
                kind: reg.kind,
                name: format!("{} / {}", reg.app_id, reg.contract_id),
            };
            contracts.insert(c.client_id(), c);
        }
        let persisted: Persisted = if persist {
            match std::fs::read(dir.join("state.json")) {
                Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                    std::io::Error::other(format!("{}: {e}", dir.join("state.json").display()))
                })?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Persisted::default(),
                Err(e) => return Err(e),
            }
        } else {
            Persisted::default()
        };

        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let host = format!("http://{addr}");
        let info = SandboxInfo {
            api: format!("{host}/v1.7/"),
            onboard: format!("{host}/apps/saas/"),
            demo: Demo {
                application_id: DEMO_APP_ID.into(),
                write: DemoContract {
                    contract_id: DEMO_WRITE_CONTRACT.into(),
                    private_key_path: demo_write_path,
                },
                read: DemoContract {
                    contract_id: DEMO_READ_CONTRACT.into(),
                    private_key_path: demo_read_path,
                },
            },
        };
        let jwks = api::jwks_body(&signing_key.public_key(), &kid);
        let shared = Shared(Arc::new(Inner {
            config,
            dir,
            persist,
            contracts,
            signing_key,
            kid,
            jwks,
            info: info.clone(),
            state: Mutex::new(persisted),
            log: Mutex::new(VecDeque::new()),
        }));
        let app = api::router(shared.clone()).merge(control::router(shared));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
        });
        Ok(RunningSandbox {
            info,
            addr,
            shutdown: Some(tx),
            task: Some(task),
            _temp: temp,
        })
    }

    /// Starts the sandbox on a background thread with its own runtime, for blocking
    /// code (tests, examples). Dropping the handle stops it.
    pub fn spawn(config: SandboxConfig) -> std::io::Result<BackgroundSandbox> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("digime-sandbox".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(async move {
                    match Sandbox::start(config).await {
                        Ok(running) => {
                            let _ = tx.send(Ok(running.info().clone()));
                            let _ = stop_rx.await;
                            let _ = running.shutdown().await;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                        }
                    }
                });
            })?;
        let info = rx
            .recv()
            .map_err(|_| std::io::Error::other("sandbox thread ended early"))??;
        Ok(BackgroundSandbox {
            info,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

/// A sandbox running on its own thread.
pub struct BackgroundSandbox {
    info: SandboxInfo,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BackgroundSandbox {
    /// Where it is and what it offers.
    pub fn info(&self) -> &SandboxInfo {
        &self.info
    }
}

impl Drop for BackgroundSandbox {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
