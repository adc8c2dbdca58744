//! The emulator's state: registered contracts, users, codes, tokens and the library.
//! Everything but the parsed keys is serialisable, and is saved after each change
//! when a state directory is configured.

use digime_crypto::PublicKey;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

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
}

/// A contract known to the sandbox.
#[derive(Debug, Clone)]
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
}

impl RegisteredContract {
    pub(crate) fn client_id(&self) -> String {
        format!("{}_{}", self.app_id, self.contract_id)
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AuthCode {
    pub client_id: String,
    pub user_id: String,
    pub code_challenge: String,
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
}

#[derive(Debug, Default, Serialize, Deserialize)]
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
}
