//! `digime-sandbox`: run the emulator. Prints one JSON line describing it, then serves
//! until interrupted.

use digime_sandbox::state::ContractKind;
use digime_sandbox::{ConsentMode, ContractRegistration, Sandbox, SandboxConfig};
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: digime-sandbox [--listen ADDR] [--state-dir DIR] [--consent page|auto]
                      [--access-token-ttl SECONDS] [--contract APP_ID/CONTRACT_ID=PUBLIC_KEY.pem]...
                      [--sync-step-ms MS] [--compression none|gzip|brotli] [--rewrite-mid-sync]
                      [--no-demo-data]";

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<SandboxConfig, String> {
    let mut config = SandboxConfig::default();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--listen" => {
                let v = value("--listen")?;
                config.listen = v.parse().map_err(|e| format!("--listen {v:?}: {e}"))?;
            }
            "--state-dir" => config.state_dir = Some(value("--state-dir")?.into()),
            "--consent" => {
                config.consent = match value("--consent")?.as_str() {
                    "page" => ConsentMode::Page,
                    "auto" => ConsentMode::Auto,
                    other => return Err(format!("--consent must be page or auto, not {other:?}")),
                }
            }
            "--access-token-ttl" => {
                let v = value("--access-token-ttl")?;
                let secs: u64 = v
                    .parse()
                    .map_err(|_| format!("--access-token-ttl {v:?} is not a number of seconds"))?;
                config.access_token_ttl = Duration::from_secs(secs);
            }
            "--contract" => {
                let v = value("--contract")?;
                let (ids, path) = v.split_once('=').ok_or_else(|| {
                    format!("--contract {v:?}: expected APP_ID/CONTRACT_ID=PUBLIC_KEY.pem")
                })?;
                let (app, contract) = ids
                    .split_once('/')
                    .filter(|(a, c)| !a.is_empty() && !c.is_empty())
                    .ok_or_else(|| {
                        format!("--contract {v:?}: expected APP_ID/CONTRACT_ID=PUBLIC_KEY.pem")
                    })?;
                let pem = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
                let public_key = digime_crypto::PublicKey::from_pem(&pem)
                    .or_else(|_| digime_crypto::PrivateKey::from_pem(&pem).map(|k| k.public_key()))
                    .map_err(|e| format!("{path}: {e}"))?;
                config.contracts.push(ContractRegistration {
                    app_id: app.to_owned(),
                    contract_id: contract.to_owned(),
                    public_key,
                    kind: ContractKind::ReadWrite,
                });
            }
            "--sync-step-ms" => {
                let v = value("--sync-step-ms")?;
                let ms: u64 = v
                    .parse()
                    .ok()
                    .filter(|&ms| ms > 0)
                    .ok_or_else(|| format!("--sync-step-ms {v:?} is not a positive number"))?;
                config.sync_step = Duration::from_millis(ms);
            }
            "--compression" => {
                config.compression = value("--compression")?
                    .parse()
                    .map_err(|e| format!("--compression: {e}"))?;
            }
            "--rewrite-mid-sync" if inline.is_none() => config.rewrite_mid_sync = true,
            "--no-demo-data" if inline.is_none() => config.demo_data = false,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(config)
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("digime-sandbox: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let running = match Sandbox::start(config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("digime-sandbox: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match serde_json::to_string(running.info()) {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("digime-sandbox: {e}");
            return ExitCode::FAILURE;
        }
    }
    wait_for_signal().await;
    match running.shutdown().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("digime-sandbox: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
