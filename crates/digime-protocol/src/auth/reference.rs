//! POST `reference` (`docs/protocol.md`, "References"): an opaque reference to an
//! account (or a storage), for an onboard URL, signed by the contract's key alone.

use crate::call::ClientOperation;
use crate::config::Contract;
use crate::error::Error;
use crate::sdk::Sdk;
use crate::wire::{self, Body};
use http::{Method, Request, Response};
use serde_json::{Map, json};
use std::time::SystemTime;

/// What a reference names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferenceKind {
    /// `accountId`: one of the user's accounts (the reauthorize page's `accountRef`).
    Account,
    /// `cloudId`: a provisional storage (the authorize page's `storageRef`).
    Storage,
}

impl ReferenceKind {
    fn as_str(self) -> &'static str {
        match self {
            ReferenceKind::Account => "accountId",
            ReferenceKind::Storage => "cloudId",
        }
    }
}

/// The reference call (a [`ClientOperation`]): `{"type", "value"}` in, `{"id"}` out.
#[derive(Debug, Clone)]
pub struct CreateReference {
    kind: ReferenceKind,
    value: String,
}

impl CreateReference {
    /// A reference to `value` (an account id or a storage id), which must not be empty.
    pub fn new(kind: ReferenceKind, value: impl Into<String>) -> Result<Self, Error> {
        let value = value.into();
        if value.is_empty() {
            return Err(Error::InvalidInput("a reference needs a value".into()));
        }
        Ok(CreateReference { kind, value })
    }
}

impl ClientOperation for CreateReference {
    type Output = String;

    fn method(&self) -> Method {
        Method::POST
    }

    fn build(
        &self,
        sdk: &Sdk,
        contract: &Contract,
        now: SystemTime,
    ) -> Result<Request<Body>, Error> {
        let config = sdk.config();
        let jwt = wire::sign_request_jwt(config, contract, now, Map::new())?;
        let body = json!({"type": self.kind.as_str(), "value": self.value});
        let bytes = serde_json::to_vec(&body).map_err(|e| Error::InvalidInput(e.to_string()))?;
        let req = wire::request(
            Method::POST,
            &config.api("reference"),
            Some(&jwt),
            Body::Bytes(bytes),
        )?;
        Ok(wire::accept_json(req))
    }

    fn parse(&self, response: Response<Vec<u8>>) -> Result<String, Error> {
        super::string_field(response.body(), "id", "reference")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::ClientCall;
    use crate::flow::{Flow, Step};
    use crate::{Config, PrivateKey};
    use serde_json::Value;

    #[test]
    fn the_body_names_the_account_and_the_answer_needs_an_id() {
        let sdk = Sdk::new(Config::new("app").unwrap());
        let contract = Contract::new("c1", PrivateKey::generate().unwrap()).unwrap();
        assert!(CreateReference::new(ReferenceKind::Account, "").is_err());
        let op = CreateReference::new(ReferenceKind::Account, "12_ab").unwrap();
        let mut flow = ClientCall::new(sdk, contract, op);
        let now = SystemTime::now();
        let Step::Send(req) = flow.poll(now) else {
            panic!("one request")
        };
        assert_eq!(req.uri(), "https://api.digi.me/v1.7/reference");
        let Body::Bytes(body) = req.body() else {
            panic!("a JSON body")
        };
        assert_eq!(
            serde_json::from_slice::<Value>(body).unwrap(),
            json!({"type": "accountId", "value": "12_ab"})
        );
        for bad in [&b"{}"[..], b"{\"id\":7}", b"{\"id\":\"\"}"] {
            let op = CreateReference::new(ReferenceKind::Storage, "s").unwrap();
            let resp = Response::builder().status(200).body(bad.to_vec()).unwrap();
            assert!(matches!(op.parse(resp), Err(Error::Decode { .. })));
        }
        flow.handle_response(
            Response::builder()
                .status(200)
                .body(br#"{"id":"ref_1"}"#.to_vec())
                .unwrap(),
        );
        let Step::Done(Ok(id)) = flow.poll(now) else {
            panic!("an id")
        };
        assert_eq!(id, "ref_1");
    }
}
