//! GET `permission-access/query/{session}` (`docs/protocol.md`, "File list"): the
//! session's sync status and the files ready so far.

use super::{decode_json, path_segment, user_request};
use crate::config::{Contract, SessionKey};
use crate::error::Error;
use crate::refresh::UserOperation;
use crate::sdk::Sdk;
use crate::token::UserAccessToken;
use crate::wire::{self, Body};
use http::{Method, Request, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::time::SystemTime;

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

/// Why an account's sync ended `partial` (docs/protocol.md, "File list").
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

/// One entry of a file list (docs/protocol.md, "File list").
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
    /// Parses a file-list body (docs/protocol.md, "File list"), strictly: unknown states, entries without a
    /// string `name` or a numeric `updatedDate`, and unknown per-account states fail.
    pub fn parse(body: &[u8]) -> Result<FileList, Error> {
        let list: FileList = decode_json(body, "file list")?;
        Ok(list)
    }
}

/// `GET permission-access/query/{sessionKey}` (docs/protocol.md, "File list").
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
    fn build(
        &self,
        sdk: &Sdk,
        contract: &Contract,
        token: &UserAccessToken,
        now: SystemTime,
    ) -> Result<Request<Body>, Error> {
        let path = format!(
            "permission-access/query/{}",
            path_segment(self.session.as_str(), "session key")?
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
