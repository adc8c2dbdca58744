//! Reading a user's library (read-and-storage.md §1–§6): read sessions, the file list,
//! file downloads and their metadata, accounts.
//!
//! Every read call is a [`UserOperation`] run in an [`crate::flow::AuthedCall`] (refresh-on-401 as
//! §0.5 says: `trigger`, the file list and accounts refresh on `InvalidToken` or an
//! unparseable 401; file downloads and `HEAD` on any 401). Downloads are streamed:
//! see [`crate::file::ReadFile`]; the polling loop is [`crate::read_all::ReadAllFiles`].

use crate::auth::{PullOptions, Session};
use crate::config::SessionKey;
use crate::error::Error;
use crate::flow::{UserOperation, parse_session};
use crate::retry::RetryPolicy;
use crate::sdk::Sdk;
use crate::token::UserAccessToken;
use crate::wire::{self, Body};
use crate::{Config, Contract};
use base64::Engine;
use http::{HeaderValue, Method, Request, Response, header};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::time::SystemTime;

// ---------------------------------------------------------------------------------
// Models.

/// The overall state of a read session's sync (`status.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncState {
    /// The sync has not started; no files yet.
    Pending,
    /// Sources are syncing; the file list grows.
    Running,
    /// Finished, but at least one account failed (see its details).
    Partial,
    /// Finished.
    Completed,
}

impl SyncState {
    /// Whether the sync is over (`partial` or `completed`).
    pub fn is_final(self) -> bool {
        matches!(self, SyncState::Partial | SyncState::Completed)
    }

    /// The state as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::Pending => "pending",
            SyncState::Running => "running",
            SyncState::Partial => "partial",
            SyncState::Completed => "completed",
        }
    }
}

impl std::fmt::Display for SyncState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error of one object type within a failed account sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectTypeError {
    /// What failed.
    pub error: ObjectTypeErrorDetail,
    /// The object type id.
    pub object_type: i64,
}

/// The error of an [`ObjectTypeError`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectTypeErrorDetail {
    /// Error code.
    pub code: String,
    /// Message.
    pub message: String,
    /// HTTP-like status.
    pub status_code: i64,
}

/// Why an account's sync ended `partial` (§2.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartialError {
    /// Error code, e.g. `ServiceAuthorizationError`.
    pub code: String,
    /// HTTP-like status, e.g. 511.
    pub status_code: i64,
    /// Message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The user must authorize this account again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reauth: Option<bool>,
    /// Seconds to wait before syncing again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<i64>,
    /// Errors per object type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_type_errors: Option<Vec<ObjectTypeError>>,
    /// Anything else the server sent (the docs show `message`/`reauth` nested in an
    /// inner `error` object).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The sync state of one source account (`status.details[accountId]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum AccountSyncStatus {
    /// Syncing.
    Running,
    /// Done.
    Completed,
    /// Failed; `error` says why.
    Partial {
        /// Why.
        error: PartialError,
    },
}

/// `status` of a file list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatus {
    /// Overall state.
    pub state: SyncState,
    /// Per account id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, AccountSyncStatus>,
}

/// The standard of a file's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SchemaStandard {
    /// `digime`.
    #[serde(rename = "digime")]
    Digime,
    /// `fhir`.
    #[serde(rename = "fhir")]
    Fhir,
    /// `me.digi`.
    #[serde(rename = "me.digi")]
    MeDigi,
}

/// The schema of mapped data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    /// The standard.
    pub standard: SchemaStandard,
    /// Its version.
    pub version: String,
    /// Schema id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// One entry of a file list (§2.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileListEntry {
    /// The file name, used verbatim to download it.
    pub name: String,
    /// Last change, Unix milliseconds; a download is repeated only when it grows.
    pub updated_date: i64,
    /// Schema of mapped data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Schema>,
    /// Service group, e.g. `social`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_group: Option<String>,
    /// Service, e.g. `instagram`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// Object type, e.g. `post`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_type: Option<String>,
    /// Number of objects in the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_count: Option<u64>,
    /// Object version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_version: Option<String>,
}

