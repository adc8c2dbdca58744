//! POST `discovery/countries`, `discovery/platforms` and `discovery/categories`
//! (`docs/protocol.md`, "Discovery"): the lists that filter sources. One operation,
//! [`QueryFacets`], for the three: they take the same query and answer `{"data": […]}`.

use super::{discovery_request, discovery_retry};
use crate::call::ClientOperation;
use crate::config::Contract;
use crate::error::Error;
use crate::read::decode_json;
use crate::retry::RetryPolicy;
use crate::sdk::Sdk;
use crate::wire::Body;
use http::{Method, Request, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::marker::PhantomData;
use std::time::SystemTime;

/// An image of a country, category or source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// Where it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Its MIME type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mimetype: Option<String>,
    /// Anything else the service sent (`resize`, `type`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A country.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Country {
    /// Its id (for [`super::SourceFilter::country_id`]).
    pub id: u64,
    /// Its code, e.g. `GB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Resource>,
    /// Anything else the service sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// Its id (for [`super::SourceFilter::platform_id`]).
    pub id: u64,
    /// Its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Anything else the service sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Category {
    /// Its id (for [`super::SourceFilter::category_id`]).
    pub id: u64,
    /// Its kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category_type_id: Option<u64>,
    /// Its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Its image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Resource>,
    /// Its title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Its subtitle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_title: Option<String>,
    /// Anything else the service sent (`expandedTitle`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The options of the country, platform and category queries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FacetQuery {
    /// The fields to return (`query.include`); `None`: all.
    pub include: Option<Vec<String>>,
    /// Only these ids (`query.filter.id`).
    pub id: Option<Vec<u64>>,
}

impl FacetQuery {
    /// The request body, or none at all for an empty query (as the official SDK
    /// sends it).
    pub fn body(&self) -> Option<Value> {
        if self.include.is_none() && self.id.is_none() {
            return None;
        }
        let mut query = Map::new();
        if let Some(include) = &self.include {
            query.insert("include".into(), json!(include));
        }
        if let Some(id) = &self.id {
            query.insert("filter".into(), json!({ "id": id }));
        }
        Some(json!({ "query": query }))
    }
}

/// What a facet query lists: its path and its item type.
pub trait FacetKind {
    /// The item.
    type Item: DeserializeOwned;
    /// `discovery/countries`, ….
    const PATH: &'static str;
    /// For errors.
    const CONTEXT: &'static str;
}

impl FacetKind for Country {
    type Item = Country;
    const PATH: &'static str = "discovery/countries";
    const CONTEXT: &'static str = "query countries";
}

impl FacetKind for Platform {
    type Item = Platform;
    const PATH: &'static str = "discovery/platforms";
    const CONTEXT: &'static str = "query platforms";
}

impl FacetKind for Category {
    type Item = Category;
    const PATH: &'static str = "discovery/categories";
    const CONTEXT: &'static str = "query categories";
}

/// POST `discovery/{countries,platforms,categories}` (a [`ClientOperation`]):
/// `QueryFacets<Country>` and so on.
pub struct QueryFacets<K> {
    body: Option<Vec<u8>>,
    kind: PhantomData<fn() -> K>,
}

impl<K> std::fmt::Debug for QueryFacets<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryFacets")
            .field("kind", &std::any::type_name::<K>())
            .finish_non_exhaustive()
    }
}

impl<K: FacetKind> QueryFacets<K> {
    /// The query of `options`.
    pub fn new(options: &FacetQuery) -> Result<Self, Error> {
        let body = match options.body() {
            Some(b) => {
                Some(serde_json::to_vec(&b).map_err(|e| Error::InvalidInput(e.to_string()))?)
            }
            None => None,
        };
        Ok(QueryFacets {
            body,
            kind: PhantomData,
        })
    }
}

#[derive(Deserialize)]
struct Data<T> {
    data: Vec<T>,
}

impl<K: FacetKind> ClientOperation for QueryFacets<K> {
    type Output = Vec<K::Item>;

    fn method(&self) -> Method {
        Method::POST
    }

    fn retry_policy(&self, sdk: &Sdk) -> RetryPolicy {
        discovery_retry(sdk)
    }

    fn build(
        &self,
        sdk: &Sdk,
        contract: &Contract,
        now: SystemTime,
    ) -> Result<Request<Body>, Error> {
        discovery_request(sdk, contract, now, K::PATH, self.body.clone())
    }

    fn parse(&self, response: Response<Vec<u8>>) -> Result<Vec<K::Item>, Error> {
        let data: Data<K::Item> = decode_json(response.body(), K::CONTEXT)?;
        Ok(data.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_query_has_no_body() {
        assert_eq!(FacetQuery::default().body(), None);
        let q = FacetQuery {
            include: Some(vec!["name".into()]),
            id: Some(vec![1, 2]),
        };
        assert_eq!(
            q.body(),
            Some(json!({"query":{"include":["name"],"filter":{"id":[1,2]}}}))
        );
    }

    #[test]
    fn facets_parse_with_their_extras() {
        let answer = |body: &str| {
            Response::builder()
                .status(200)
                .body(body.as_bytes().to_vec())
                .unwrap()
        };
        let op = QueryFacets::<Country>::new(&FacetQuery::default()).unwrap();
        let countries = op
            .parse(answer(
                r#"{"data":[{"id":1,"code":"GB","name":"United Kingdom","x":1}],"more":true}"#,
            ))
            .unwrap();
        assert_eq!(countries[0].code.as_deref(), Some("GB"));
        assert_eq!(countries[0].extra["x"], 1);
        let op = QueryFacets::<Category>::new(&FacetQuery::default()).unwrap();
        let c = op
            .parse(answer(
                r#"{"data":[{"id":4,"categoryTypeId":2,"subTitle":"s","expandedTitle":"e"}]}"#,
            ))
            .unwrap();
        assert_eq!(
            (c[0].category_type_id, c[0].sub_title.as_deref()),
            (Some(2), Some("s"))
        );
        assert!(op.parse(answer(r#"{"items":[]}"#)).is_err());
        assert!(op.parse(answer(r#"{"data":[{"name":"no id"}]}"#)).is_err());
    }
}
