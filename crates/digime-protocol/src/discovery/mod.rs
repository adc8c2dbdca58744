//! Discovery (`docs/protocol.md`, "Discovery"): the sources a user can onboard, the
//! countries, platforms and categories to filter them by, and each source's sample
//! data sets. Every call is signed with the contract alone and needs no user.
//!
//! | module | endpoint | flow |
//! |---|---|---|
//! | [`sources`] | POST `discovery/sources` | [`crate::ClientCall`] |
//! | [`facets`] | POST `discovery/countries`, `discovery/platforms`, `discovery/categories` | [`crate::ClientCall`] |
//! | [`sample_data`] | GET `permission-access/sample/datasets/{sourceId}` | [`crate::ClientCall`] |
//!
//! Answers are typed as far as the protocol documents them; whatever else the
//! service sends is kept in each value's `extra`, and never fails the parse.

pub mod facets;
pub mod sample_data;
pub mod sources;

pub use facets::{Category, Country, FacetQuery, Platform, QueryFacets, Resource};
pub use sample_data::{ReadSampleDataSets, SampleDataSet};
pub use sources::{
    Facet, PublishedStatus, QuerySources, SortOrder, Source, SourceFilter, SourceSearch,
    SourceService, SourcesPage, SourcesQuery,
};

use crate::config::Contract;
use crate::error::Error;
use crate::retry::RetryPolicy;
use crate::sdk::Sdk;
use crate::wire::{self, Body};
use http::{Method, Request};
use std::time::SystemTime;

/// The discovery POSTs are retried like GETs, as the official SDK retries them.
pub(crate) fn discovery_retry(sdk: &Sdk) -> RetryPolicy {
    let mut policy = sdk.config().retry.clone();
    if !policy.methods.contains(&Method::POST) {
        policy.methods.push(Method::POST);
    }
    policy
}

/// A discovery POST of `body` (`None`: no body, still `content-type: application/json`).
pub(crate) fn discovery_request(
    sdk: &Sdk,
    contract: &Contract,
    now: SystemTime,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<Request<Body>, Error> {
    let config = sdk.config();
    let jwt = wire::sign_request_jwt(config, contract, now, serde_json::Map::new())?;
    let body = body.map_or(Body::Empty, Body::Bytes);
    let req = wire::request(Method::POST, &config.api(path), Some(&jwt), body)?;
    Ok(wire::json_content_type(req))
}
