//! Where the application, the contract and the API come from: a flag, else its
//! environment variable, else the profile, else the default (the real digi.me API).
//!
//! The profile file is TOML, one table per profile:
//!
//! ```toml
//! [default]
//! app = "my-application-id"
//! contract = "my-write-contract"
//! key = "/home/me/keys/write.pem"
//! # api, onboard and cloud default to the real digi.me service.
//!
//! [read]
//! app = "my-application-id"
//! contract = "my-read-contract"
//! key = "/home/me/keys/read.pem"
//! ```

use crate::exit::Failure;
use clap::Args;
use digime_protocol::{Config, Contract};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The flags every command takes.
#[derive(Args, Debug)]
pub struct Global {
    /// The API base URL.
    #[arg(long, global = true, env = "DIGIME_API", value_name = "URL")]
    api: Option<String>,
    /// The onboarding (browser) base URL.
    #[arg(long, global = true, env = "DIGIME_ONBOARD", value_name = "URL")]
    onboard: Option<String>,
    /// The cloud storage base URL.
    #[arg(long, global = true, env = "DIGIME_CLOUD", value_name = "URL")]
    cloud: Option<String>,
    /// The application id.
    #[arg(long, global = true, env = "DIGIME_APPLICATION_ID", value_name = "ID")]
    app: Option<String>,
    /// The contract id.
    #[arg(long, global = true, env = "DIGIME_CONTRACT_ID", value_name = "ID")]
    contract: Option<String>,
    /// The contract's private key, a PEM file (PKCS#1 or PKCS#8).
    #[arg(long, global = true, env = "DIGIME_PRIVATE_KEY", value_name = "PEM")]
    key: Option<PathBuf>,
    /// The profile to take unset values from.
    #[arg(long, global = true, env = "DIGIME_PROFILE", value_name = "NAME")]
    profile: Option<String>,
    /// The profile file [default: $XDG_CONFIG_HOME/digime/profiles.toml, or
    /// ~/.config/digime/profiles.toml].
    #[arg(long, global = true, env = "DIGIME_PROFILE_FILE", value_name = "FILE")]
    profile_file: Option<PathBuf>,
    /// Answer with one JSON object on stdout (messages and progress go to stderr).
    #[arg(long, global = true)]
    pub json: bool,
}

/// One profile of the profile file.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    #[serde(skip_serializing_if = "Option::is_none")]
    api: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    onboard: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cloud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    app: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    contract: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<PathBuf>,
}

/// What a command talks to, and as which contract.
pub struct Settings {
    /// The SDK configuration.
    pub config: Config,
    /// The contract, its key loaded.
    pub contract: Contract,
}

fn default_profile_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("digime").join("profiles.toml"))
}

fn read_profiles(path: &Path) -> Result<BTreeMap<String, Profile>, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::input(format!("profile file {}: {e}", path.display())))?;
    toml::from_str(&text)
        .map_err(|e| Failure::input(format!("profile file {}: {e}", path.display())))
}

impl Global {
    /// The profile the flags name, if any: a named profile must exist; the `default`
    /// profile of the default file is used when it is there.
    fn profile(&self) -> Result<Profile, Failure> {
        let named = self.profile.is_some();
        let name = self.profile.as_deref().unwrap_or("default");
        let file = match (&self.profile_file, default_profile_file()) {
            (Some(f), _) => f.clone(),
            (None, Some(f)) if f.exists() => f,
            (None, _) if named => {
                return Err(Failure::input(format!(
                    "profile {name:?}: there is no profile file (give --profile-file)"
                )));
            }
            (None, _) => return Ok(Profile::default()),
        };
        let mut profiles = read_profiles(&file)?;
        match profiles.remove(name) {
            Some(p) => Ok(p),
            None if named => Err(Failure::input(format!(
                "profile {name:?} is not in {}",
                file.display()
            ))),
            None => Ok(Profile::default()),
        }
    }

    /// The configuration and the contract, every value from its first source.
    pub fn resolve(&self) -> Result<Settings, Failure> {
        let p = self.profile()?;
        let missing = |what: &str, flag: &str, env: &str| {
            Failure::input(format!(
                "no {what}: give {flag}, set {env}, or put it in a profile"
            ))
        };
        let app = (self.app.clone().or(p.app))
            .ok_or_else(|| missing("application id", "--app", "DIGIME_APPLICATION_ID"))?;
        let contract_id = (self.contract.clone().or(p.contract))
            .ok_or_else(|| missing("contract id", "--contract", "DIGIME_CONTRACT_ID"))?;
        let key = (self.key.clone().or(p.key))
            .ok_or_else(|| missing("contract key", "--key", "DIGIME_PRIVATE_KEY"))?;
        let mut config = Config::new(app).map_err(|e| Failure::input(e.to_string()))?;
        let url = |e: digime_protocol::Error| Failure::input(e.to_string());
        if let Some(api) = self.api.clone().or(p.api) {
            config = config.with_base_url(&api).map_err(url)?;
        }
        if let Some(onboard) = self.onboard.clone().or(p.onboard) {
            config = config.with_onboard_url(&onboard).map_err(url)?;
        }
        if let Some(cloud) = self.cloud.clone().or(p.cloud) {
            config = config.with_cloud_base_url(&cloud).map_err(url)?;
        }
        let pem = std::fs::read_to_string(&key)
            .map_err(|e| Failure::input(format!("contract key {}: {e}", key.display())))?;
        let contract = Contract::from_pem(contract_id, &pem)
            .map_err(|e| Failure::input(format!("contract key {}: {e}", key.display())))?;
        Ok(Settings { config, contract })
    }
}

/// Writes the profiles `sandbox` and `sandbox-read` for a running sandbox's demo
/// application into `file`, keeping its other profiles.
pub fn write_sandbox_profiles(
    file: &Path,
    info: &digime_sandbox::SandboxInfo,
) -> Result<(), Failure> {
    let mut profiles = if file.exists() {
        read_profiles(file)?
    } else {
        BTreeMap::new()
    };
    for (name, contract) in [
        ("sandbox", &info.demo.write),
        ("sandbox-read", &info.demo.read),
    ] {
        profiles.insert(
            name.to_owned(),
            Profile {
                api: Some(info.api.clone()),
                onboard: Some(info.onboard.clone()),
                cloud: Some(info.cloud.clone()),
                app: Some(info.demo.application_id.clone()),
                contract: Some(contract.contract_id.clone()),
                key: Some(contract.private_key_path.clone()),
            },
        );
    }
    let text = toml::to_string(&profiles).map_err(|e| Failure::local(e.to_string()))?;
    crate::tokens::write_private(file, text.as_bytes())
        .map_err(|e| Failure::local(format!("{}: {e}", file.display())))
}
