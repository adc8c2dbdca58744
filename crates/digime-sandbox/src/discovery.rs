//! The discovery calls of `/v1.7/`: `discovery/sources` (filters, search, include,
//! sort, paging), `discovery/countries`, `discovery/platforms`,
//! `discovery/categories`, and the sample data sets of a source
//! (`permission-access/sample/datasets/{sourceId}`). All take a client-only bearer;
//! the catalogue they show is [`crate::catalogue`].

use crate::Shared;
use crate::catalogue::{
    CATALOGUE, CATEGORIES, COUNTRIES, PLATFORMS, Service, SourceType, Status, service_by_source,
};
use crate::checks::{ApiFailure, verify_bearer};
use crate::common::{ApiResult, read_body};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

/// Most a discovery body may be (the client's are a few hundred bytes).
const MAX_BODY: usize = 64 * 1024;
/// Default and largest `limit` of `discovery/sources`.
const DEFAULT_LIMIT: u64 = 100;
const MAX_LIMIT: u64 = 1000;
/// Where the sandbox says its logos are (nothing is served there).
const ASSETS: &str = "https://assets.sandbox.invalid";

/// The discovery routes of `/v1.7/`.
pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1.7/discovery/sources", post(sources))
        .route(
            "/v1.7/discovery/countries",
            post(|s: State<Shared>, h: HeaderMap, b: Body| listing(s, h, b, Listing::Countries)),
        )
        .route(
            "/v1.7/discovery/platforms",
            post(|s: State<Shared>, h: HeaderMap, b: Body| listing(s, h, b, Listing::Platforms)),
        )
        .route(
            "/v1.7/discovery/categories",
            post(|s: State<Shared>, h: HeaderMap, b: Body| listing(s, h, b, Listing::Categories)),
        )
        .route(
            "/v1.7/permission-access/sample/datasets/{source}",
            get(sample_datasets),
        )
}

fn bad(detail: impl AsRef<str>) -> ApiFailure {
    ApiFailure::bad_params(detail.as_ref())
}

/// The body of a discovery call, read whole (bounded) before anything else, so the
/// connection stays usable whatever the answer; then the bearer. An empty body is
/// `{}`; a non-empty one must be `application/json` and a JSON object.
async fn checked_body(
    shared: &Shared,
    headers: &HeaderMap,
    body: Body,
) -> Result<Map<String, Value>, ApiFailure> {
    let bytes = read_body(body, MAX_BODY).await?;
    verify_bearer(shared, headers)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    if !crate::common::media_type_is(headers, "application/json") {
        return Err(bad("the body must be application/json"));
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(bad("the body must be a JSON object")),
    }
}

// ---------------------------------------------------------------------------
// Strict readers of the body's parts.

/// An object at `path` whose keys are all in `known`; `None` when absent.
fn object<'a>(
    v: Option<&'a Value>,
    path: &str,
    known: &[&str],
) -> Result<Option<&'a Map<String, Value>>, ApiFailure> {
    match v {
        None => Ok(None),
        Some(Value::Object(m)) => {
            if let Some(k) = m.keys().find(|k| !known.contains(&k.as_str())) {
                return Err(bad(format!("{path}.{k} is not a known field")));
            }
            Ok(Some(m))
        }
        Some(_) => Err(bad(format!("{path} must be an object"))),
    }
}

/// An array of non-negative integers at `path`.
fn ids(v: Option<&Value>, path: &str) -> Result<Option<Vec<u64>>, ApiFailure> {
    match v {
        None => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(Value::as_u64)
            .collect::<Option<Vec<u64>>>()
            .map(Some)
            .ok_or_else(|| bad(format!("{path} must be an array of ids (integers)"))),
        Some(_) => Err(bad(format!("{path} must be an array of ids (integers)"))),
    }
}

/// An array of strings at `path`.
fn strings(v: Option<&Value>, path: &str) -> Result<Option<Vec<String>>, ApiFailure> {
    match v {
        None => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().map(str::to_owned))
            .collect::<Option<Vec<String>>>()
            .map(Some)
            .ok_or_else(|| bad(format!("{path} must be an array of strings"))),
        Some(_) => Err(bad(format!("{path} must be an array of strings"))),
    }
}

/// `{"id": [n]}` at `path` (the nested filters).
fn id_filter(v: Option<&Value>, path: &str) -> Result<Option<Vec<u64>>, ApiFailure> {
    match object(v, path, &["id"])? {
        None => Ok(None),
        Some(m) => ids(m.get("id"), &format!("{path}.id")),
    }
}

