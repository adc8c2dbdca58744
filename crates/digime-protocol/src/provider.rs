//! POST `permission-access/import/h:accountId/{standard}/{version}` (`docs/protocol.md`,
//! "Provider push"): a FHIR resource pushed to a health provider, through the push
//! account the user authorized (`sourceType=push`; the callback's `accountReference`
//! names it among the user's accounts).

use crate::config::Contract;
use crate::error::Error;
use crate::read::user_request;
use crate::refresh::UserOperation;
use crate::retry::RetryPolicy;
use crate::sdk::Sdk;
use crate::token::UserAccessToken;
use crate::wire::{self, Body};
use http::{HeaderValue, Method, Request, Response};
use std::time::SystemTime;

/// The FHIR version of a provider push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FhirVersion {
    /// `stu3`.
    #[default]
    Stu3,
    /// `3.0.2`, the same release by its number.
    V3_0_2,
}

impl FhirVersion {
    /// The path segment.
    pub fn as_str(self) -> &'static str {
        match self {
            FhirVersion::Stu3 => "stu3",
            FhirVersion::V3_0_2 => "3.0.2",
        }
    }
}

/// The provider push (a [`UserOperation`]): the resource as JSON, the account in the
/// `accountId` header. Never retried (a POST); refreshes on 401 `InvalidToken` or a
/// 401 that is not a standard error.
#[derive(Debug, Clone)]
pub struct PushToProvider {
    account_id: HeaderValue,
    version: FhirVersion,
    body: Vec<u8>,
}

impl PushToProvider {
    /// Pushes `resource` (a JSON object, e.g. a FHIR `Bundle`) to the provider of
    /// `account_id`, as FHIR `version`.
    pub fn new(
        account_id: &str,
        version: FhirVersion,
        resource: &serde_json::Value,
    ) -> Result<Self, Error> {
        let account_id = wire::account_id_header(account_id)?;
        if !resource.is_object() {
            return Err(Error::InvalidInput(
                "a provider push takes a JSON object (a FHIR resource)".into(),
            ));
        }
        let body = serde_json::to_vec(resource).map_err(|e| Error::InvalidInput(e.to_string()))?;
        Ok(PushToProvider {
            account_id,
            version,
            body,
        })
    }
}

impl UserOperation for PushToProvider {
    type Output = ();

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
        token: &UserAccessToken,
        now: SystemTime,
    ) -> Result<Request<Body>, Error> {
        let path = format!(
            "permission-access/import/h:accountId/fhir/{}",
            self.version.as_str()
        );
        let body = Body::Bytes(self.body.clone());
        let mut req = user_request(sdk, contract, token, now, Method::POST, &path, body)?;
        req.headers_mut()
            .insert(wire::ACCOUNT_ID, self.account_id.clone());
        Ok(wire::accept_json(req))
    }

    fn parse(&self, response: Response<Vec<u8>>) -> Result<(), Error> {
        wire::json_or_empty(response.body(), "push to provider")
    }

    fn refresh_on_any_401(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_objects_and_sendable_accounts_are_pushed() {
        let bundle = json!({"resourceType":"Bundle","type":"transaction"});
        assert!(PushToProvider::new("acc-fhir-9", FhirVersion::Stu3, &bundle).is_ok());
        assert!(PushToProvider::new("", FhirVersion::Stu3, &bundle).is_err());
        assert!(PushToProvider::new("a\nb", FhirVersion::Stu3, &bundle).is_err());
        assert!(PushToProvider::new("acc", FhirVersion::V3_0_2, &json!([bundle])).is_err());
        assert_eq!(FhirVersion::V3_0_2.as_str(), "3.0.2");
    }
}
