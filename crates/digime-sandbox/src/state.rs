//! The emulator's state: registered contracts, users, codes, tokens and the library.
//! Everything but the parsed keys is serialisable, and is saved after each change
//! when a state directory is configured.

use digime_crypto::PublicKey;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What a contract may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContractKind {
    /// Pushes data into libraries.
    Write,
    /// Reads raw data.
    Read,
    /// Both (contracts registered on the command line).
    ReadWrite,
}

impl ContractKind {
    pub(crate) fn can_write(self) -> bool {
        matches!(self, ContractKind::Write | ContractKind::ReadWrite)
    }
    pub(crate) fn can_read(self) -> bool {
        matches!(self, ContractKind::Read | ContractKind::ReadWrite)
    }
}

/// A contract known to the sandbox. Made by the sandbox only (from
/// [`SandboxConfig`](crate::SandboxConfig)); its fields are public to read, and it is
/// `#[non_exhaustive]`, so that fields can be added without breaking anyone.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RegisteredContract {
    /// Application id.
    pub app_id: String,
    /// Contract id.
    pub contract_id: String,
    /// The contract's public key, parsed once.
    pub key: PublicKey,
    /// What the contract may do.
    pub kind: ContractKind,
    /// A display name for the consent page.
    pub name: String,
    /// The application's name, as `permission-access/contract` answers it.
    pub app_name: String,
    /// The partner (organisation) the contract belongs to.
    pub partner_id: String,
    /// When the contract expires, in Unix ms.
    pub expires_ms: u64,
}

impl RegisteredContract {
    pub(crate) fn client_id(&self) -> String {
        format!("{}_{}", self.app_id, self.contract_id)
    }

    /// `accessType` of the contract details: `"w"` for a contract that may write
    /// (a read-write one too), `"r"` for a read contract.
    pub fn access_type(&self) -> &'static str {
        if self.kind.can_write() { "w" } else { "r" }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PreAuthorization {
    pub client_id: String,
    pub code_challenge: String,
    pub redirect_uri: String,
    pub state: String,
    pub link_user: Option<String>,
    pub expires_ms: u64,
    /// The read session handed out with the preauthorization; bound to the user on consent.
    #[serde(default)]
    pub session_key: Option<String>,
    /// The request's `actions`: `actions.pull` scopes that session's sync, and the
    /// consent page shows what it asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AuthCode {
    pub client_id: String,
    pub user_id: String,
    pub code_challenge: String,
    pub expires_ms: u64,
    /// Issued by the (emulated) native app for an ongoing postbox: only
    /// `v1.5/oauth/token` exchanges it, and only with this `redirect_uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy_redirect_uri: Option<String>,
}

/// A pre-authorization of the v1.5 API (`oauth/authorize` without a
/// body), redeemed by the native app's `postbox/create` deep link.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LegacyPreAuth {
    pub client_id: String,
    pub code_challenge: String,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub expires_ms: u64,
}

/// How a postbox came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PostboxKind {
    /// Native app, one-off link (E0, E1 once).
    Once,
    /// Native app, link with a pre-authorization code (E1 ongoing).
    Ongoing,
    /// Consent to a write contract on the onboard page (E2).
    Saas,
}

/// A postbox: a key pair whose public half the app encrypts to, and what was pushed
/// into it and not yet imported.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PostboxRecord {
    pub id: String,
    pub client_id: String,
    pub user_id: String,
    pub kind: PostboxKind,
    /// The establish-session key of the link that made it (native-app postboxes).
    pub session_key: Option<String>,
    /// The private key, PKCS#1 PEM.
    pub private_key_pem: String,
    /// The public key as sent on the callback: bare base64 of the PKCS#1 DER.
    pub public_key: String,
    pub created_ms: u64,
    /// Pushed items waiting for the user to open the app (`pending`).
    #[serde(default)]
    pub pending: Vec<PendingItem>,
}

