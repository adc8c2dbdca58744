//! GET `permission-access/revoke/h:accountId` (`docs/protocol.md`, "Revoke"): the page
//! where the user withdraws the contract's permission to one account.

use crate::config::Contract;
use crate::error::Error;
use crate::read::user_request;
use crate::refresh::UserOperation;
use crate::sdk::Sdk;
use crate::token::UserAccessToken;
use crate::wire::{self, Body, header_value};
use http::{HeaderName, HeaderValue, Method, Request, Response};
use std::time::SystemTime;

/// `h:accountId` is literal: the account travels in the `accountId` header.
const PATH: &str = "permission-access/revoke/h:accountId";

/// The revoke page to send the user to (`location`). `Debug` hides its query (its
/// code).
#[derive(Clone, PartialEq, Eq)]
pub struct RevokeUrl {
    /// The page's URL.
    pub location: String,
}

impl std::fmt::Debug for RevokeUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevokeUrl")
            .field("location", &super::redacted_url(&self.location))
            .finish()
    }
}

/// The revoke call (a [`UserOperation`]); its result is the page's location.
#[derive(Debug, Clone)]
pub struct RevokeAccountPermission {
    account_id: HeaderValue,
    redirect_uri: HeaderValue,
}

impl RevokeAccountPermission {
    /// Revokes `account_id` (not empty); the user returns to `redirect_uri`.
    pub fn new(account_id: &str, redirect_uri: &str) -> Result<Self, Error> {
        Ok(RevokeAccountPermission {
            account_id: wire::account_id_header(account_id)?,
            redirect_uri: header_value("redirect URI", redirect_uri)?,
        })
    }
}

impl UserOperation for RevokeAccountPermission {
    type Output = RevokeUrl;

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
        let mut req = user_request(sdk, contract, token, now, Method::GET, PATH, Body::Empty)?;
        let headers = req.headers_mut();
        headers.insert(wire::ACCOUNT_ID, self.account_id.clone());
        headers.insert(
            HeaderName::from_static("redirecturi"),
            self.redirect_uri.clone(),
        );
        Ok(wire::accept_json(req))
    }

    /// `{"location": "<URL>"}`: a missing or non-string location is an error.
    fn parse(&self, response: Response<Vec<u8>>) -> Result<RevokeUrl, Error> {
        let location = super::string_field(response.body(), "location", "revoke")?;
        Ok(RevokeUrl { location })
    }

    fn refresh_on_any_401(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_are_checked_before_any_io() {
        assert!(matches!(
            RevokeAccountPermission::new("12_a\n", "https://app.example/r"),
            Err(Error::InvalidInput(_))
        ));
        let op = RevokeAccountPermission::new("12_a", "https://app.example/r").unwrap();
        for bad in [&b"{}"[..], b"{\"location\":1}", b"not json", b""] {
            let resp = Response::builder().status(201).body(bad.to_vec()).unwrap();
            assert!(matches!(op.parse(resp), Err(Error::Decode { .. })));
        }
        let resp = Response::builder()
            .status(201)
            .body(br#"{"location":"https://x/revoke?c=1"}"#.to_vec())
            .unwrap();
        let url = op.parse(resp).unwrap();
        assert_eq!(url.location, "https://x/revoke?c=1");
        assert_eq!(
            format!("{url:?}"),
            r#"RevokeUrl { location: "https://x/revoke?[redacted]" }"#
        );
    }
}
