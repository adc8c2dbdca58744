//! A digi.me web app, as a real application: its own accounts, a session per browser,
//! and everything it knows in SQLite, so it survives a restart.
//!
//! A signed-in user connects digi.me (the write contract, then the read contract
//! linked to the same library), pushes files into their library, reads the library
//! back and downloads its files, reconnects when digi.me no longer accepts their
//! refresh token, and deletes their data. See `README.md` for how to run it.

// Handlers return early with the page to show (`Result<_, Response>`): a response is
// their natural error, made at most once per request, so its size does not matter.
#![allow(clippy::result_large_err)]

mod db;
mod digime;
mod pages;
mod session;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use clap::Parser;
use digime_async::Client;
use digime_protocol::{Config, Contract};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the app runs.
#[derive(Parser, Debug)]
#[command(name = "digime-web-app", version, about)]
struct Args {
    /// Where to listen.
    #[arg(long, env = "WEB_APP_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The app's address as browsers see it [default: http://LISTEN]. digi.me sends
    /// the browser back to PUBLIC_URL/return: register that as the contracts'
    /// redirect URI.
    #[arg(long, env = "WEB_APP_PUBLIC_URL", value_name = "URL")]
    public_url: Option<String>,
    /// Where the database and the users' files live (created, mode 0700).
    #[arg(
        long,
        env = "WEB_APP_DATA",
        default_value = "web-app-data",
        value_name = "DIR"
    )]
    data: PathBuf,
    /// Run against an embedded digi.me sandbox (its state kept in DATA/sandbox)
    /// instead of the API the flags below name.
    #[arg(long)]
    sandbox: bool,
    /// The API base URL.
    #[arg(long, env = "DIGIME_API", value_name = "URL")]
    api: Option<String>,
    /// The onboarding (browser) base URL.
    #[arg(long, env = "DIGIME_ONBOARD", value_name = "URL")]
    onboard: Option<String>,
    /// The application id.
    #[arg(
        long,
        env = "DIGIME_APPLICATION_ID",
        value_name = "ID",
        required_unless_present = "sandbox"
    )]
    app: Option<String>,
    /// The contract that writes into the library.
    #[arg(
        long,
        env = "DIGIME_WRITE_CONTRACT_ID",
        value_name = "ID",
        required_unless_present = "sandbox"
    )]
    write_contract: Option<String>,
    /// Its private key (PEM).
    #[arg(
        long,
        env = "DIGIME_WRITE_PRIVATE_KEY",
        value_name = "PEM",
        required_unless_present = "sandbox"
    )]
    write_key: Option<PathBuf>,
    /// The contract that reads the library.
    #[arg(
        long,
        env = "DIGIME_READ_CONTRACT_ID",
        value_name = "ID",
        required_unless_present = "sandbox"
    )]
    read_contract: Option<String>,
    /// Its private key (PEM).
    #[arg(
        long,
        env = "DIGIME_READ_PRIVATE_KEY",
        value_name = "PEM",
        required_unless_present = "sandbox"
    )]
    read_key: Option<PathBuf>,
    /// How long an authorization may take, in seconds, before it must be started again.
    #[arg(long, default_value_t = 600, value_name = "SECONDS",
          value_parser = clap::value_parser!(i64).range(10..=86_400))]
    pending_ttl: i64,
    /// Seconds between file-list calls while a library read waits for its sync.
    #[arg(long, default_value_t = 3.0, value_name = "SECONDS", value_parser = poll_interval)]
    poll: f64,
    /// The largest file a user may upload, in MiB.
    #[arg(long, default_value_t = 256, value_name = "MIB",
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    max_upload: u32,
}

/// `--poll`: 0.01 to 60 seconds (a smaller one would hammer digi.me).
fn poll_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.01..=60.0).contains(&v) => Ok(v),
        _ => Err("a number of seconds from 0.01 to 60".into()),
    }
}

/// What every request shares.
#[derive(Clone)]
pub struct App(Arc<Inner>);

pub struct Inner {
    pub db: db::Db,
    pub client: Client,
    pub write: Contract,
    pub read: Contract,
    /// `PUBLIC_URL/return`.
    pub callback: String,
    /// DATA/files: a folder per user.
    pub files: PathBuf,
    /// DATA/uploads: uploads on their way to digi.me.
    pub uploads: PathBuf,
    pub secure_cookies: bool,
    /// Derives the CSRF tokens of signed-out browsers (DATA/secret.key).
    pub secret: aws_lc_rs::hmac::Key,
    /// One password hash at a time.
    pub hashing: tokio::sync::Semaphore,
    /// The pages' Content-Security-Policy.
    pub csp: axum::http::HeaderValue,
    pub pending_ttl: i64,
    pub poll: Duration,
    /// Users whose library is being read (one read at a time each).
    pub reading: Mutex<HashSet<i64>>,
}

impl std::ops::Deref for App {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// A failure of the app itself: logged (never with a secret: these are database,
/// file and randomness errors), and answered with a page that says only that.
pub fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "internal error");
    pages::error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The app could not do that. Try again in a moment.",
    )
}

/// One line per request: method, path (never the query, which carries codes and
/// states), status and time.
async fn log_requests(req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let started = Instant::now();
    let response = next.run(req).await;
    tracing::info!(
        %method,
        path,
        status = response.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}

fn router(app: App, max_upload: u32) -> Router {
    Router::new()
        .route("/", get(digime::connect::home))
        .route("/signup", post(session::signup))
        .route("/login", post(session::login))
        .route("/logout", post(session::logout))
        .route("/connect", post(digime::connect::connect))
        .route("/return", get(digime::connect::back))
        .route("/upload", get(digime::push::upload_page))
        .route(
            "/push",
            post(digime::push::push).layer(DefaultBodyLimit::max(
                (max_upload as usize).saturating_mul(1 << 20),
            )),
        )
        .route("/library", get(digime::library::library_page))
        .route("/library/read", post(digime::library::read_library))
        .route("/library/files/{id}", get(digime::library::download))
        .route(
            "/delete",
            get(digime::delete::delete_page).post(digime::delete::delete),
        )
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            session::middleware,
        ))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            session::security_headers,
        ))
        .layer(axum::middleware::from_fn(log_requests))
        .with_state(app)
}

