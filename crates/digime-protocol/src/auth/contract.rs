//! GET `permission-access/contract` (`docs/protocol.md`, "Contract details"): what a
//! contract allows, signed by the contract's key alone.

use crate::call::ClientOperation;
use crate::config::Contract;
use crate::error::Error;
use crate::sdk::Sdk;
use crate::wire::{self, Body};
use http::{HeaderValue, Method, Request, Response, header};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::time::SystemTime;

/// Whether a contract reads a user's library or writes into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContractAccess {
    /// `"r"`: a read contract.
    #[serde(rename = "r")]
    Read,
    /// `"w"`: a write contract.
    #[serde(rename = "w")]
    Write,
}

/// The application a contract belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContractApplication {
    /// The application id.
    pub id: String,
    /// Its display name.
    pub name: String,
    /// Its resources (logos, links): any object.
    pub resources: Map<String, Value>,
    /// Its status, a number.
    pub status: serde_json::Number,
    /// Fields not listed here, passed through.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A contract's details. Every listed field is required and typed; fields not listed
/// are kept in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContractDetails {
    /// Read or write.
    pub access_type: ContractAccess,
    /// The application.
    pub application: ContractApplication,
    /// The contract's certificate.
    pub certificate: String,
    /// The schema version of the certificate.
    pub certificate_contract_schema_version: String,
    /// When the contract expires, Unix milliseconds (the unit is inferred; see
    /// `docs/protocol.md`).
    pub expiration_date: u64,
    /// The contract id.
    pub id: String,
    /// The partner the contract was issued to.
    pub partner_id: String,
    /// The contract type.
    #[serde(rename = "type")]
    pub contract_type: String,
    /// Fields not listed here, passed through.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ContractDetails {
    /// Parses the answer, strictly: a missing field or a wrong type is an error.
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(body).map_err(|e| Error::Decode {
            context: "contract details",
            detail: e.to_string(),
        })
    }
}

/// The contract-details call (a [`ClientOperation`]); run it with
/// [`crate::Sdk::contract_details`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadContractDetails;

impl ClientOperation for ReadContractDetails {
    type Output = ContractDetails;

    fn method(&self) -> Method {
        Method::GET
    }

    fn build(
        &self,
        sdk: &Sdk,
        contract: &Contract,
        now: SystemTime,
    ) -> Result<Request<Body>, Error> {
        let config = sdk.config();
        let jwt = wire::sign_request_jwt(config, contract, now, Map::new())?;
        let url = config.api("permission-access/contract");
        let mut req = wire::request(Method::GET, &url, Some(&jwt), Body::Empty)?;
        req.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Ok(wire::accept_json(req))
    }

    fn parse(&self, response: Response<Vec<u8>>) -> Result<ContractDetails, Error> {
        ContractDetails::parse(response.body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::ClientCall;
    use crate::flow::{Flow, Step};
    use crate::{Config, PrivateKey};
    use digime_crypto::jws;

    const EXAMPLE: &str = r#"{"accessType":"r","application":{"id":"app-7f3c9e21","name":"Example Health App","resources":{},"status":1},"certificate":"<string>","certificateContractSchemaVersion":"2.0","expirationDate":1767225600000,"id":"fJmX2Q8kVb","partnerId":"prt_1234","type":"<string>"}"#;

    #[test]
    fn the_request_is_a_client_call_and_the_answer_parses_strictly() {
        let sdk = Sdk::new(Config::new("app").unwrap());
        let contract = Contract::new("c1", PrivateKey::generate().unwrap()).unwrap();
        let mut flow = ClientCall::new(sdk, contract, ReadContractDetails);
        let now = SystemTime::now();
        let Step::Send(req) = flow.poll(now) else {
            panic!("one request")
        };
        assert_eq!(req.method(), Method::GET);
        assert_eq!(
            req.uri(),
            "https://api.digi.me/v1.7/permission-access/contract"
        );
        assert_eq!(req.headers()["content-type"], "application/json");
        let bearer = req.headers()["authorization"].to_str().unwrap();
        let jwt = bearer.strip_prefix("Bearer ").unwrap();
        let claims: Map<String, Value> =
            serde_json::from_slice(&jws::Compact::parse(jwt).unwrap().payload().unwrap()).unwrap();
        let mut names: Vec<_> = claims.keys().map(String::as_str).collect();
        names.sort();
        assert_eq!(names, ["client_id", "nonce", "timestamp"]);
        assert_eq!(claims["client_id"], "app_c1");

        let extra = EXAMPLE.replace(r#""type""#, r#""region":"eu","type""#);
        let resp = Response::builder()
            .status(200)
            .body(extra.into_bytes())
            .unwrap();
        flow.handle_response(resp);
        let Step::Done(Ok(details)) = flow.poll(now) else {
            panic!("parsed")
        };
        assert_eq!(details.access_type, ContractAccess::Read);
        assert_eq!(details.application.name, "Example Health App");
        assert_eq!(details.expiration_date, 1_767_225_600_000);
        assert_eq!(details.contract_type, "<string>");
        assert_eq!(details.extra["region"], "eu");
    }

    #[test]
    fn a_missing_or_mistyped_field_is_a_decode_error() {
        let parsed = ContractDetails::parse(EXAMPLE.as_bytes()).unwrap();
        assert_eq!(parsed.access_type, ContractAccess::Read);
        for bad in [
            EXAMPLE.replace(r#""accessType":"r","#, ""),
            EXAMPLE.replace(r#""accessType":"r""#, r#""accessType":"x""#),
            EXAMPLE.replace(r#""status":1"#, r#""status":"1""#),
            EXAMPLE.replace(
                r#""expirationDate":1767225600000"#,
                r#""expirationDate":"soon""#,
            ),
            EXAMPLE.replace(r#""partnerId":"prt_1234","#, ""),
            "[]".into(),
        ] {
            assert!(
                matches!(
                    ContractDetails::parse(bad.as_bytes()),
                    Err(Error::Decode { .. })
                ),
                "{bad}"
            );
        }
    }
}