/// A file list: the session's sync status and the files ready so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileList {
    /// Sync status.
    pub status: SyncStatus,
    /// The files ready so far (absent on the wire = empty).
    #[serde(default)]
    pub file_list: Vec<FileListEntry>,
}

impl FileList {
    /// Parses a file-list body (§2.2), strictly: unknown states, entries without a
    /// string `name` or a numeric `updatedDate`, and unknown per-account states fail.
    pub fn parse(body: &[u8]) -> Result<FileList, Error> {
        let list: FileList = decode_json(body, "file list")?;
        Ok(list)
    }
}

/// Metadata of data synced from a service (§3.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MappedFileMetadata {
    /// Number of objects.
    pub object_count: u64,
    /// Object type, e.g. `media`.
    pub object_type: String,
    /// Service group, e.g. `social`.
    pub service_group: String,
    /// Service, e.g. `instagram`.
    pub service_name: String,
    /// Schema.
    pub schema: Schema,
    /// Object version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_version: Option<String>,
    /// Anything else the server sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An account in raw metadata (lower-case `accountid`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawAccount {
    /// The account id.
    pub accountid: String,
}

/// An object type in raw metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawObjectType {
    /// Name.
    pub name: String,
    /// References.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub references: Option<Vec<String>>,
}

/// Metadata of data an app pushed (§3.1); the keys are lower-case on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawFileMetadata {
    /// MIME type.
    pub mimetype: String,
    /// Accounts.
    pub accounts: Vec<RawAccount>,
    /// The pushing application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appid: Option<String>,
    /// The pushing contract.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contractid: Option<String>,
    /// When it was stored, Unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<i64>,
    /// Object types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objecttypes: Option<Vec<RawObjectType>>,
    /// Partner id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partnerid: Option<String>,
    /// References.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Vec<String>>,
    /// Service groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servicegroups: Option<Vec<i64>>,
    /// Tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Anything else the server sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A file's metadata: mapped (from a service) or raw (pushed by an app). Mapped is
/// tried first, as the official SDK does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FileMetadata {
    /// Data synced from a service.
    Mapped(MappedFileMetadata),
    /// Data an app pushed.
    Raw(RawFileMetadata),
}

/// How a file's plaintext was compressed before encryption (`X-Metadata.compression`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Compression {
    /// Not compressed.
    #[default]
    None,
    /// A gzip stream (RFC 1952).
    Gzip,
    /// A raw Brotli stream.
    Brotli,
    /// Another value: the data is used as is, as the official SDK does.
    Unknown(String),
}

impl Compression {
    fn from_wire(v: Option<&str>) -> Self {
        match v {
            None => Compression::None,
            Some("gzip") => Compression::Gzip,
            Some("brotli") => Compression::Brotli,
            Some(other) => Compression::Unknown(other.to_owned()),
        }
    }

    /// The value as on the wire (`None` when absent).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
            Compression::Brotli => Some("brotli"),
            Compression::Unknown(s) => Some(s),
        }
    }
}

/// The decoded `X-Metadata` header: `{"metadata": …, "compression"?: …}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XMetadata {
    /// The file's metadata.
    pub metadata: FileMetadata,
    /// Its compression.
    pub compression: Compression,
}

impl XMetadata {
    /// Decodes the header value: base64url (padding optional; the standard alphabet is
    /// accepted too, as the official SDK does) of a UTF-8 JSON object.
    pub fn parse(value: &[u8]) -> Result<XMetadata, Error> {
        let bad = |detail: String| Error::Decode {
            context: "X-Metadata",
            detail,
        };
        let text: Vec<u8> = value
            .iter()
            .filter(|&&b| b != b'=')
            .map(|&b| match b {
                b'+' => b'-',
                b'/' => b'_',
                b => b,
            })
            .collect();
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&text)
            .map_err(|e| bad(format!("not base64url: {e}")))?;
        #[derive(Deserialize)]
        struct Wire {
            metadata: FileMetadata,
            #[serde(default)]
            compression: Option<Value>,
        }
        let wire: Wire = serde_json::from_slice(&json)
            .map_err(|e| bad(format!("not the metadata shape: {e}")))?;
        let compression = match &wire.compression {
            None | Some(Value::Null) => Compression::None,
            Some(Value::String(s)) => Compression::from_wire(Some(s)),
            Some(_) => return Err(bad("compression is not a string".into())),
        };
        Ok(XMetadata {
            metadata: wire.metadata,
            compression,
        })
    }

    /// Encodes as the server does (unpadded base64url), for tests and emulators.
    pub fn encode(&self) -> String {
        let mut obj = Map::new();
        obj.insert(
            "metadata".into(),
            serde_json::to_value(&self.metadata).unwrap_or(Value::Null),
        );
        if let Some(c) = self.compression.as_str() {
            obj.insert("compression".into(), Value::String(c.to_owned()));
        }
        digime_crypto::b64url_encode(Value::Object(obj).to_string().as_bytes())
    }
}

