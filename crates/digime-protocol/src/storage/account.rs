//! POST `storage` and GET `storage` (`docs/protocol.md`, "Storage"): a provisional
//! storage made with the contract alone, and the user's storage.

use crate::call::ClientOperation;
use crate::config::{Contract, StorageId};
use crate::error::Error;
use crate::read::{decode_json, user_request};
use crate::refresh::UserOperation;
use crate::retry::RetryPolicy;
use crate::sdk::Sdk;
use crate::token::UserAccessToken;
use crate::wire::{self, Body};
use http::{Method, Request, Response};
use serde::{Deserialize, Serialize};
use std::time::SystemTime;

/// A storage: its id (the cloud calls' `storageId`) and the id of the key it is bound
/// to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Storage {
    /// The storage id.
    pub id: StorageId,
    /// The key id (`{contractId}_{applicationId}_0` in the sandbox; opaque).
    pub kid: String,
}

fn parse_storage(response: &Response<Vec<u8>>, context: &'static str) -> Result<Storage, Error> {
    let storage: Storage = decode_json(response.body(), context)?;
    if storage.id.as_str().is_empty() || storage.kid.is_empty() {
        return Err(Error::Decode {
            context,
            detail: "the storage has no id or no kid".into(),
        });
    }
    Ok(storage)
}

/// POST `storage` (a [`ClientOperation`]), no body: a new provisional storage of the
/// application, to be linked to a user at authorization
/// ([`crate::AuthorizeOptions::storage_id`]). Never retried: a retry after a lost
/// answer would make a second storage.
#[derive(Debug, Clone, Copy, Default)]
pub struct CreateProvisionalStorage;

impl ClientOperation for CreateProvisionalStorage {
    type Output = Storage;

    fn method(&self) -> Method {
        Method::POST
    }

    fn retry_policy(&self, sdk: &Sdk) -> RetryPolicy {
        sdk.config().retry.unprocessed_only()
    }

    fn build(
        &self,
        sdk: &Sdk,
        contract: &Contract,
        now: SystemTime,
    ) -> Result<Request<Body>, Error> {
        let config = sdk.config();
        let jwt = wire::sign_request_jwt(config, contract, now, serde_json::Map::new())?;
        let req = wire::request(
            Method::POST,
            &config.api("storage"),
            Some(&jwt),
            Body::Empty,
        )?;
        Ok(wire::json_content_type(req))
    }

    fn parse(&self, response: Response<Vec<u8>>) -> Result<Storage, Error> {
        parse_storage(&response, "create provisional storage")
    }
}

/// GET `storage` (a [`UserOperation`]): the user's storage. Unlike the official SDK,
/// a token refreshed on the way is returned ([`crate::Authed`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadUserStorage;

impl UserOperation for ReadUserStorage {
    type Output = Storage;

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
        let req = user_request(
            sdk,
            contract,
            token,
            now,
            Method::GET,
            "storage",
            Body::Empty,
        )?;
        Ok(wire::json_content_type(req))
    }

    fn parse(&self, response: Response<Vec<u8>>) -> Result<Storage, Error> {
        parse_storage(&response, "user storage")
    }

    fn refresh_on_any_401(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storage_needs_an_id_and_a_kid() {
        let answer = |body: &str| {
            Response::builder()
                .status(201)
                .body(body.as_bytes().to_vec())
                .unwrap()
        };
        let s = CreateProvisionalStorage
            .parse(answer(r#"{"id":"st_1","kid":"k","extra":1}"#))
            .unwrap();
        assert_eq!((s.id.as_str(), s.kid.as_str()), ("st_1", "k"));
        for bad in [
            r#"{"id":"st_1"}"#,
            r#"{"id":"","kid":"k"}"#,
            r#"{"kid":"k"}"#,
            "[]",
            "",
        ] {
            assert!(
                matches!(
                    ReadUserStorage.parse(answer(bad)),
                    Err(Error::Decode { .. })
                ),
                "{bad}"
            );
        }
    }
}
