//! GET `permission-access/sample/datasets/{sourceId}` (`docs/protocol.md`,
//! "Discovery"): a source's sample data sets, to onboard instead of real data
//! ([`crate::auth::SampleData`]).

use crate::call::ClientOperation;
use crate::config::Contract;
use crate::error::Error;
use crate::read::decode_json;
use crate::sdk::Sdk;
use crate::wire::{self, Body};
use http::{Method, Request, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::time::SystemTime;

/// A sample data set (its id is its key in the answer, the `data_set` of
/// [`crate::auth::SampleData`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleDataSet {
    /// Its name.
    pub name: String,
    /// What it holds.
    #[serde(default)]
    pub description: String,
    /// Anything else the service sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// GET `permission-access/sample/datasets/{sourceId}` (a [`ClientOperation`]).
#[derive(Debug, Clone, Copy)]
pub struct ReadSampleDataSets {
    source_id: u64,
}

impl ReadSampleDataSets {
    /// The sample data sets of `source_id`.
    pub fn new(source_id: u64) -> Self {
        ReadSampleDataSets { source_id }
    }
}

impl ClientOperation for ReadSampleDataSets {
    type Output = BTreeMap<String, SampleDataSet>;

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
        let path = format!("permission-access/sample/datasets/{}", self.source_id);
        let req = wire::request(Method::GET, &config.api(&path), Some(&jwt), Body::Empty)?;
        Ok(wire::accept_json(req))
    }

    fn parse(&self, response: Response<Vec<u8>>) -> Result<Self::Output, Error> {
        decode_json(response.body(), "sample data sets")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_sets_are_a_map_and_may_be_empty() {
        let answer = |body: &str| {
            Response::builder()
                .status(200)
                .body(body.as_bytes().to_vec())
                .unwrap()
        };
        let op = ReadSampleDataSets::new(16);
        let sets = op
            .parse(answer(
                r#"{"default":{"description":"","name":"default"},"test":{"name":"test","n":2}}"#,
            ))
            .unwrap();
        assert_eq!(sets.keys().collect::<Vec<_>>(), ["default", "test"]);
        assert_eq!(sets["test"].extra["n"], 2);
        assert!(op.parse(answer("{}")).unwrap().is_empty());
        assert!(op.parse(answer("[]")).is_err());
    }
}