/// What a file download's headers say: name, metadata, compression, `Last-Modified`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHead {
    /// The file name.
    pub name: String,
    /// Its metadata.
    pub metadata: FileMetadata,
    /// How its plaintext was compressed.
    pub compression: Compression,
    /// The `Last-Modified` header, verbatim (an HTTP date).
    pub last_modified: Option<String>,
}

/// A downloaded, decrypted and decompressed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileData {
    /// Name, metadata and `Last-Modified`.
    pub head: FileHead,
    /// The file's bytes (the SDK does not parse them).
    pub data: Vec<u8>,
}

/// An account type (§6.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AccountType {
    /// `USER`.
    User,
    /// `ADMIN`.
    Admin,
    /// `EVENT`.
    Event,
    /// `GROUP`.
    Group,
    /// `BANK`.
    Bank,
    /// `CREDIT_CARD`.
    CreditCard,
    /// `IMPORTED`.
    Imported,
    /// `INVESTMENT`.
    Investment,
    /// `INSURANCE`.
    Insurance,
    /// `LOAN`.
    Loan,
    /// `REWARD`.
    Reward,
    /// `BILL`.
    Bill,
    /// `PUSH`.
    Push,
}

/// Whether the service's access token of an account is usable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessTokenStatus {
    /// Authorized.
    pub authorized: bool,
    /// Expiry, Unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// One of the user's source accounts (§6.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    /// Account id (keys `status.details`; goes into `delete_account`).
    pub id: String,
    /// Reference.
    pub reference: String,
    /// Type.
    #[serde(rename = "type")]
    pub account_type: AccountType,
    /// Created, Unix ms.
    pub created_date: i64,
    /// Updated, Unix ms.
    pub updated_date: i64,
    /// Service group id.
    pub service_group_id: i64,
    /// Service group name.
    pub service_group_name: String,
    /// Service type id.
    pub service_type_id: i64,
    /// Service type name.
    pub service_type_name: String,
    /// Service type reference.
    pub service_type_reference: String,
    /// Source id.
    pub source_id: i64,
    /// Access token status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_status: Option<AccessTokenStatus>,
    /// Service provider id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_provider_id: Option<i64>,
    /// Service provider name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_provider_name: Option<String>,
    /// Service provider reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_provider_reference: Option<String>,
    /// User name at the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Favicon URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_fav_icon: Option<String>,
    /// Logo URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_logo: Option<String>,
    /// Holds sample data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<bool>,
    /// Anything else the server sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Parses an accounts body: a bare JSON array (§6.1).
pub fn parse_accounts(body: &[u8]) -> Result<Vec<Account>, Error> {
    decode_json(body, "accounts")
}

fn decode_json<T: serde::de::DeserializeOwned>(
    body: &[u8],
    context: &'static str,
) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|e| Error::Decode {
        context,
        detail: e.to_string(),
    })
}

// ---------------------------------------------------------------------------------
// Request building.

/// Percent-encodes one path segment (everything but RFC 3986 unreserved characters).
pub fn encode_path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn user_jwt(
    config: &Config,
    contract: &Contract,
    token: &UserAccessToken,
    now: SystemTime,
) -> Result<String, Error> {
    let mut claims = Map::new();
    claims.insert(
        "access_token".into(),
        token.access_token.value.expose().into(),
    );
    wire::sign_request_jwt(config, contract, now, claims)
}

