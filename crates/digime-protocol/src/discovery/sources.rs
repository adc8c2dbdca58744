//! POST `discovery/sources` (`docs/protocol.md`, "Discovery"): the sources a user can
//! onboard, filtered, searched, sorted and paged.

use super::{discovery_request, discovery_retry};
use crate::auth::SourceType;
use crate::call::ClientOperation;
use crate::config::Contract;
use crate::error::Error;
use crate::read::decode_json;
use crate::retry::RetryPolicy;
use crate::sdk::Sdk;
use crate::wire::Body;
use http::{Method, Request, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::time::SystemTime;

/// A source's publication status.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum PublishedStatus {
    /// `approved`: live.
    Approved,
    /// `pending`: not yet live.
    Pending,
    /// `deprecated`.
    Deprecated,
    /// `blocked`.
    Blocked,
    /// `sampledataonly`: only its sample data can be onboarded.
    SampleDataOnly,
    /// A status this SDK does not know.
    Other(String),
}

impl PublishedStatus {
    /// The wire value.
    pub fn as_str(&self) -> &str {
        match self {
            PublishedStatus::Approved => "approved",
            PublishedStatus::Pending => "pending",
            PublishedStatus::Deprecated => "deprecated",
            PublishedStatus::Blocked => "blocked",
            PublishedStatus::SampleDataOnly => "sampledataonly",
            PublishedStatus::Other(s) => s,
        }
    }
}

impl From<String> for PublishedStatus {
    fn from(s: String) -> Self {
        match s.as_str() {
            "approved" => PublishedStatus::Approved,
            "pending" => PublishedStatus::Pending,
            "deprecated" => PublishedStatus::Deprecated,
            "blocked" => PublishedStatus::Blocked,
            "sampledataonly" => PublishedStatus::SampleDataOnly,
            _ => PublishedStatus::Other(s),
        }
    }
}

impl From<PublishedStatus> for String {
    fn from(s: PublishedStatus) -> String {
        s.as_str().to_owned()
    }
}

/// Sort order of sources by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    /// A to Z.
    Ascending,
    /// Z to A.
    Descending,
}

/// Free-text search on one field each (`query.search`); within a field any of the
/// strings matches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceSearch {
    /// `name`.
    pub name: Vec<String>,
    /// `abbreviation`.
    pub abbreviation: Vec<String>,
    /// `alias`.
    pub alias: Vec<String>,
    /// `medicalCenter`.
    pub medical_center: Vec<String>,
    /// `practitioner`.
    pub practitioner: Vec<String>,
}

/// Filters (`query.filter`); every filter given must match, and within one any of
/// its values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceFilter {
    /// Source ids.
    pub id: Vec<u64>,
    /// Publication statuses; `None` asks for `approved` sources only, as the
    /// official SDK does.
    pub published_status: Option<Vec<PublishedStatus>>,
    /// Pull or push sources; `None` asks for pull sources only, as the official SDK
    /// does.
    pub source_type: Option<Vec<SourceType>>,
    /// Service ids.
    pub service_id: Vec<u64>,
    /// Country ids ([`crate::Sdk::query_countries`]).
    pub country_id: Vec<u64>,
    /// Category ids ([`crate::Sdk::query_categories`]).
    pub category_id: Vec<u64>,
    /// Platform ids ([`crate::Sdk::query_platforms`]).
    pub platform_id: Vec<u64>,
    /// One source id (`sourceId`).
    pub source_id: Option<u64>,
    /// Source references.
    pub reference: Vec<String>,
    /// Source aliases.
    pub alias: Vec<String>,
}

/// The options of [`crate::Sdk::query_sources`]; the default asks for the first page of
/// approved pull sources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourcesQuery {
    /// Page size.
    pub limit: Option<u32>,
    /// Page offset.
    pub offset: Option<u32>,
    /// Order by name.
    pub sort: Option<SortOrder>,
    /// Free text (`query.queryString`).
    pub query_string: Option<String>,
    /// Search per field.
    pub search: SourceSearch,
    /// The fields to return (`query.include`, e.g. `name`, `service.name`,
    /// `category`); `None`: all.
    pub include: Option<Vec<String>>,
    /// Filters.
    pub filter: SourceFilter,
}

fn ids(list: &[u64]) -> Value {
    json!({ "id": list })
}

