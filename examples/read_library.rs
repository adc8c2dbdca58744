//! Reads a user's whole library into a folder, with progress: every file is decrypted
//! and decompressed straight to disk as it downloads (constant memory, whatever the
//! file sizes), written as `NAME~partial` and renamed once it is complete and checked.
//!
//! Server file names become local names that are safe (one path component, plain
//! characters) and unique: a name that had to change gets `~` and 16 hex digits of
//! its SHA-256, so `a/b`, `a?b` and `a_b` land in three different files (`~` never
//! appears in a name kept as it is).
//!
//! Offline, against an embedded sandbox (the demo library plus a few large files):
//!
//! ```text
//! cargo run -p digime-examples --bin read_library -- [FOLDER]
//! ```
//!
//! Against the real digi.me API, with a read contract and a token saved earlier (the
//! JSON the SDKs persist; a refreshed token is written back to it, readable by you
//! alone), or without one to authorize in a browser (the token is then kept in
//! `digime-token.json`):
//!
//! ```text
//! DIGIME_APPLICATION_ID=... DIGIME_CONTRACT_ID=... DIGIME_PRIVATE_KEY=read-key.pem \
//! [DIGIME_TOKEN=token.json] DIGIME_CALLBACK=https://your.app/return \
//! cargo run -p digime-examples --bin read_library -- FOLDER
//! ```

#[path = "support/mod.rs"]
mod support;

use digime_blocking::Client;
use digime_protocol::read_all::local_file_name;
use digime_protocol::{
    AuthorizeOptions, Config, Contract, FileHead, PullOptions, ReadAllEvent, ReadAllOptions,
    UserAccessToken, parse_callback,
};
use digime_sandbox::{ConsentMode, Sandbox, SandboxConfig};
use std::error::Error;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

fn main() -> Result<(), Box<dyn Error>> {
    let folder = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "digime-library".into()),
    );
    std::fs::create_dir_all(&folder)?;
    match std::env::var("DIGIME_APPLICATION_ID") {
        Ok(app) => {
            let (client, contract, token, token_file) = real_service(&app)?;
            read_into(&client, &contract, &token, &folder, Some(&token_file))
        }
        Err(_) => {
            println!("Starting an embedded digi.me sandbox…");
            let sandbox = Sandbox::spawn(SandboxConfig {
                consent: ConsentMode::Auto,
                sync_step: std::time::Duration::from_secs(1),
                ..Default::default()
            })?;
            let info = sandbox.info();
            let client = Client::new(info.client_config());
            let contract = info.demo.read.contract()?;
            let token = authorize(&client, &contract, "http://localhost:8080/return", |url| {
                let browser = ureq::Agent::config_builder()
                    .max_redirects(0)
                    .max_redirects_will_error(false)
                    .http_status_as_error(false)
                    .build()
                    .new_agent();
                let r = browser.get(url).call()?;
                Ok(r.headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .ok_or("no redirect")?
                    .to_owned())
            })?;
            // A few large files besides the demo data, to show streaming.
            let user = token.user_id().ok_or("no user id")?;
            ureq::post(format!("{}users/{user}/generate-files", info.control()))
                .content_type("application/json")
                .send(r#"{"count":3,"size":16777216,"compression":"gzip","prefix":"large-","mimeType":"application/octet-stream"}"#)?;
            read_into(&client, &contract, &token, &folder, None)
        }
    }
}

fn authorize(
    client: &Client,
    contract: &Contract,
    callback: &str,
    browse: impl FnOnce(&str) -> Result<String, Box<dyn Error>>,
) -> Result<UserAccessToken, Box<dyn Error>> {
    let state = digime_crypto::random::alphanumeric(24)?;
    let auth = client.authorize_url(contract, callback, &state, AuthorizeOptions::default())?;
    let back = browse(&auth.url)?;
    let cb = parse_callback(&back)?.verify_state(&state)?;
    Ok(client.exchange_code_for_token(contract, &cb.code, &auth.code_verifier)?)
}