fn user_request(
    sdk: &Sdk,
    contract: &Contract,
    token: &UserAccessToken,
    now: SystemTime,
    method: Method,
    path: &str,
    body: Body,
) -> Result<Request<Body>, Error> {
    let config = sdk.config();
    let jwt = user_jwt(config, contract, token, now)?;
    wire::request(method, &config.api(path), Some(&jwt), body)
}

fn file_path(session: &SessionKey, file_name: &str) -> String {
    format!(
        "permission-access/query/{}/{}",
        encode_path_segment(session.as_str()),
        encode_path_segment(file_name)
    )
}

/// Marks a request whose 2xx body the driver must stream (see [`crate::flow::Step::Receive`])
/// instead of reading it whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamResponse;

/// `POST permission-access/trigger` (§1).
#[derive(Debug, Clone)]
pub struct ReadSession {
    options: PullOptions,
}

impl ReadSession {
    pub(crate) fn new(options: PullOptions) -> Self {
        ReadSession { options }
    }

    /// The request body: the options, then `agent` written last (a caller's `agent` is
    /// replaced).
    pub fn body(&self, config: &Config) -> Result<Vec<u8>, Error> {
        let mut obj = match serde_json::to_value(&self.options) {
            Ok(Value::Object(o)) => o,
            _ => {
                return Err(Error::InvalidInput(
                    "session options must be an object".into(),
                ));
            }
        };
        obj.remove("agent");
        // Keys serialise sorted; `agent` goes last, as the official SDK writes it.
        let mut out = serde_json::to_vec(&Value::Object(obj))
            .map_err(|e| Error::InvalidInput(e.to_string()))?;
        out.pop(); // the closing brace
        if out.len() > 1 {
            out.push(b',');
        }
        out.extend_from_slice(br#""agent":"#);
        out.extend_from_slice(wire::agent_json(config).to_string().as_bytes());
        out.push(b'}');
        Ok(out)
    }
}

impl UserOperation for ReadSession {
    type Output = Session;
    fn method(&self) -> Method {
        Method::POST
    }
    fn retry_policy(&self, _sdk: &Sdk) -> RetryPolicy {
        // The client defaults, not the caller's retry options (§11); POST is not retried.
        RetryPolicy::default()
    }
    fn build(
        &self,
        sdk: &Sdk,
        contract: &Contract,
        token: &UserAccessToken,
        now: SystemTime,
    ) -> Result<Request<Body>, Error> {
        let body = self.body(sdk.config())?;
        let req = user_request(
            sdk,
            contract,
            token,
            now,
            Method::POST,
            "permission-access/trigger",
            Body::Bytes(body),
        )?;
        Ok(wire::accept_json(req))
    }
    fn parse(&self, response: Response<Vec<u8>>) -> Result<Session, Error> {
        let v: Value = decode_json(response.body(), "read session")?;
        parse_session(v.get("session"), "read session")?.ok_or(Error::Decode {
            context: "read session",
            detail: "no session in the response".into(),
        })
    }
    fn refresh_on_any_401(&self) -> bool {
        false
    }
}

/// `GET permission-access/query/{sessionKey}` (§2).
#[derive(Debug, Clone)]
pub struct ReadFileList {
    session: SessionKey,
}

impl ReadFileList {
    pub(crate) fn new(session: SessionKey) -> Self {
        ReadFileList { session }
    }
}

impl UserOperation for ReadFileList {
    type Output = FileList;
    fn method(&self) -> Method {
        Method::GET
    }
    fn retry_policy(&self, sdk: &Sdk) -> RetryPolicy {
        sdk.config().retry.clone()
    }
    fn build(
        &self,
        sdk: &Sdk,
        contract: &Contract,
        token: &UserAccessToken,
        now: SystemTime,
    ) -> Result<Request<Body>, Error> {
        let path = format!(
            "permission-access/query/{}",
            encode_path_segment(self.session.as_str())
        );
        let req = user_request(sdk, contract, token, now, Method::GET, &path, Body::Empty)?;
        Ok(wire::accept_json(req))
    }
    fn parse(&self, response: Response<Vec<u8>>) -> Result<FileList, Error> {
        FileList::parse(response.body())
    }
    fn refresh_on_any_401(&self) -> bool {
        false
    }
}

/// Reads `X-Metadata` and `Last-Modified` from a download or `HEAD` response.
pub fn parse_file_head(name: &str, response: &Response<Vec<u8>>) -> Result<FileHead, Error> {
    let x = response
        .headers()
        .get("x-metadata")
        .ok_or_else(|| Error::Decode {
            context: "X-Metadata",
            detail: "the response has no X-Metadata header".into(),
        })?;
    let x = XMetadata::parse(x.as_bytes())?;
    let last_modified = response
        .headers()
        .get(header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok(FileHead {
        name: name.to_owned(),
        metadata: x.metadata,
        compression: x.compression,
        last_modified,
    })
}

/// `HEAD permission-access/query/{sessionKey}/{fileName}` (§3.2), or the headers half
/// of the `GET` (§3.1), whose body [`crate::file::ReadFile`] then streams.
#[derive(Debug, Clone)]
pub struct ReadFileMetadata {
    session: SessionKey,
    name: String,
    download: bool,
}

impl ReadFileMetadata {
    pub(crate) fn head(session: SessionKey, name: String) -> Self {
        ReadFileMetadata {
            session,
            name,
            download: false,
        }
    }

    pub(crate) fn download(session: SessionKey, name: String) -> Self {
        ReadFileMetadata {
            session,
            name,
            download: true,
        }
    }
}

impl UserOperation for ReadFileMetadata {
    type Output = FileHead;
    fn method(&self) -> Method {
        if self.download {
            Method::GET
        } else {
            Method::HEAD
        }
    }
    fn retry_policy(&self, sdk: &Sdk) -> RetryPolicy {
        sdk.config().retry.clone()
    }
    fn build(
        &self,
        sdk: &Sdk,
        contract: &Contract,
        token: &UserAccessToken,
        now: SystemTime,
    ) -> Result<Request<Body>, Error> {
        let path = file_path(&self.session, &self.name);
        let req = user_request(sdk, contract, token, now, self.method(), &path, Body::Empty)?;
        if !self.download {
            return Ok(wire::accept_json(req));
        }
        let mut req = req;
        req.headers_mut().insert(
            header::ACCEPT,
            HeaderValue::from_static("application/octet-stream"),
        );
        req.extensions_mut().insert(StreamResponse);
        Ok(req)
    }
    // The official SDK reports only the metadata of a HEAD; `Last-Modified` is kept here
    // when the server sends it, since it costs nothing and tells when the file changed.
    fn parse(&self, response: Response<Vec<u8>>) -> Result<FileHead, Error> {
        parse_file_head(&self.name, &response)
    }
    fn refresh_on_any_401(&self) -> bool {
        true
    }
}

/// `GET permission-access/accounts` (§6.1).
#[derive(Debug, Clone, Default)]
pub struct ReadAccounts;

impl UserOperation for ReadAccounts {
    type Output = Vec<Account>;
    fn method(&self) -> Method {
        Method::GET
    }
    fn retry_policy(&self, sdk: &Sdk) -> RetryPolicy {
        sdk.config().retry.clone()
    }
    fn build(
        &self,
        sdk: &Sdk,
        contract: &Contract,
        token: &UserAccessToken,
        now: SystemTime,
    ) -> Result<Request<Body>, Error> {
        let req = user_request(
            sdk,
            contract,
            token,
            now,
            Method::GET,
            "permission-access/accounts",
            Body::Empty,
        )?;
        Ok(wire::accept_json(req))
    }
    fn parse(&self, response: Response<Vec<u8>>) -> Result<Vec<Account>, Error> {
        parse_accounts(response.body())
    }
    fn refresh_on_any_401(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(path: &str) -> Vec<Value> {
        let p = format!(
            "{}/../../fixtures/network/{path}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
    }

    #[test]
    fn every_file_list_fixture_parses_and_the_invalid_one_does_not() {
        for (name, state) in [
            ("file-list-pending.json", SyncState::Pending),
            ("file-list-running.json", SyncState::Running),
            ("file-list-partial.json", SyncState::Partial),
            ("file-list-completed.json", SyncState::Completed),
        ] {
            let mocks = fixture(&format!("get-file-list/{name}"));
            assert!(!mocks.is_empty());
            for m in mocks {
                let body = serde_json::to_vec(&m["response"]).unwrap();
                let list = FileList::parse(&body).unwrap();
                assert_eq!(list.status.state, state, "{name}");
                if state == SyncState::Running {
                    assert_eq!(list.file_list.len(), 3);
                    assert_eq!(list.file_list[0].name, "file1.json");
                    assert_eq!(list.file_list[0].updated_date, 1568716294874);
                    assert!(matches!(
                        list.status.details["test-account-id"],
                        AccountSyncStatus::Running
                    ));
                }
            }
        }
        for m in fixture("get-file-list/invalid-missing-status.json") {
            let body = serde_json::to_vec(&m["response"]).unwrap();
            assert!(matches!(FileList::parse(&body), Err(Error::Decode { .. })));
        }
    }

    #[test]
    fn file_list_shapes() {
        let partial = br#"{"status":{"state":"partial","details":{
            "1_a":{"state":"completed"},
            "40_b":{"state":"partial","error":{"code":"ServiceAuthorizationError","statusCode":511,
                "message":"Service authorization required","reauth":true,
                "objectTypeErrors":[{"error":{"code":"X","message":"m","statusCode":500},"objectType":2}]}}}},
            "fileList":[{"name":"f","updatedDate":1718000000123,"schema":{"standard":"digime","version":"1.0.0"},
              "serviceGroup":"social","serviceName":"facebook","objectType":"post","objectCount":250,"objectVersion":"1.0.0"}]}"#;
        let list = FileList::parse(partial).unwrap();
        let AccountSyncStatus::Partial { error } = &list.status.details["40_b"] else {
            panic!()
        };
        assert_eq!(error.status_code, 511);
        assert_eq!(error.reauth, Some(true));
        assert_eq!(error.object_type_errors.as_ref().unwrap()[0].object_type, 2);
        assert_eq!(list.file_list[0].object_count, Some(250));
        // The documented nested variant is accepted too.
        let nested = br#"{"status":{"state":"partial","details":{"x":{"state":"partial","error":
            {"code":"ServiceAuthorizationError","error":{"message":"m","reauth":true},"statusCode":511}}}}}"#;
        assert!(FileList::parse(nested).is_ok());
        for bad in [
            &br#"{"status":{}}"#[..],
            br#"{"status":{"state":"done"}}"#,
            br#"{"status":{"state":"running","details":{"a":{"state":"pending"}}}}"#,
            br#"{"status":{"state":"running","details":{"a":{"state":"partial"}}}}"#,
            br#"{"status":{"state":"running"},"fileList":{}}"#,
            br#"{"status":{"state":"running"},"fileList":[{"name":"a"}]}"#,
            br#"{"status":{"state":"running"},"fileList":[{"updatedDate":1}]}"#,
            br#"{"status":{"state":"running"},"fileList":[{"name":"a","updatedDate":1,"schema":{"standard":"x","version":"1"}}]}"#,
            b"[]",
            b"",
        ] {
            assert!(FileList::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn x_metadata_worked_examples() {
        let mapped = XMetadata::parse(b"eyJtZXRhZGF0YSI6eyJvYmplY3RDb3VudCI6MSwib2JqZWN0VHlwZSI6Im1lZGlhIiwic2VydmljZUdyb3VwIjoic29jaWFsIiwic2VydmljZU5hbWUiOiJpbnN0YWdyYW0iLCJzY2hlbWEiOnsic3RhbmRhcmQiOiJmaGlyIiwidmVyc2lvbiI6IjMuMC4wIn19LCJjb21wcmVzc2lvbiI6ImJyb3RsaSJ9").unwrap();
        assert_eq!(mapped.compression, Compression::Brotli);
        let FileMetadata::Mapped(m) = &mapped.metadata else {
            panic!()
        };
        assert_eq!(m.service_name, "instagram");
        assert_eq!(m.schema.standard, SchemaStandard::Fhir);
        let raw = XMetadata::parse(b"eyJtZXRhZGF0YSI6eyJtaW1ldHlwZSI6InRleHQvcGxhaW4iLCJhY2NvdW50cyI6W3siYWNjb3VudGlkIjoidGVzdC1hY2NvdW50LTEifSx7ImFjY291bnRpZCI6InRlc3QtYWNjb3VudC0yIn1dfSwiY29tcHJlc3Npb24iOiJnemlwIn0").unwrap();
        assert_eq!(raw.compression, Compression::Gzip);
        let FileMetadata::Raw(r) = &raw.metadata else {
            panic!()
        };
        assert_eq!(r.accounts[1].accountid, "test-account-2");
        // Round trip, and the padded / standard-alphabet forms decode the same.
        assert_eq!(XMetadata::parse(raw.encode().as_bytes()).unwrap(), raw);
        let std_padded = base64::engine::general_purpose::STANDARD
            .encode(br#"{"metadata":{"mimetype":"a/b","accounts":[]},"compression":"zstd?"}"#);
        let odd = XMetadata::parse(std_padded.as_bytes()).unwrap();
        assert_eq!(odd.compression, Compression::Unknown("zstd?".into()));
        for bad in [
            "",
            "!!!",
            &digime_crypto::b64url_encode(b"not json"),
            &digime_crypto::b64url_encode(br#"{"metadata":{}}"#),
            &digime_crypto::b64url_encode(br#"{"metadata":{"mimetype":"a"}}"#),
            &digime_crypto::b64url_encode(
                br#"{"metadata":{"mimetype":"a","accounts":[]},"compression":1}"#,
            ),
        ] {
            assert!(XMetadata::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn fixture_file_metadata_parses() {
        for name in [
            "valid-files.json",
            "valid-files-compression-gzip.json",
            "valid-files-compression-brotli.json",
        ] {
            for m in fixture(&format!("get-file/{name}")) {
                let Some(x) = m["rawHeaders"]["x-metadata"].as_object() else {
                    continue;
                };
                let encoded =
                    digime_crypto::b64url_encode(Value::Object(x.clone()).to_string().as_bytes());
                XMetadata::parse(encoded.as_bytes()).unwrap();
            }
        }
    }

    #[test]
    fn accounts_parse() {
        let body = br#"[{"createdDate":1693931692826,"id":"40_XXXX","providerFavIcon":"f","providerLogo":"l",
            "reference":"x","serviceGroupId":1,"serviceGroupName":"Social","serviceTypeId":40,
            "serviceTypeName":"Instagram","serviceTypeReference":"instagram","sourceId":420,"type":"USER",
            "updatedDate":1693931704516,"accessTokenStatus":{"authorized":true},"newField":1}]"#;
        let a = parse_accounts(body).unwrap();
        assert_eq!(a[0].account_type, AccountType::User);
        assert_eq!(a[0].extra["newField"], 1);
        assert!(parse_accounts(b"[]").unwrap().is_empty());
        assert!(parse_accounts(br#"{"accounts":[]}"#).is_err());
        assert!(parse_accounts(br#"[{"id":"x"}]"#).is_err());
    }

    #[test]
    fn trigger_body_puts_agent_last_and_drops_a_caller_agent() {
        let config = Config::new("app").unwrap();
        let mut options = PullOptions {
            source_fetch: Some(false),
            ..Default::default()
        };
        options.limits = Some(crate::auth::Limits {
            duration: crate::auth::DurationLimits { source_fetch: 30 },
        });
        let body = ReadSession::new(options).body(&config).unwrap();
        let text = String::from_utf8(body).unwrap();
        assert!(
            text.starts_with(
                r#"{"limits":{"duration":{"sourceFetch":30}},"sourceFetch":false,"agent":{"sdk":"#
            ),
            "{text}"
        );
        assert!(text.contains(r#""name":"rust""#), "{text}");
        let empty = ReadSession::new(PullOptions::default())
            .body(&config)
            .unwrap();
        assert!(
            String::from_utf8(empty)
                .unwrap()
                .starts_with(r#"{"agent":"#)
        );
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(
            encode_path_segment("a b/c?d#e.json"),
            "a%20b%2Fc%3Fd%23e.json"
        );
        assert_eq!(
            encode_path_segment("1_1_2_202401_1.json"),
            "1_1_2_202401_1.json"
        );
    }
}