impl SourcesQuery {
    /// The request body, in the official SDK's shape, with its defaults
    /// (`filter.type` `[1]`, `filter.publishedStatus` `["approved"]`) when not set.
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        if let Some(l) = self.limit {
            body.insert("limit".into(), l.into());
        }
        if let Some(o) = self.offset {
            body.insert("offset".into(), o.into());
        }
        if let Some(s) = self.sort {
            let name = match s {
                SortOrder::Ascending => "asc",
                SortOrder::Descending => "desc",
            };
            body.insert("sort".into(), json!({ "name": name }));
        }
        let mut query = Map::new();
        if let Some(q) = &self.query_string {
            query.insert("queryString".into(), q.as_str().into());
        }
        let mut search = Map::new();
        let s = &self.search;
        for (key, values) in [
            ("name", &s.name),
            ("abbreviation", &s.abbreviation),
            ("alias", &s.alias),
            ("medicalCenter", &s.medical_center),
            ("practitioner", &s.practitioner),
        ] {
            if !values.is_empty() {
                search.insert(key.into(), json!(values));
            }
        }
        if !search.is_empty() {
            query.insert("search".into(), search.into());
        }
        if let Some(include) = &self.include {
            query.insert("include".into(), json!(include));
        }
        let f = &self.filter;
        let mut filter = Map::new();
        if !f.id.is_empty() {
            filter.insert("id".into(), json!(f.id));
        }
        let statuses: Vec<&str> = match &f.published_status {
            Some(list) => list.iter().map(PublishedStatus::as_str).collect(),
            None => vec!["approved"],
        };
        for (key, list) in [
            ("service", &f.service_id),
            ("country", &f.country_id),
            ("category", &f.category_id),
            ("platform", &f.platform_id),
        ] {
            if !list.is_empty() {
                filter.insert(key.into(), ids(list));
            }
        }
        if let Some(id) = f.source_id {
            filter.insert("sourceId".into(), id.into());
        }
        if !f.reference.is_empty() {
            filter.insert("reference".into(), json!(f.reference));
        }
        if !f.alias.is_empty() {
            filter.insert("alias".into(), json!(f.alias));
        }
        let types: Vec<u64> = match &f.source_type {
            Some(list) => list
                .iter()
                .map(|t| match t {
                    SourceType::Pull => 1,
                    SourceType::Push => 2,
                })
                .collect(),
            None => vec![1],
        };
        filter.insert("type".into(), ids(&types));
        filter.insert("publishedStatus".into(), json!(statuses));
        query.insert("filter".into(), filter.into());
        body.insert("query".into(), query.into());
        body.into()
    }
}

/// A source's service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceService {
    /// The service id (an account's `serviceTypeId`); absent when the query's
    /// `include` did not ask for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
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

/// A country, platform or category a source belongs to, as a source lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facet {
    /// Its id; absent when the query's `include` did not ask for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// Its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A country's code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Its reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// A source: what the user picks to onboard (its `id` is the `service_id` of
/// [`crate::AuthorizeOptions`] and [`crate::OnboardServiceOptions`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// The source id.
    pub id: u64,
    /// Its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its publication status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_status: Option<PublishedStatus>,
    /// Its logo (`url`, `mimetype`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<super::Resource>,
    /// Its service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<SourceService>,
    /// Its settings (`json.authorisation.type`: `saas`, `sdk` or `none`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<Value>,
    /// Anything else the service sent (the fields `include` asked for).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Source {
    /// Its categories (from `category`, a list or one object; empty when absent).
    pub fn categories(&self) -> Vec<Facet> {
        self.facets("category")
    }

    /// Its countries (from `country`).
    pub fn countries(&self) -> Vec<Facet> {
        self.facets("country")
    }

    /// Its platforms (from `platform`).
    pub fn platforms(&self) -> Vec<Facet> {
        self.facets("platform")
    }

    /// Whether it is a push source (`type.id` 2: data is pushed to it).
    pub fn is_push(&self) -> bool {
        self.extra
            .get("type")
            .and_then(|t| t.get("id"))
            .and_then(Value::as_u64)
            == Some(2)
    }

    fn facets(&self, key: &str) -> Vec<Facet> {
        let one = |v: &Value| serde_json::from_value::<Facet>(v.clone()).ok();
        match self.extra.get(key) {
            Some(Value::Array(items)) => items.iter().filter_map(one).collect(),
            Some(v @ Value::Object(_)) => one(v).into_iter().collect(),
            _ => Vec::new(),
        }
    }
}