fn private_dir(path: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// The app's secret: 32 random bytes in `path` (mode 0600), made on first start.
fn secret(path: &Path) -> std::io::Result<aws_lc_rs::hmac::Key> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Written beside it and renamed into place: a crash mid-write leaves no
            // short secret that would stop the next start.
            use std::io::Write;
            let mut b = vec![0u8; 32];
            digime_crypto::random::fill(&mut b).map_err(std::io::Error::other)?;
            let temp = path.with_extension(format!("{}.tmp", std::process::id()));
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let written = options.open(&temp).and_then(|mut file| {
                file.write_all(&b)?;
                file.sync_all()
            });
            if let Err(e) = written.and_then(|()| std::fs::rename(&temp, path)) {
                let _ = std::fs::remove_file(&temp);
                return Err(e);
            }
            b
        }
        Err(e) => return Err(e),
    };
    if bytes.len() != 32 {
        return Err(std::io::Error::other(format!(
            "{}: not a secret of 32 bytes",
            path.display()
        )));
    }
    Ok(aws_lc_rs::hmac::Key::new(
        aws_lc_rs::hmac::HMAC_SHA256,
        &bytes,
    ))
}

/// Removes what an earlier run left half done: uploads that never reached digi.me,
/// and library files that were never whole (`~partial`).
fn remove_leftovers(uploads: &Path, files: &Path) -> std::io::Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(uploads)? {
        let path = entry?.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
        removed += 1;
    }
    for user in std::fs::read_dir(files)? {
        let user = user?.path();
        if !user.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(&user)? {
            let path = entry?.path();
            if path.to_string_lossy().ends_with("~partial") {
                std::fs::remove_file(&path)?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

fn contract(id: Option<String>, key: Option<PathBuf>, what: &str) -> Result<Contract, String> {
    let (Some(id), Some(key)) = (id, key) else {
        return Err(format!("the {what} contract needs its id and key"));
    };
    let pem = std::fs::read_to_string(&key).map_err(|e| format!("{}: {e}", key.display()))?;
    Contract::from_pem(id, &pem).map_err(|e| format!("{}: {e}", key.display()))
}

/// Ctrl-C, or `SIGTERM` (what a service manager or a container runtime sends).
async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("digime-web-app: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    private_dir(&args.data)?;
    let mut _sandbox = None;
    let (config, write, read) = if args.sandbox {
        let sandbox_dir = args.data.join("sandbox");
        private_dir(&sandbox_dir)?;
        let sandbox = digime_sandbox::Sandbox::start(digime_sandbox::SandboxConfig {
            state_dir: Some(sandbox_dir),
            ..Default::default()
        })
        .await?;
        let info = sandbox.info().clone();
        println!("digi.me sandbox on {}", info.api);
        let contracts = (info.demo.write.contract()?, info.demo.read.contract()?);
        _sandbox = Some(tokio::spawn(sandbox.serve_until_interrupted()));
        (info.client_config(), contracts.0, contracts.1)
    } else {
        let app = args.app.clone().ok_or("no application id")?;
        let mut config = Config::new(app)?;
        if let Some(api) = &args.api {
            config = config.with_base_url(api)?;
        }
        if let Some(onboard) = &args.onboard {
            config = config.with_onboard_url(onboard)?;
        }
        let write = contract(args.write_contract, args.write_key, "write")?;
        let read = contract(args.read_contract, args.read_key, "read")?;
        (config, write, read)
    };
    let onboard = url::Url::parse(config.onboard_url())?;
    let csp = session::content_security_policy(&onboard.origin().ascii_serialization())?;
    let db = db::Db::open(&args.data.join("app.sqlite3"))?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    let public = args
        .public_url
        .unwrap_or_else(|| format!("http://{addr}"))
        .trim_end_matches('/')
        .to_owned();
    let (files, uploads) = (args.data.join("files"), args.data.join("uploads"));
    private_dir(&files)?;
    private_dir(&uploads)?;
    let removed = remove_leftovers(&uploads, &files)?;
    if removed > 0 {
        tracing::info!(removed, "files an earlier run left half done were removed");
    }
    let app = App(Arc::new(Inner {
        db: db.clone(),
        client: Client::try_new(config)?,
        write,
        read,
        callback: format!("{public}/return"),
        files,
        uploads,
        secure_cookies: public.starts_with("https://"),
        secret: secret(&args.data.join("secret.key"))?,
        hashing: tokio::sync::Semaphore::new(1),
        csp,
        pending_ttl: args.pending_ttl,
        poll: Duration::try_from_secs_f64(args.poll).map_err(|_| "--poll: not a duration")?,
        reading: Mutex::default(),
    }));
    // Expired sessions and authorizations go, now and every ten minutes.
    tokio::spawn(async move {
        loop {
            match db.call(|c| db::sweep(c)).await {
                Ok(n) if n > 0 => {
                    tracing::info!(removed = n, "expired sessions and authorizations removed")
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "sweep failed"),
            }
            tokio::time::sleep(Duration::from_secs(600)).await;
        }
    });
    println!("digime web app on {public}/");
    axum::serve(listener, router(app, args.max_upload))
        .with_graceful_shutdown(interrupted())
        .await?;
    Ok(())
}