fn real_service(app: &str) -> Result<(Client, Contract, UserAccessToken, PathBuf), Box<dyn Error>> {
    let contract = Contract::from_pem(
        std::env::var("DIGIME_CONTRACT_ID")?,
        &std::fs::read_to_string(std::env::var("DIGIME_PRIVATE_KEY")?)?,
    )?;
    let client = Client::new(Config::new(app)?);
    let token_file =
        PathBuf::from(std::env::var("DIGIME_TOKEN").unwrap_or_else(|_| "digime-token.json".into()));
    let token: UserAccessToken = match std::env::var("DIGIME_TOKEN") {
        Ok(path) => serde_json::from_str(&std::fs::read_to_string(path)?)?,
        Err(_) => {
            let callback = std::env::var("DIGIME_CALLBACK")
                .unwrap_or_else(|_| "http://localhost:8080/return".into());
            let token = authorize(&client, &contract, &callback, |url| {
                println!(
                    "Open this URL and authorize:\n\n  {url}\n\nThen paste the URL you were sent back to:"
                );
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line)?;
                Ok(line.trim().to_owned())
            })?;
            support::write_private(&token_file, serde_json::to_string(&token)?.as_bytes())?;
            token
        }
    };
    Ok((client, contract, token, token_file))
}

fn partial_path(folder: &Path, name: &str) -> PathBuf {
    folder.join(format!("{}~partial", local_file_name(name)))
}

fn read_into(
    client: &Client,
    contract: &Contract,
    token: &UserAccessToken,
    folder: &Path,
    token_file: Option<&Path>,
) -> Result<(), Box<dyn Error>> {
    let opened = client.read_session(contract, token, &PullOptions::default())?;
    let session = opened.value;
    // If opening the session refreshed the token, the old one is spent.
    let first_refresh = opened.refreshed_token;
    let token = first_refresh.as_ref().unwrap_or(token);
    println!("Read session opened; writing into {}", folder.display());
    let started = Instant::now();
    let bytes = AtomicU64::new(0);
    /// Counts what reaches the disk, for the progress line.
    struct Counting<'a> {
        file: std::io::BufWriter<std::fs::File>,
        bytes: &'a AtomicU64,
    }
    impl std::io::Write for Counting<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = self.file.write(buf)?;
            self.bytes.fetch_add(n as u64, Ordering::Relaxed);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.file.flush()
        }
    }
    let open = |head: &FileHead| -> std::io::Result<Counting<'_>> {
        let file = std::fs::File::create(partial_path(folder, &head.name))?;
        Ok(Counting {
            file: std::io::BufWriter::with_capacity(256 * 1024, file),
            bytes: &bytes,
        })
    };
    let (mut done, mut failed) = (0usize, 0usize);
    let mut latest_token = None;
    let summary = client.read_all_files_to(
        contract,
        token,
        &session.key,
        ReadAllOptions::default(),
        open,
        |event| match event {
            ReadAllEvent::StatusChanged(status) => {
                println!("sync: {}", status.state);
            }
            ReadAllEvent::File(head) => {
                let from = partial_path(folder, &head.name);
                let to = folder.join(local_file_name(&head.name));
                match std::fs::rename(&from, &to) {
                    Ok(()) => done += 1,
                    Err(e) => {
                        failed += 1;
                        eprintln!("  {}: cannot rename: {e}", head.name);
                    }
                }
                let mib = bytes.load(Ordering::Relaxed) as f64 / (1 << 20) as f64;
                println!(
                    "  [{done:>4} files, {mib:>9.1} MiB, {:>6.1} s] {}",
                    started.elapsed().as_secs_f64(),
                    head.name
                );
            }
            ReadAllEvent::FileError { entry, error } => {
                failed += 1;
                let _ = std::fs::remove_file(partial_path(folder, &entry.name));
                eprintln!("  {}: {error}", entry.name);
            }
            ReadAllEvent::TokenRefreshed(t) => {
                println!("  (the access token was refreshed)");
                latest_token = Some(t);
            }
            _ => {}
        },
    )?;
    println!(
        "\nDone: {done} files ({:.1} MiB) in {:.1} s, {failed} failed; sync {}.",
        bytes.load(Ordering::Relaxed) as f64 / (1 << 20) as f64,
        started.elapsed().as_secs_f64(),
        summary.status.state
    );
    if let Some(t) = latest_token
        .or(summary.refreshed_token)
        .or(first_refresh.clone())
        && let Some(path) = token_file
    {
        // The old refresh token is spent: without this, the next run could not read.
        support::write_private(path, serde_json::to_string(&t)?.as_bytes())?;
        println!(
            "The new token is in {} (readable by you alone).",
            path.display()
        );
    }
    if failed > 0 {
        return Err(format!("{failed} files could not be read").into());
    }
    Ok(())
}