/// A page of sources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourcesPage {
    /// The sources of this page.
    pub data: Vec<Source>,
    /// The page size.
    pub limit: u64,
    /// The page's offset.
    pub offset: u64,
    /// How many sources match, over all pages.
    pub total: u64,
}

impl SourcesPage {
    /// The offset of the next page, if there is one.
    pub fn next_offset(&self) -> Option<u64> {
        let next = self.offset.saturating_add(self.data.len() as u64);
        (!self.data.is_empty() && next < self.total).then_some(next)
    }
}

/// POST `discovery/sources` (a [`ClientOperation`]).
#[derive(Debug, Clone)]
pub struct QuerySources {
    body: Vec<u8>,
}

impl QuerySources {
    /// The query of `options`.
    pub fn new(options: &SourcesQuery) -> Result<Self, Error> {
        let body =
            serde_json::to_vec(&options.body()).map_err(|e| Error::InvalidInput(e.to_string()))?;
        Ok(QuerySources { body })
    }
}

impl ClientOperation for QuerySources {
    type Output = SourcesPage;

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
        let body = Some(self.body.clone());
        discovery_request(sdk, contract, now, "discovery/sources", body)
    }

    fn parse(&self, response: Response<Vec<u8>>) -> Result<SourcesPage, Error> {
        decode_json(response.body(), "query sources")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_query_sends_the_official_defaults() {
        assert_eq!(
            SourcesQuery::default().body(),
            json!({"query":{"filter":{"type":{"id":[1]},"publishedStatus":["approved"]}}})
        );
    }

    #[test]
    fn every_option_lands_in_its_place() {
        let q = SourcesQuery {
            limit: Some(5),
            offset: Some(10),
            sort: Some(SortOrder::Descending),
            query_string: Some("fit".into()),
            search: SourceSearch {
                medical_center: vec!["Zuid".into()],
                ..Default::default()
            },
            include: Some(vec!["name".into()]),
            filter: SourceFilter {
                id: vec![16],
                published_status: Some(vec![PublishedStatus::Pending]),
                source_type: Some(vec![SourceType::Pull, SourceType::Push]),
                country_id: vec![3],
                source_id: Some(16),
                ..Default::default()
            },
        };
        assert_eq!(
            q.body(),
            json!({"limit":5,"offset":10,"sort":{"name":"desc"},
                "query":{"queryString":"fit","search":{"medicalCenter":["Zuid"]},"include":["name"],
                "filter":{"id":[16],"country":{"id":[3]},"sourceId":16,"type":{"id":[1,2]},
                "publishedStatus":["pending"]}}})
        );
    }

    #[test]
    fn sources_keep_what_they_do_not_type() {
        let page: SourcesPage = serde_json::from_str(
            r#"{"data":[{"id":16,"name":"Fitbit","publishedStatus":"approved",
              "resource":{"url":"https://x/logo.png","mimetype":"image/png"},
              "service":{"id":12,"name":"Fitbit","reference":"fitbit","extra":true},
              "json":{"authorisation":{"type":"saas"}},
              "category":[{"id":4,"name":"Health"}],"country":{"id":1,"code":"GB"},
              "type":{"id":2},"newField":[1]},
              {"id":7,"publishedStatus":"someday"}],
              "limit":2,"offset":0,"total":3}"#,
        )
        .unwrap();
        let s = &page.data[0];
        assert_eq!(s.service.as_ref().unwrap().extra["extra"], true);
        assert_eq!(s.categories()[0].name.as_deref(), Some("Health"));
        assert_eq!(s.countries()[0].code.as_deref(), Some("GB"));
        assert!(s.platforms().is_empty());
        assert!(s.is_push());
        assert_eq!(s.extra["newField"], json!([1]));
        assert_eq!(
            page.data[1].published_status,
            Some(PublishedStatus::Other("someday".into()))
        );
        assert_eq!(page.next_offset(), Some(2));
        assert!(serde_json::from_str::<SourcesPage>(r#"{"data":[]}"#).is_err());
    }
}