/// A decrypted item waiting in a postbox; its plaintext is already on disk where the
/// library keeps files, and it joins the library when imported.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PendingItem {
    pub file: LibraryFile,
    pub pushed_ms: u64,
    pub expires_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct IssuedToken {
    pub client_id: String,
    pub user_id: String,
    pub consent_id: String,
    pub expires_s: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SessionRecord {
    pub client_id: String,
    pub expires_ms: u64,
    /// Whose library the session reads: set by `trigger`, or on consent for the session
    /// an authorization hands out. A session without a user cannot be read.
    #[serde(default)]
    pub user_id: Option<String>,
    /// The simulated source sync of this session.
    #[serde(default)]
    pub sync: Option<SyncPlan>,
    /// Set for a session of the legacy `permission-access/session` call:
    /// its exchange token. Such a session is never readable; it authorises postbox
    /// links and E0/E1 pushes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange_token: Option<String>,
}

/// Everything that decides what a read session shows, fixed when the sync starts, so
/// the file list is a pure function of the elapsed time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SyncPlan {
    /// When the sync started, Unix ms.
    pub started_ms: u64,
    /// Length of one sync step, ms (at least 1).
    pub step_ms: u64,
    /// `sourceFetch`: whether sources are synced at all.
    pub fetch: bool,
    /// `sourceFetchFilter.account.id`: only these accounts sync.
    pub only_accounts: Option<Vec<String>>,
    /// Accounts told to fail, with their error.
    pub failures: BTreeMap<String, AccountError>,
    /// Whether one file is rewritten mid-sync.
    pub rewrite: bool,
    /// When the library's mapped data was last written before this session, Unix ms.
    pub library_ms: u64,
    /// The `scope` filters.
    pub scope: ReadScope,
}

/// `scope` of a read session, with relative times resolved to Unix ms.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ReadScope {
    /// `timeRanges`, as `[from, to]` windows in ms (mapped data).
    pub time_ranges: Vec<(Option<u64>, Option<u64>)>,
    /// `serviceGroups` (mapped data).
    pub service_groups: Option<Vec<GroupFilter>>,
    /// `criteria` (raw data).
    pub criteria: Option<Vec<Criterion>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct GroupFilter {
    pub id: u64,
    /// `None` or empty: every service type of the group.
    pub service_types: Option<Vec<TypeFilter>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TypeFilter {
    pub id: u64,
    /// `None` or empty: every object type of the service.
    pub object_types: Option<Vec<u64>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Criterion {
    /// Only raw files created at or after this time, Unix ms (`from`, `last`).
    pub from_ms: Option<u64>,
    pub app_id: Option<Vec<String>>,
    pub accounts: Option<Vec<String>>,
    pub contract_id: Option<Vec<String>>,
    pub mime_type: Option<Vec<String>>,
    pub reference: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
}

/// The error a failing account's sync ends with (the flat error of a `partial` account in the file list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountError {
    /// Error code, e.g. `ServiceAuthorizationError`.
    pub code: String,
    /// Status code, e.g. 511.
    pub status_code: u16,
    /// Human-readable message.
    pub message: String,
    /// Whether the user must re-authorise the account.
    pub reauth: bool,
}

impl Default for AccountError {
    fn default() -> Self {
        AccountError {
            code: "ServiceAuthorizationError".into(),
            status_code: 511,
            message: "Service authorization required".into(),
            reauth: true,
        }
    }
}

/// How served files are compressed before encryption (the `compression` of `X-Metadata`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Served as they are.
    #[default]
    None,
    /// gzip (RFC 1952).
    Gzip,
    /// Brotli.
    Brotli,
}

impl Compression {
    /// The `X-Metadata` `compression` value, `None` when uncompressed.
    pub fn label(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
            Compression::Brotli => Some("brotli"),
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Compression::None),
            "gzip" => Ok(Compression::Gzip),
            "brotli" => Ok(Compression::Brotli),
            other => Err(format!(
                "compression must be none, gzip or brotli, not {other:?}"
            )),
        }
    }
}

/// A synthetic file: its bytes are generated from `seed` whenever it is served, never stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GeneratedContent {
    /// The generator seed.
    pub seed: u64,
    /// Compression for this file, overriding the sandbox default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
}

/// A user of the sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRecord {
    /// User id.
    pub id: String,
    /// Creation time, Unix ms.
    pub created: u64,
}

/// A file stored in a user's library.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LibraryFile {
    /// File id.
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// The pushing application.
    pub app_id: String,
    /// The pushing contract.
    pub contract_id: String,
    /// The descriptor exactly as signed in the FileDescriptor JWT (`metadata`).
    pub descriptor: serde_json::Value,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the stored bytes, hex.
    pub sha256: String,
    /// When it was stored, Unix ms.
    pub created: u64,
    /// Set for synthetic files made by the control API (no bytes on disk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated: Option<GeneratedContent>,
}

