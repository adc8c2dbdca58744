//! `digime-sandbox`: run the emulator. Prints one JSON line describing it, then serves
//! until interrupted.

use digime_sandbox::faults::parse_fault_kinds;
use digime_sandbox::state::ContractKind;
use digime_sandbox::{ConsentMode, ContractRegistration, Sandbox, SandboxConfig};
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: digime-sandbox [--listen ADDR] [--state-dir DIR] [--consent page|auto]
                      [--access-token-ttl SECONDS] [--contract APP_ID/CONTRACT_ID=PUBLIC_KEY.pem]...
                      [--sync-step-ms MS] [--compression none|gzip|brotli] [--rewrite-mid-sync]
                      [--no-demo-data] [--fault-rate RATE] [--fault-seed SEED]
                      [--fault-kinds all|KIND,KIND...] [--fault-stall-ms MS]
                      [--fault-skew-ms MS] [--fault-retry-after SECONDS]
fault kinds: 503 429 500 drop reset truncate stall skew expire";

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
            "--fault-rate" => {
                let v = value("--fault-rate")?;
                config.faults.rate = v
                    .parse()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| format!("--fault-rate {v:?} is not a number from 0 to 1"))?;
            }
            "--fault-seed" => config.faults.seed = number(&value("--fault-seed")?, "--fault-seed")?,
            "--fault-kinds" => {
                config.faults.kinds = parse_fault_kinds(&value("--fault-kinds")?)
                    .map_err(|e| format!("--fault-kinds: {e}"))?;
            }
            "--fault-stall-ms" => {
                let ms = number(&value("--fault-stall-ms")?, "--fault-stall-ms")?;
                config.faults.stall = Duration::from_millis(ms);
            }
            "--fault-skew-ms" => {
                let ms = number(&value("--fault-skew-ms")?, "--fault-skew-ms")?;
                config.faults.skew = Duration::from_millis(ms);
            }
            "--fault-retry-after" => {
                config.faults.retry_after_s =
                    number(&value("--fault-retry-after")?, "--fault-retry-after")?;
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(config)
}

fn number(v: &str, flag: &str) -> Result<u64, String> {
    v.parse()
        .map_err(|_| format!("{flag} {v:?} is not a whole number"))
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
    match running.serve_until_interrupted().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("digime-sandbox: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use digime_sandbox::faults::FaultKind;

    fn parse(args: &[&str]) -> Result<SandboxConfig, String> {
        parse_args(args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn the_fault_flags_set_the_faults() {
        let c = parse(&[
            "--fault-rate",
            "0.3",
            "--fault-seed=9",
            "--fault-kinds",
            "503,reset, stall",
            "--fault-stall-ms",
            "1500",
            "--fault-skew-ms=0",
            "--fault-retry-after",
            "2",
        ])
        .unwrap();
        assert_eq!(c.faults.rate, 0.3);
        assert_eq!(c.faults.seed, 9);
        assert_eq!(
            c.faults.kinds,
            [FaultKind::Unavailable, FaultKind::Reset, FaultKind::Stall]
        );
        assert_eq!(c.faults.stall, Duration::from_millis(1500));
        assert_eq!(c.faults.skew, Duration::ZERO);
        assert_eq!(c.faults.retry_after_s, 2);
        assert_eq!(
            parse(&["--fault-kinds", "all"]).unwrap().faults.kinds.len(),
            9
        );
    }

    #[test]
    fn bad_fault_flags_are_refused() {
        for args in [
            &["--fault-rate", "1.2"][..],
            &["--fault-rate", "x"],
            &["--fault-kinds", "503,teapot"],
            &["--fault-kinds", ""],
            &["--fault-seed", "-1"],
            &["--fault-stall-ms"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }
}
