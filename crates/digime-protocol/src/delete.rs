//! Deletion (`docs/protocol.md`, "Deletion"): DELETE `user` (the user, their library
//! and every token of theirs) and DELETE `permission-access/service/h:accountId` (one
//! account and its data). Both answer any 2xx with a JSON body or none, and neither is
//! retried: a retry after an answer that was lost would find the deletion done, and
//! report it failed (a 401 for the deleted user, a 404 for the account).

use crate::config::Contract;
use crate::error::Error;
use crate::read::user_request;
use crate::refresh::UserOperation;
use crate::retry::RetryPolicy;
use crate::sdk::Sdk;
use crate::token::UserAccessToken;
use crate::wire::{self, Body};
use http::{HeaderValue, Method, Request, Response, header};
use std::time::SystemTime;

/// A DELETE of `path`, with the account in the `accountId` header when there is one.
fn delete_request(
    sdk: &Sdk,
    contract: &Contract,
    token: &UserAccessToken,
    now: SystemTime,
    path: &str,
    account_id: Option<&HeaderValue>,
) -> Result<Request<Body>, Error> {
    let mut req = user_request(sdk, contract, token, now, Method::DELETE, path, Body::Empty)?;
    if let Some(account_id) = account_id {
        let headers = req.headers_mut();
        headers.insert(wire::ACCOUNT_ID, account_id.clone());
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    Ok(wire::accept_json(req))
}

/// DELETE `user` (a [`UserOperation`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct DeleteUser;

impl UserOperation for DeleteUser {
    type Output = ();

    fn method(&self) -> Method {
        Method::DELETE
    }

    fn retry_policy(&self, sdk: &Sdk) -> RetryPolicy {
        sdk.config().retry.unprocessed_only()
    }

    fn build(
        &self,
        sdk: &Sdk,
        contract: &Contract,
        token: &UserAccessToken,
        now: SystemTime,
    ) -> Result<Request<Body>, Error> {
        delete_request(sdk, contract, token, now, "user", None)
    }

    fn parse(&self, response: Response<Vec<u8>>) -> Result<(), Error> {
        wire::json_or_empty(response.body(), "delete user")
    }

    fn refresh_on_any_401(&self) -> bool {
        false
    }
}

/// DELETE `permission-access/service/h:accountId` (a [`UserOperation`]); the path is
/// literal, the account travels in the `accountId` header.
#[derive(Debug, Clone)]
pub struct DeleteAccount {
    account_id: HeaderValue,
}

impl DeleteAccount {
    /// Deletes `account_id` (not empty).
    pub fn new(account_id: &str) -> Result<Self, Error> {
        Ok(DeleteAccount {
            account_id: wire::account_id_header(account_id)?,
        })
    }
}

impl UserOperation for DeleteAccount {
    type Output = ();

    fn method(&self) -> Method {
        Method::DELETE
    }

    fn retry_policy(&self, sdk: &Sdk) -> RetryPolicy {
        sdk.config().retry.unprocessed_only()
    }

    fn build(
        &self,
        sdk: &Sdk,
        contract: &Contract,
        token: &UserAccessToken,
        now: SystemTime,
    ) -> Result<Request<Body>, Error> {
        let path = "permission-access/service/h:accountId";
        delete_request(sdk, contract, token, now, path, Some(&self.account_id))
    }

    fn parse(&self, response: Response<Vec<u8>>) -> Result<(), Error> {
        wire::json_or_empty(response.body(), "delete account")
    }

    fn refresh_on_any_401(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deletion_answer_is_json_or_nothing() {
        let answer = |body: &[u8]| Response::builder().status(200).body(body.to_vec()).unwrap();
        assert!(DeleteUser.parse(answer(b"")).is_ok());
        assert!(DeleteUser.parse(answer(br#"{"deleted":true}"#)).is_ok());
        assert!(matches!(
            DeleteUser.parse(answer(b"<html>")),
            Err(Error::Decode { .. })
        ));
        assert!(DeleteAccount::new("a\r\nb").is_err());
        assert!(matches!(
            DeleteAccount::new(""),
            Err(Error::InvalidInput(_))
        ));
    }
}