/// A list filter: absent or empty → everything passes; else any value matches.
fn passes<T: PartialEq>(filter: &Option<Vec<T>>, have: &[T]) -> bool {
    filter
        .as_ref()
        .is_none_or(|want| want.is_empty() || want.iter().any(|w| have.contains(w)))
}

/// Case-insensitive substring.
fn contains(haystack: &str, needle: &str) -> bool {
    haystack.to_lowercase().contains(&needle.to_lowercase())
}

// ---------------------------------------------------------------------------
// Include: which fields of an object an answer keeps.

/// Keeps `id` and the `include`d fields of `full`. A name `a.b` keeps `a` with only its
/// field `b` (for a list, every element with only `b`); `a` keeps the whole of `a`. A
/// field the object does not have is left out.
fn pick(full: &Map<String, Value>, include: &[String]) -> Value {
    let mut out = Map::new();
    if let Some(id) = full.get("id") {
        out.insert("id".into(), id.clone());
    }
    // Whole fields first, so that `a` wins over `a.b`.
    for name in include.iter().filter(|n| !n.contains('.')) {
        if let Some(v) = full.get(name) {
            out.insert(name.clone(), v.clone());
        }
    }
    for name in include {
        let Some((head, sub)) = name.split_once('.') else {
            continue;
        };
        if include.iter().any(|n| n == head) {
            continue;
        }
        let Some(v) = full.get(head) else { continue };
        let part = |x: &Value, into: &mut Map<String, Value>| {
            if let Some(s) = x.get(sub) {
                into.insert(sub.to_owned(), s.clone());
            }
        };
        match v {
            // A sub-field that is not there selects nothing: no empty `{}` is sent.
            Value::Object(_) if v.get(sub).is_none() => {}
            Value::Array(items) if items.iter().all(|i| i.get(sub).is_none()) => {}
            Value::Object(_) => {
                let slot = out
                    .entry(head.to_owned())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(into) = slot {
                    part(v, into);
                }
            }
            Value::Array(items) => {
                let slot = out
                    .entry(head.to_owned())
                    .or_insert_with(|| Value::Array(vec![json!({}); items.len()]));
                if let Value::Array(into) = slot {
                    for (item, target) in items.iter().zip(into.iter_mut()) {
                        if let Value::Object(t) = target {
                            part(item, t);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Value::Object(out)
}

/// `query.include` at `path`: strings, each one of `known`.
fn include(
    v: Option<&Value>,
    path: &str,
    known: &[&str],
) -> Result<Option<Vec<String>>, ApiFailure> {
    let Some(list) = strings(v, path)? else {
        return Ok(None);
    };
    if let Some(unknown) = list.iter().find(|n| !known.contains(&n.as_str())) {
        return Err(bad(format!("{path}: {unknown:?} is not a known field")));
    }
    Ok(Some(list))
}

// ---------------------------------------------------------------------------
// discovery/sources

/// The fields `query.include` may name: those of the spec's list and the rest of the
/// sandbox's source shape.
const SOURCE_FIELDS: &[&str] = &[
    "id",
    "name",
    "reference",
    "alias",
    "abbreviation",
    "publishedStatus",
    "publishedDate",
    "onboardable",
    "dynamic",
    "json",
    "medicalCenter",
    "practitioner",
    "resource",
    "resource.url",
    "resource.mimetype",
    "type",
    "type.id",
    "type.name",
    "type.reference",
    "service",
    "service.id",
    "service.json",
    "service.name",
    "service.reference",
    "service.publishedDate",
    "service.publishedStatus",
    "category",
    "category.id",
    "category.json",
    "category.name",
    "category.reference",
    "country",
    "country.id",
    "country.json",
    "country.code",
    "country.name",
    "platform",
    "platform.id",
    "platform.json",
    "platform.name",
    "platform.reference",
];

/// The source as `discovery/sources` shows it, every field.
pub(crate) fn source_json(s: &Service) -> Map<String, Value> {
    let service_status = match s.source_type {
        // The providers share one service, MedMij, which is published.
        SourceType::Push => Status::Approved,
        SourceType::Pull => s.status,
    };
    let reference = s.key;
    let mut m = Map::new();
    m.insert("id".into(), json!(s.source_id));
    m.insert("name".into(), json!(s.name));
    m.insert("reference".into(), json!(reference));
    m.insert("alias".into(), json!(s.alias));
    if let Some(a) = s.abbreviation {
        m.insert("abbreviation".into(), json!(a));
    }
    m.insert("publishedStatus".into(), json!(s.status.name()));
    m.insert("publishedDate".into(), json!(s.published_ms));
    m.insert(
        "onboardable".into(),
        json!(s.onboardable() || s.sample_onboardable()),
    );
    m.insert("dynamic".into(), json!(s.dynamic));
    m.insert(
        "type".into(),
        json!({"id": s.source_type.id(), "name": s.source_type.name(), "reference": s.source_type.name()}),
    );
    m.insert(
        "service".into(),
        json!({"id": s.type_id, "name": s.type_name, "reference": s.type_ref,
               "publishedStatus": service_status.name(), "publishedDate": s.published_ms}),
    );
    let category: Vec<Value> = s
        .category()
        .map(|c| json!({"id": c.id, "name": c.name, "reference": c.reference}))
        .into_iter()
        .collect();
    m.insert("category".into(), Value::Array(category));
    let country: Vec<Value> = COUNTRIES
        .iter()
        .filter(|c| s.countries.contains(&c.id))
        .map(|c| json!({"id": c.id, "code": c.code, "name": c.name}))
        .collect();
    m.insert("country".into(), Value::Array(country));
    let platform: Vec<Value> = PLATFORMS
        .iter()
        .filter(|p| s.platforms.contains(&p.id))
        .map(|p| json!({"id": p.id, "name": p.name, "reference": p.reference}))
        .collect();
    m.insert("platform".into(), Value::Array(platform));
    m.insert(
        "resource".into(),
        json!({"url": format!("{ASSETS}/sources/{reference}/logo.png"), "mimetype": "image/png"}),
    );
    m.insert("json".into(), json!({"authorisation": {"type": "saas"}}));
    if s.source_type == SourceType::Push {
        m.insert("medicalCenter".into(), json!(s.medical_centers));
        m.insert("practitioner".into(), json!(s.practitioners));
    }
    m
}

/// What a `discovery/sources` body asks for, checked.
#[derive(Default)]
struct SourceQuery {
    limit: u64,
    offset: u64,
    desc: Option<bool>,
    query_string: Option<String>,
    search: Vec<(&'static str, Vec<String>)>,
    include: Option<Vec<String>>,
    id: Option<Vec<u64>>,
    status: Option<Vec<Status>>,
    type_id: Option<Vec<u64>>,
    service: Option<Vec<u64>>,
    country: Option<Vec<u64>>,
    category: Option<Vec<u64>>,
    platform: Option<Vec<u64>>,
    source_id: Option<u64>,
    reference: Option<Vec<String>>,
    alias: Option<Vec<String>>,
}

const SEARCH_FIELDS: [&str; 5] = [
    "name",
    "abbreviation",
    "alias",
    "medicalCenter",
    "practitioner",
];

fn parse_sources(body: &Map<String, Value>) -> Result<SourceQuery, ApiFailure> {
    if let Some(k) = body
        .keys()
        .find(|k| !["limit", "offset", "sort", "query"].contains(&k.as_str()))
    {
        return Err(bad(format!("{k} is not a known field")));
    }
    let mut q = SourceQuery {
        limit: DEFAULT_LIMIT,
        ..SourceQuery::default()
    };
    if let Some(v) = body.get("limit") {
        q.limit = v
            .as_u64()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| bad(format!("limit must be an integer 1..={MAX_LIMIT}")))?;
    }
    if let Some(v) = body.get("offset") {
        q.offset = v
            .as_u64()
            .ok_or_else(|| bad("offset must be an integer of at least 0"))?;
    }
    if let Some(sort) = object(body.get("sort"), "sort", &["name"])? {
        q.desc = Some(match sort.get("name").and_then(Value::as_str) {
            Some("asc") => false,
            Some("desc") => true,
            _ => return Err(bad("sort.name must be asc or desc")),
        });
    }
    let Some(query) = object(
        body.get("query"),
        "query",
        &["queryString", "search", "include", "filter"],
    )?
    else {
        return Ok(q);
    };
    q.query_string = match query.get("queryString") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(bad("query.queryString must be a string")),
    };
    if let Some(search) = object(query.get("search"), "query.search", &SEARCH_FIELDS)? {
        for field in SEARCH_FIELDS {
            if let Some(values) = strings(search.get(field), &format!("query.search.{field}"))? {
                q.search.push((field, values));
            }
        }
    }
    q.include = include(query.get("include"), "query.include", SOURCE_FIELDS)?;
    let Some(filter) = object(
        query.get("filter"),
        "query.filter",
        &[
            "id",
            "publishedStatus",
            "type",
            "service",
            "country",
            "category",
            "platform",
            "sourceId",
            "reference",
            "alias",
        ],
    )?
    else {
        return Ok(q);
    };
    q.id = ids(filter.get("id"), "query.filter.id")?;
    q.status = strings(filter.get("publishedStatus"), "query.filter.publishedStatus")?
        .map(|list| {
            list.iter()
                .map(|s| Status::parse(s))
                .collect::<Option<Vec<Status>>>()
                .ok_or_else(|| {
                    bad("query.filter.publishedStatus must name approved, pending, deprecated, blocked or sampledataonly")
                })
        })
        .transpose()?;
    q.type_id = id_filter(filter.get("type"), "query.filter.type")?;
    if q.type_id
        .as_ref()
        .is_some_and(|t| t.iter().any(|t| !matches!(t, 1 | 2)))
    {
        return Err(bad("query.filter.type.id must be 1 (pull) or 2 (push)"));
    }
    q.service = id_filter(filter.get("service"), "query.filter.service")?;
    q.country = id_filter(filter.get("country"), "query.filter.country")?;
    q.category = id_filter(filter.get("category"), "query.filter.category")?;
    q.platform = id_filter(filter.get("platform"), "query.filter.platform")?;
    q.source_id = match filter.get("sourceId") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| bad("query.filter.sourceId must be a source id (an integer)"))?,
        ),
    };
    q.reference = strings(filter.get("reference"), "query.filter.reference")?;
    q.alias = strings(filter.get("alias"), "query.filter.alias")?;
    Ok(q)
}

impl SourceQuery {
    fn matches(&self, s: &Service) -> bool {
        // Published sources only, unless the filter says which.
        let statuses = self
            .status
            .clone()
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| vec![Status::Approved]);
        let text = |field: &str| -> Vec<&str> {
            match field {
                "name" => vec![s.name],
                "abbreviation" => s.abbreviation.into_iter().collect(),
                "alias" => s.alias.to_vec(),
                "medicalCenter" => s.medical_centers.to_vec(),
                _ => s.practitioners.to_vec(),
            }
        };
        let search_ok = self.search.iter().all(|(field, values)| {
            values.is_empty()
                || values
                    .iter()
                    .any(|v| text(field).iter().any(|t| contains(t, v)))
        });
        let free_ok = self.query_string.as_deref().is_none_or(|q| {
            let mut hay = vec![s.name, s.type_name];
            hay.extend(s.abbreviation);
            hay.extend(s.alias);
            hay.extend(s.medical_centers);
            hay.iter().any(|h| contains(h, q))
        });
        statuses.contains(&s.status)
            && passes(&self.id, &[s.source_id])
            && passes(&self.type_id, &[s.source_type.id()])
            && passes(&self.service, &[s.type_id])
            && passes(&self.country, s.countries)
            && passes(&self.category, &[s.group_id])
            && passes(&self.platform, s.platforms)
            && self.source_id.is_none_or(|id| id == s.source_id)
            && passes(&self.reference, &[s.key.to_owned()])
            && passes(
                &self.alias,
                &s.alias.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>(),
            )
            && search_ok
            && free_ok
    }
}

/// `POST discovery/sources` → 200 `{"data", "limit", "offset", "total"}`.
async fn sources(State(shared): State<Shared>, headers: HeaderMap, body: Body) -> ApiResult {
    let body = checked_body(&shared, &headers, body).await?;
    let q = parse_sources(&body)?;
    let mut found: Vec<&Service> = CATALOGUE.iter().filter(|s| q.matches(s)).collect();
    match q.desc {
        None => found.sort_by_key(|s| s.source_id),
        Some(desc) => {
            found.sort_by(|a, b| {
                let by_name = a
                    .name
                    .to_lowercase()
                    .cmp(&b.name.to_lowercase())
                    .then(a.source_id.cmp(&b.source_id));
                if desc { by_name.reverse() } else { by_name }
            });
        }
    }
    let total = found.len();
    let data: Vec<Value> = found
        .into_iter()
        .skip(usize::try_from(q.offset).unwrap_or(usize::MAX))
        .take(usize::try_from(q.limit).unwrap_or(usize::MAX))
        .map(|s| {
            let full = source_json(s);
            match &q.include {
                Some(fields) => pick(&full, fields),
                None => Value::Object(full),
            }
        })
        .collect();
    Ok(
        axum::Json(json!({"data": data, "limit": q.limit, "offset": q.offset, "total": total}))
            .into_response(),
    )
}

// ---------------------------------------------------------------------------
// discovery/countries, platforms, categories

#[derive(Clone, Copy)]
enum Listing {
    Countries,
    Platforms,
    Categories,
}

impl Listing {
    fn fields(self) -> &'static [&'static str] {
        match self {
            Listing::Countries => &[
                "id",
                "name",
                "code",
                "resource",
                "resource.url",
                "resource.mimetype",
                "json",
            ],
            Listing::Platforms => &["id", "name", "reference"],
            Listing::Categories => &[
                "id",
                "name",
                "reference",
                "json",
                "categoryTypeId",
                "title",
                "subTitle",
                "resource",
                "resource.mimetype",
                "resource.url",
            ],
        }
    }

    fn all(self) -> Vec<Map<String, Value>> {
        let obj = |v: Value| match v {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        match self {
            Listing::Countries => COUNTRIES
                .iter()
                .map(|c| {
                    obj(json!({"id": c.id, "code": c.code, "name": c.name,
                        "resource": {"url": format!("{ASSETS}/flags/{}.png", c.code.to_lowercase()),
                                     "mimetype": "image/png"}}))
                })
                .collect(),
            Listing::Platforms => PLATFORMS
                .iter()
                .map(|p| obj(json!({"id": p.id, "name": p.name, "reference": p.reference})))
                .collect(),
            Listing::Categories => CATEGORIES
                .iter()
                .map(|c| {
                    obj(json!({"id": c.id, "name": c.name, "reference": c.reference,
                        "categoryTypeId": 1, "title": c.title, "subTitle": c.sub_title,
                        "resource": {"url": format!("{ASSETS}/categories/{}.svg", c.reference),
                                     "mimetype": "image/svg+xml"}}))
                })
                .collect(),
        }
    }
}

/// `POST discovery/{countries,platforms,categories}`, no body or `{"query"?:
/// {"include"?: [field], "filter"?: {"id"?: [n]}}}` → 200 `{"data": [...]}`.
async fn listing(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Body,
    what: Listing,
) -> ApiResult {
    let body = checked_body(&shared, &headers, body).await?;
    if let Some(k) = body.keys().find(|k| k.as_str() != "query") {
        return Err(bad(format!("{k} is not a known field")));
    }
    let query = object(body.get("query"), "query", &["include", "filter"])?;
    let include = include(
        query.and_then(|q| q.get("include")),
        "query.include",
        what.fields(),
    )?;
    let id = match object(query.and_then(|q| q.get("filter")), "query.filter", &["id"])? {
        Some(f) => ids(f.get("id"), "query.filter.id")?,
        None => None,
    };
    let data: Vec<Value> = what
        .all()
        .into_iter()
        .filter(|m| passes(&id, &[m.get("id").and_then(Value::as_u64).unwrap_or(0)]))
        .map(|m| match &include {
            Some(fields) => pick(&m, fields),
            None => Value::Object(m),
        })
        .collect();
    Ok(axum::Json(json!({ "data": data })).into_response())
}

// ---------------------------------------------------------------------------
// Sample data sets

/// `GET permission-access/sample/datasets/{sourceId}`, a client-only bearer → 200
/// `{"<set>": {"name", "description"}}` (`{}` for a source without sets); a source id
/// that is not decimal → 400 `ValidationErrors`, an unknown one → 404 `SourceNotFound`.
async fn sample_datasets(
    State(shared): State<Shared>,
    Path(source): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    verify_bearer(&shared, &headers)?;
    if source.is_empty() || !source.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("sourceId must be a source id (a decimal number)"));
    }
    let not_found = || {
        ApiFailure::new(
            404,
            "SourceNotFound",
            format!("The source ({source}) was not found"),
        )
    };
    let service = source
        .parse::<u64>()
        .ok()
        .and_then(service_by_source)
        .ok_or_else(not_found)?;
    let sets: Map<String, Value> = service
        .sample_sets
        .iter()
        .map(|s| {
            (
                s.id.to_owned(),
                json!({"name": s.name, "description": s.description}),
            )
        })
        .collect();
    Ok(axum::Json(Value::Object(sets)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_keeps_id_and_the_named_fields() {
        let full = source_json(service_by_source(16).unwrap());
        let fields: Vec<String> = ["service.name", "category", "country.code", "nope"]
            .map(String::from)
            .to_vec();
        let v = pick(&full, &fields);
        assert_eq!(v["id"], 16);
        assert_eq!(v["service"], json!({"name": "Fitbit"}));
        assert_eq!(v["category"], full["category"]);
        assert!(
            v["country"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c.as_object().unwrap().len() == 1)
        );
        assert_eq!(v.as_object().unwrap().len(), 4);
        // A whole field wins over one of its parts.
        let v = pick(&full, &["service.name".into(), "service".into()]);
        assert_eq!(v["service"], full["service"]);
    }
}
