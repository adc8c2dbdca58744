//! Cloud storage (`docs/protocol.md`, "Storage"): an application's own encrypted
//! files, in a storage that is provisional (made by the app, not yet a user's) or a
//! user's.
//!
//! | module | endpoint | flow |
//! |---|---|---|
//! | [`account`] | POST `storage` (a provisional storage), GET `storage` (the user's) | [`crate::ClientCall`], [`crate::AuthedCall`] |
//! | [`files`] | `{cloud}clouds/{storageId}/files/apps/{applicationId}{path}`: GET (list, download), POST (upload), DELETE | [`crate::ClientCall`], [`files::DownloadStorageFile`] |
//!
//! The file calls go to the cloud base ([`crate::Config::cloud_base_url`]) and carry
//! their own JWT ([`storage_jwt`]), signed with the contract's key for each attempt.
//! Files are encrypted on the way up to the contract's own public key (the envelope of
//! the library's files) and decrypted on the way down, both as they stream: the cloud
//! only ever holds ciphertext, readable by the contract's private key alone.

pub mod account;
pub mod files;

pub use account::{CreateProvisionalStorage, ReadUserStorage, Storage};
pub use files::{
    DeleteStorageFiles, DownloadStorageFile, EnvelopeUpload, ListStorageFiles, StorageFile,
    StorageFileList, UploadStorageFile,
};

use crate::config::{Config, Contract};
use crate::error::Error;
use std::time::SystemTime;

/// How long a storage JWT is valid for (`exp` − `iat`, seconds).
pub const STORAGE_JWT_LIFETIME_SECS: u64 = 60;

/// The storage JWT of a cloud call (`docs/protocol.md`, "Storage"): header
/// `{"alg":"PS512","typ":"at+jwt","kid":"{contractId}_{applicationId}_0"}`, payload
/// `{"sub": applicationId, "iss": contractId, "aud": "cloud", "iat", "exp"}` (Unix
/// seconds, valid [`STORAGE_JWT_LIFETIME_SECS`]), signed with the contract's key.
pub fn storage_jwt(config: &Config, contract: &Contract, now: SystemTime) -> Result<String, Error> {
    let app = config.application_id().as_str();
    let id = contract.id().as_str();
    let iat = crate::wire::unix_secs(now);
    let json = |v: &str| serde_json::Value::from(v).to_string();
    let header = format!(
        r#"{{"alg":"PS512","typ":"at+jwt","kid":{}}}"#,
        json(&format!("{id}_{app}_0"))
    );
    let payload = format!(
        r#"{{"sub":{},"iss":{},"aud":"cloud","iat":{iat},"exp":{}}}"#,
        json(app),
        json(id),
        iat + STORAGE_JWT_LIFETIME_SECS
    );
    Ok(digime_crypto::jws::sign(
        header.as_bytes(),
        payload.as_bytes(),
        contract.key(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use digime_crypto::PrivateKey;
    use serde_json::Value;
    use std::time::Duration;

    #[test]
    fn the_storage_jwt_has_the_cloud_header_and_claims_in_seconds() {
        let key = PrivateKey::generate().unwrap();
        let contract = Contract::new("contract-1", key.clone()).unwrap();
        let config = Config::new("test-app-ID").unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_477_093_934);
        let jwt = storage_jwt(&config, &contract, now).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        let decode = |s: &str| digime_crypto::b64url_decode(s).unwrap();
        assert_eq!(
            String::from_utf8(decode(parts[0])).unwrap(),
            r#"{"alg":"PS512","typ":"at+jwt","kid":"contract-1_test-app-ID_0"}"#
        );
        let claims: Value = serde_json::from_slice(&decode(parts[1])).unwrap();
        assert_eq!(
            claims,
            serde_json::json!({"sub":"test-app-ID","iss":"contract-1","aud":"cloud",
                "iat":1_795_477_093u64,"exp":1_795_477_153u64})
        );
        let signing_input = format!("{}.{}", parts[0], parts[1]);
        key.public_key()
            .verify_ps512(signing_input.as_bytes(), &decode(parts[2]))
            .unwrap();
    }
}