/// A code of `oauth/token/reference`, redeemed on one onboard page: `user-reauth`
/// when it carries a PKCE challenge, `onboard` or `reauthorize` when it does not.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ReferenceCode {
    pub client_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    pub state: Option<String>,
    /// The PKCE challenge of a user-reauth request.
    pub code_challenge: Option<String>,
    /// The `actions` of the request (`pull`: the options of the session's sync).
    pub actions: Option<serde_json::Value>,
    /// The read session handed out with the code; bound to the user on consent.
    pub session_key: String,
    pub expires_ms: u64,
}

/// A code of `permission-access/revoke/h:accountId`, redeemed on the `revoke` page.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RevokeCode {
    pub client_id: String,
    pub user_id: String,
    pub account_id: String,
    pub redirect_uri: String,
    pub expires_ms: u64,
}

/// What a `reference` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ReferenceKind {
    #[serde(rename = "accountId")]
    AccountId,
    #[serde(rename = "cloudId")]
    CloudId,
}

/// A reference made by `POST reference`, for the contract that asked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ReferenceRecord {
    pub client_id: String,
    pub kind: ReferenceKind,
    pub value: String,
    pub created_ms: u64,
}

/// One service account in a user's library.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AccountRecord {
    /// `<serviceTypeId>_<opaque>`.
    pub id: String,
    /// The catalogue source id of its service.
    pub source_id: u64,
    /// When it joined the library, Unix ms (its data ends before that month).
    pub added_ms: u64,
    /// Onboarded with a sample data set.
    #[serde(default)]
    pub sample: bool,
    /// Which sample data set of its source it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_set: Option<String>,
}

/// A FHIR resource an app pushed to the provider behind a push account
/// (`permission-access/import/h:accountId/fhir/…`); the bytes are in the user's
/// library folder, `{id}.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProviderPush {
    pub id: String,
    pub account_id: String,
    pub source_id: u64,
    pub client_id: String,
    pub standard: String,
    pub version: String,
    pub resource_type: String,
    /// A Bundle's number of entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries: Option<usize>,
    pub size: u64,
    pub sha256: String,
    /// When it came, Unix ms.
    pub received: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Persisted {
    pub users: HashMap<String, UserRecord>,
    pub preauths: HashMap<String, PreAuthorization>,
    pub codes: HashMap<String, AuthCode>,
    pub access_tokens: HashMap<String, IssuedToken>,
    pub refresh_tokens: HashMap<String, IssuedToken>,
    pub sessions: HashMap<String, SessionRecord>,
    pub files: Vec<LibraryFile>,
    /// consent ids per (user, client)
    pub consents: HashMap<String, String>,
    /// nonce → Unix ms first seen
    pub nonces: HashMap<String, u64>,
    /// user → account → the error its syncs end with
    #[serde(default)]
    pub account_failures: HashMap<String, BTreeMap<String, AccountError>>,
    /// user → when recent source syncs end(ed), Unix ms (the last few)
    #[serde(default)]
    pub sync_ends: HashMap<String, Vec<u64>>,
    /// postbox id → postbox
    #[serde(default)]
    pub postboxes: HashMap<String, PostboxRecord>,
    /// v1.5 pre-authorization code → its request
    #[serde(default)]
    pub legacy_preauths: HashMap<String, LegacyPreAuth>,
    /// `oauth/token/reference` code → its request
    #[serde(default)]
    pub reference_codes: HashMap<String, ReferenceCode>,
    /// revoke code → the account whose permission it withdraws
    #[serde(default)]
    pub revoke_codes: HashMap<String, RevokeCode>,
    /// `reference` id → what it names
    #[serde(default)]
    pub references: HashMap<String, ReferenceRecord>,
    /// the storages and their files' index
    #[serde(default)]
    pub cloud: crate::clouds::Clouds,
    /// user → their accounts, once the set differs from the default one (accounts
    /// onboarded or deleted); a user without an entry has the default accounts
    #[serde(default)]
    pub accounts: HashMap<String, Vec<AccountRecord>>,
    /// user → client → accounts whose permission the user withdrew from that client
    #[serde(default)]
    pub revoked: HashMap<String, BTreeMap<String, BTreeSet<String>>>,
    /// user → what apps pushed to the providers of their push accounts, in order
    #[serde(default)]
    pub provider_pushes: HashMap<String, Vec<ProviderPush>>,
}
