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
    folder.join(format!("{}~partial", local_name(name)))
}

/// The local name of a server file: one path component of plain characters, and
/// unique. A name kept as it is never holds a `~`; a name that had to change gets `~`
/// and 16 hex digits of its SHA-256, so two server names never share a local file.
fn local_name(name: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
    // Names of up to 200 bytes, to stay under every file system's limit (255).
    let kept = !name.is_empty()
        && name.len() <= 200
        && name != "."
        && name != ".."
        && name.chars().all(plain);
    if kept {
        return name.to_owned();
    }
    let safe: String = name
        .chars()
        .take(100)
        .map(|c| if plain(c) { c } else { '_' })
        .collect();
    let digest = digime_crypto::sha256(name.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{safe}~{hex}")
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
                let to = folder.join(local_name(&head.name));
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

#[cfg(test)]
mod tests {
    use super::local_name;

    #[test]
    fn local_names_are_single_safe_components_and_never_collide() {
        let names = [
            "a/b",
            "a?b",
            "a_b",
            "a\\b",
            "a b",
            "..",
            ".",
            "",
            "a_b~partial",
            "x",
            "x~partial",
            "../../etc/passwd",
            "ünïcode.json",
            "4_12_300_202610_1.json",
        ];
        let locals: Vec<String> = names.iter().map(|n| local_name(n)).collect();
        let mut unique = locals.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{locals:?}");
        for (name, local) in names.iter().zip(&locals) {
            assert!(
                !local.is_empty() && local != "." && local != "..",
                "{name:?}"
            );
            assert!(
                !local.contains('/') && !local.contains('\\'),
                "{name:?} -> {local}"
            );
            // A partial file never takes another file's local name.
            assert!(!locals.contains(&format!("{local}~partial")), "{name:?}");
        }
        // Plain names stay as they are.
        assert_eq!(
            local_name("4_12_300_202610_1.json"),
            "4_12_300_202610_1.json"
        );
        assert_eq!(local_name("a_b"), "a_b");
        assert!(local_name("a/b").starts_with("a_b~"));
        assert_eq!(local_name(&"x".repeat(200)).len(), 200);
        assert_eq!(local_name(&"x".repeat(300)).len(), 100 + 17);
        assert!(local_name(&"/".repeat(300)).len() <= 100 + 17);
    }
}
