//! SDK configuration (docs/protocol.md, "Configuration") and the identities of application and contract (docs/protocol.md, "Authorization").

use crate::error::Error;
use crate::retry::RetryPolicy;
use digime_crypto::PrivateKey;
use std::fmt;
use std::time::Duration;

/// Default API base.
pub const DEFAULT_BASE_URL: &str = "https://api.digi.me/v1.7/";
/// Default onboard (web client) base.
pub const DEFAULT_ONBOARD_URL: &str = "https://api.digi.me/apps/saas/";
/// Default cloud storage base.
pub const DEFAULT_CLOUD_BASE_URL: &str = "https://cloud.digi.me/v1/";
/// How long a fetched server key set is trusted (the iOS SDK's 15 minutes).
pub const DEFAULT_JWKS_TTL: Duration = Duration::from_secs(15 * 60);

/// The SDK identity sent as `agent.sdk` in request bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// `agent.sdk.name`.
    pub name: String,
    /// `agent.sdk.version`.
    pub version: String,
}

impl Default for Agent {
    fn default() -> Self {
        Agent {
            name: "rust".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// SDK configuration. Build with [`Config::new`] and the setters.
#[derive(Debug, Clone)]
pub struct Config {
    application_id: ApplicationId,
    base_url: String,
    onboard_url: String,
    cloud_base_url: String,
    jwks_url: Option<String>,
    /// Retry policy of calls that follow the user's retry options.
    pub retry: RetryPolicy,
    /// How long a fetched server key set is cached.
    pub jwks_ttl: Duration,
    /// The agent sent in request bodies.
    pub agent: Agent,
    /// The largest file read into memory (`read_file`, `read_all_files`); a larger one
    /// fails with [`crate::TransportErrorKind::ResponseTooLarge`]. Stream big files to
    /// a writer (`read_file_to`, `read_all_files_to`), which has no limit.
    pub max_buffered_file_bytes: u64,
    file_format: Option<FileFormat>,
}

/// The default of [`Config::max_buffered_file_bytes`]: 256 MiB.
pub const DEFAULT_MAX_BUFFERED_FILE_BYTES: u64 = 256 << 20;

/// The layout of downloaded files (docs/protocol.md, "File envelope").
pub use digime_crypto::envelope::Format as FileFormat;

impl Config {
    /// A configuration with the official defaults.
    pub fn new(application_id: impl Into<String>) -> Result<Self, Error> {
        Ok(Config {
            application_id: ApplicationId::new(application_id)?,
            base_url: DEFAULT_BASE_URL.into(),
            onboard_url: DEFAULT_ONBOARD_URL.into(),
            cloud_base_url: DEFAULT_CLOUD_BASE_URL.into(),
            jwks_url: None,
            retry: RetryPolicy::default(),
            jwks_ttl: DEFAULT_JWKS_TTL,
            agent: Agent::default(),
            max_buffered_file_bytes: DEFAULT_MAX_BUFFERED_FILE_BYTES,
            file_format: None,
        })
    }

    /// Sets the layout of downloaded files, instead of deriving it from the API base.
    pub fn with_file_format(mut self, format: FileFormat) -> Self {
        self.file_format = Some(format);
        self
    }

    /// The layout of downloaded files: as set by [`Config::with_file_format`], else
    /// derived from the API base: the SHA-512-prefixed layout for `v1.5` and `v1.6`
    /// (docs/protocol.md, "PKCE": the hash was dropped together with the move to `v1.7`), the current one
    /// otherwise. (`v1.0`–`v1.4` sent files as base64 inside JSON, a transport this SDK
    /// does not read.)
    pub fn file_format(&self) -> FileFormat {
        if let Some(f) = self.file_format {
            return f;
        }
        let legacy = ["v1.5", "v1.6"];
        let path = self.base_url.split("://").nth(1).unwrap_or("");
        if path.split('/').any(|segment| legacy.contains(&segment)) {
            FileFormat::Sha512Prefixed
        } else {
            FileFormat::Current
        }
    }

    /// Sets the API base (a trailing `/` is added when missing).
    pub fn with_base_url(mut self, url: &str) -> Result<Self, Error> {
        self.base_url = normalise_base("base URL", url)?;
        Ok(self)
    }

    /// Sets the onboard base.
    pub fn with_onboard_url(mut self, url: &str) -> Result<Self, Error> {
        self.onboard_url = normalise_base("onboard URL", url)?;
        Ok(self)
    }

    /// Sets the cloud storage base.
    pub fn with_cloud_base_url(mut self, url: &str) -> Result<Self, Error> {
        self.cloud_base_url = normalise_base("cloud base URL", url)?;
        Ok(self)
    }

    /// Pins server tokens to this key-set URL instead of `{base}jwks/oauth`.
    pub fn with_jwks_url(mut self, url: &str) -> Result<Self, Error> {
        let parsed = url::Url::parse(url)
            .map_err(|e| Error::InvalidInput(format!("JWKS URL {url:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::InvalidInput(format!(
                "JWKS URL {url:?} is not http(s)"
            )));
        }
        check_plain_http("JWKS URL", url, &parsed)?;
        self.jwks_url = Some(url.to_owned());
        Ok(self)
    }

    /// Sets the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The application id.
    pub fn application_id(&self) -> &ApplicationId {
        &self.application_id
    }
    /// The API base, ending in `/`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }
    /// The onboard base, ending in `/`.
    pub fn onboard_url(&self) -> &str {
        &self.onboard_url
    }
    /// The cloud storage base, ending in `/`.
    pub fn cloud_base_url(&self) -> &str {
        &self.cloud_base_url
    }
    /// The only key-set URL server tokens may name: `{base}jwks/oauth` unless set.
    pub fn jwks_url(&self) -> String {
        match &self.jwks_url {
            Some(u) => u.clone(),
            None => format!("{}jwks/oauth", self.base_url),
        }
    }
    /// `{base}` + `path`, by plain concatenation as the official SDK does.
    pub fn api(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }
}

/// Plain `http` only to this machine (a sandbox, a test server): elsewhere tokens,
/// keys and files would cross the network in the clear, and a key set fetched over it
/// could be forged on the way.
fn check_plain_http(what: &str, url: &str, parsed: &url::Url) -> Result<(), Error> {
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if parsed.scheme() == "http" && !loopback {
        return Err(Error::InvalidInput(format!(
            "{what} {url:?}: plain http is only for loopback hosts; use https"
        )));
    }
    Ok(())
}

fn normalise_base(what: &str, url: &str) -> Result<String, Error> {
    let parsed =
        url::Url::parse(url).map_err(|e| Error::InvalidInput(format!("{what} {url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(Error::InvalidInput(format!(
            "{what} {url:?} is not an http(s) URL"
        )));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(Error::InvalidInput(format!(
            "{what} {url:?} must not have a query or fragment"
        )));
    }
    check_plain_http(what, url, &parsed)?;
    let mut s = url.to_owned();
    if !s.ends_with('/') {
        s.push('/');
    }
    Ok(s)
}

macro_rules! id_type {
    (redacted $(#[$doc:meta])* $name:ident) => {
        id_type!(@common $(#[$doc])* $name);

        /// Redacted: a session key is a credential (the only one of an SDK v0.5–v3
        /// postbox push). `Display` shows it, for when it must be sent or stored.
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}([redacted])", stringify!($name))
            }
        }
    };
    (@common $(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a non-empty id.
            pub fn new(id: impl Into<String>) -> Result<Self, Error> {
                let id = id.into();
                if id.is_empty() {
                    return Err(Error::InvalidInput(concat!(stringify!($name), " cannot be empty").into()));
                }
                Ok($name(id))
            }
            /// The id as sent on the wire.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
    ($(#[$doc:meta])* $name:ident) => {
        id_type!(@common $(#[$doc])* $name);

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

id_type!(
    /// A digi.me application id.
    ApplicationId
);
id_type!(
    /// A digi.me contract id.
    ContractId
);
id_type!(
    /// The id of a cloud storage (`create_provisional_storage`, `user_storage`).
    StorageId
);
id_type!(redacted
    /// A session key: of a read session, or of an SDK v0.5–v4 session.
    SessionKey
);

/// A contract: its id and its private key, parsed once. Cheap to clone.
#[derive(Clone)]
pub struct Contract {
    id: ContractId,
    key: PrivateKey,
}

impl Contract {
    /// A contract from its id and parsed key.
    pub fn new(id: impl Into<String>, key: PrivateKey) -> Result<Self, Error> {
        Ok(Contract {
            id: ContractId::new(id)?,
            key,
        })
    }

    /// A contract from its id and PEM private key (PKCS#1 or PKCS#8).
    pub fn from_pem(id: impl Into<String>, private_key_pem: &str) -> Result<Self, Error> {
        let key = PrivateKey::from_pem(private_key_pem)?;
        Contract::new(id, key)
    }

    /// The contract id.
    pub fn id(&self) -> &ContractId {
        &self.id
    }

    /// The contract's private key.
    pub fn key(&self) -> &PrivateKey {
        &self.key
    }

    /// `client_id` = `{applicationId}_{contractId}`.
    pub fn client_id(&self, app: &ApplicationId) -> String {
        format!("{}_{}", app.as_str(), self.id.as_str())
    }
}

impl fmt::Debug for Contract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Contract")
            .field("id", &self.id)
            .field("key", &self.key)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_for_loopback_only() {
        let c = Config::new("app").unwrap();
        for ok in [
            "http://127.0.0.1:9/v1.7/",
            "http://localhost:8080/",
            "http://[::1]:1/",
        ] {
            assert!(c.clone().with_base_url(ok).is_ok(), "{ok}");
            assert!(c.clone().with_jwks_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://api.digi.me/v1.7/",
            "http://10.0.0.1/",
            "http://localhost.evil.example/",
        ] {
            assert!(c.clone().with_base_url(bad).is_err(), "{bad}");
            assert!(c.clone().with_onboard_url(bad).is_err(), "{bad}");
            assert!(c.clone().with_cloud_base_url(bad).is_err(), "{bad}");
            assert!(c.clone().with_jwks_url(bad).is_err(), "{bad}");
        }
        assert!(c.with_base_url("https://api.digi.test/v7/").is_ok());
    }

    #[test]
    fn trailing_slash_and_validation() {
        let c = Config::new("app")
            .unwrap()
            .with_base_url("http://127.0.0.1:9/v1.7")
            .unwrap();
        assert_eq!(c.base_url(), "http://127.0.0.1:9/v1.7/");
        assert_eq!(c.jwks_url(), "http://127.0.0.1:9/v1.7/jwks/oauth");
        assert_eq!(c.api("oauth/token"), "http://127.0.0.1:9/v1.7/oauth/token");
        assert!(Config::new("").is_err());
        assert!(Config::new("a").unwrap().with_base_url("ftp://x/").is_err());
        assert!(
            Config::new("a")
                .unwrap()
                .with_base_url("not a url")
                .is_err()
        );
        let d = Config::new("a").unwrap();
        assert_eq!(d.base_url(), DEFAULT_BASE_URL);
        assert_eq!(d.onboard_url(), DEFAULT_ONBOARD_URL);
        assert_eq!(d.retry.limit, 2);
    }
}

#[cfg(test)]
mod file_format_tests {
    use super::*;

    #[test]
    fn the_file_layout_follows_the_api_version() {
        let c = Config::new("a").unwrap();
        assert_eq!(c.file_format(), FileFormat::Current);
        let old = c.clone().with_base_url("https://api.digi.me/v1.6").unwrap();
        assert_eq!(old.file_format(), FileFormat::Sha512Prefixed);
        let test = c
            .clone()
            .with_base_url("https://api.digi.test/v7/")
            .unwrap();
        assert_eq!(test.file_format(), FileFormat::Current);
        let forced = old.with_file_format(FileFormat::Current);
        assert_eq!(forced.file_format(), FileFormat::Current);
    }

    #[test]
    fn session_keys_never_print_in_debug() {
        let k = SessionKey::new("sk-secret-123").unwrap();
        assert_eq!(format!("{k:?}"), "SessionKey([redacted])");
        assert_eq!(k.to_string(), "sk-secret-123");
        assert_eq!(
            format!("{:?}", ContractId::new("c-1").unwrap()),
            "ContractId(\"c-1\")"
        );
    }
}
