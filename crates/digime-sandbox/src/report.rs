//! The portability report: `GET /v1.7/export/{serviceType}/report?format=&from=&to=`,
//! an XML document of the health data in the user's library as the calling contract
//! sees it, streamed one file at a time.

use crate::catalogue::SourceType;
use crate::checks::ApiFailure;
use crate::demo::{DemoLibrary, civil_from_days};
use crate::library::library_for;
use crate::state::ProviderPush;
use crate::tokens::user_call;
use crate::{Shared, now_ms};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;
use std::sync::Arc;

/// The category ids whose accounts a report covers: Medical and Health & Fitness.
const HEALTH_GROUPS: [u64; 2] = [2, 4];

/// The report route.
pub(crate) fn routes() -> Router<Shared> {
    Router::new().route("/v1.7/export/{service_type}/report", get(report))
}

/// The bounds of a report, Unix s, inclusive; `None` is unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    from: Option<u64>,
    to: Option<u64>,
}

impl Window {
    fn holds(self, ms: u64) -> bool {
        let s = ms / 1000;
        self.from.is_none_or(|f| s >= f) && self.to.is_none_or(|t| s <= t)
    }
}

/// The query: `format=xml` (required), `from` and `to` Unix seconds, `undefined`, or
/// absent; `from` not after `to`. The first value of a parameter counts; others are
/// ignored.
fn parse_query(query: &str) -> Result<Window, ApiFailure> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    match get("format") {
        Some("xml") => {}
        Some(other) => {
            return Err(ApiFailure::bad_params(&format!(
                "format must be xml, not {other:?}"
            )));
        }
        None => return Err(ApiFailure::bad_params("format is required (xml)")),
    }
    let bound = |k: &str| -> Result<Option<u64>, ApiFailure> {
        match get(k) {
            None | Some("undefined") => Ok(None),
            Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => v
                .parse()
                .map(Some)
                .map_err(|_| ApiFailure::bad_params(&format!("{k} is out of range"))),
            Some(_) => Err(ApiFailure::bad_params(&format!(
                "{k} must be a Unix time in seconds, or undefined"
            ))),
        }
    };
    let w = Window {
        from: bound("from")?,
        to: bound("to")?,
    };
    if let (Some(f), Some(t)) = (w.from, w.to)
        && f > t
    {
        return Err(ApiFailure::bad_params("from must not be after to"));
    }
    Ok(w)
}

/// Text made safe for XML content and attribute values (characters XML 1.0 does not
/// allow become spaces).
fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Unix ms as `YYYY-MM-DDTHH:MM:SSZ`.
fn iso(ms: u64) -> String {
    let s = ms / 1000;
    let (y, m, d) = civil_from_days((s / 86_400) as i64);
    let t = s % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// `<field name="…">…</field>` for every scalar of `v` (nested objects by dotted
/// names, each element of an array under the array's name).
fn fields(out: &mut String, name: &str, v: &Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let n = if name.is_empty() {
                    k.clone()
                } else {
                    format!("{name}.{k}")
                };
                fields(out, &n, x);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| fields(out, name, x)),
        Value::Null => {}
        Value::String(s) => field(out, name, s),
        other => field(out, name, &other.to_string()),
    }
}

fn field(out: &mut String, name: &str, value: &str) {
    out.push_str(&format!(
        "<field name=\"{}\">{}</field>",
        xml_escape(name),
        xml_escape(value)
    ));
}

/// One piece of the report, rendered when the stream gets to it.
enum Piece {
    Head(String),
    /// Opens account `i` of the library.
    Open(usize),
    /// The entries of mapped file `i` in the window.
    File(usize),
    /// The entries of provider pushes.
    Pushes(Vec<ProviderPush>),
    Close,
    Tail,
}

fn render(lib: &DemoLibrary, window: Window, piece: Piece) -> String {
    let mut out = String::new();
    match piece {
        Piece::Head(head) => out = head,
        Piece::Open(i) => {
            if let Some(a) = lib.accounts.get(i) {
                let s = a.service;
                out.push_str(&format!(
                    "\n  <account id=\"{}\" reference=\"{}\" type=\"{}\" sourceId=\"{}\" serviceTypeId=\"{}\" serviceTypeName=\"{}\" serviceGroupId=\"{}\" serviceGroupName=\"{}\" sample=\"{}\"{}>",
                    xml_escape(&a.id),
                    xml_escape(&a.reference),
                    a.kind(),
                    s.source_id,
                    s.type_id,
                    xml_escape(s.type_name),
                    s.group_id,
                    xml_escape(s.group_name),
                    a.sample,
                    a.sample_set.as_ref().map_or(String::new(), |set| format!(
                        " sampleDataSet=\"{}\"",
                        xml_escape(set)
                    ))
                ));
            }
        }
        Piece::File(i) => {
            let Some(f) = lib.files.get(i) else {
                return out;
            };
            let objects: Vec<Value> =
                serde_json::from_slice(&lib.mapped_content(f, 0)).unwrap_or_default();
            for o in objects {
                let Some(at) = o.get("createddate").and_then(Value::as_u64) else {
                    continue;
                };
                if !window.holds(at) {
                    continue;
                }
                let id = o.get("id").and_then(Value::as_str).unwrap_or("");
                out.push_str(&format!(
                    "\n    <entry objectType=\"{}\" objectTypeId=\"{}\" file=\"{}\" id=\"{}\" createdDate=\"{at}\" time=\"{}\">",
                    xml_escape(f.object_type),
                    f.object_type_id,
                    xml_escape(&f.name),
                    xml_escape(id),
                    iso(at)
                ));
                if let Value::Object(m) = &o {
                    for (k, v) in m {
                        if !matches!(k.as_str(), "id" | "createddate" | "accountentityid") {
                            fields(&mut out, k, v);
                        }
                    }
                }
                out.push_str("</entry>");
            }
        }
        Piece::Pushes(pushes) => {
            for p in pushes.iter().filter(|p| window.holds(p.received)) {
                out.push_str(&format!(
                    "\n    <entry objectType=\"fhir\" id=\"{}\" createdDate=\"{}\" time=\"{}\"><field name=\"standard\">{}</field><field name=\"version\">{}</field><field name=\"resourceType\">{}</field><field name=\"size\">{}</field><field name=\"sha256\">{}</field></entry>",
                    xml_escape(&p.id),
                    p.received,
                    iso(p.received),
                    xml_escape(&p.standard),
                    xml_escape(&p.version),
                    xml_escape(&p.resource_type),
                    p.size,
                    p.sha256
                ));
            }
        }
        Piece::Close => out.push_str("\n  </account>"),
        Piece::Tail => out.push_str("\n</portabilityReport>\n"),
    }
    out
}

/// When the library a report shows last changed (the user's creation, an account
/// added, a push come), so that the same library gives the same report, byte for byte.
fn as_of(lib: &DemoLibrary, pushes: &[ProviderPush]) -> u64 {
    let accounts = lib.accounts.iter().map(|a| a.added_ms);
    let pushed = pushes.iter().map(|p| p.received);
    accounts
        .chain(pushed)
        .fold(lib.created_ms, u64::max)
        .min(now_ms())
}

/// `GET export/{serviceType}/report`, a user bearer → 200 `application/xml`.
async fn report(
    State(shared): State<Shared>,
    Path(service_type): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiFailure> {
    let (v, tok) = user_call(&shared, &headers)?;
    if service_type != "medmij" {
        return Err(ApiFailure::new(
            404,
            "ServiceTypeNotFound",
            format!("The service type ({service_type}) was not found"),
        ));
    }
    let window = parse_query(query.as_deref().unwrap_or(""))?;
    let client_id = v.contract.client_id();
    let (lib, pushes) = {
        let st = shared.lock();
        let lib = library_for(&shared, &st, &tok.user_id, Some(&client_id))
            .ok_or_else(|| ApiFailure::invalid_token("access_token", false))?;
        let pushes = st
            .provider_pushes
            .get(&tok.user_id)
            .cloned()
            .unwrap_or_default();
        (lib, pushes)
    };
    let bound =
        |b: Option<u64>, name: &str| b.map_or(String::new(), |b| format!(" {name}=\"{b}\""));
    let head = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<portabilityReport serviceType=\"medmij\" format=\"xml\"{}{} generated=\"{}\">",
        bound(window.from, "from"),
        bound(window.to, "to"),
        iso(as_of(&lib, &pushes))
    );
    let mut pieces = vec![Piece::Head(head)];
    for (i, a) in lib.accounts.iter().enumerate() {
        if !HEALTH_GROUPS.contains(&a.service.group_id) {
            continue;
        }
        pieces.push(Piece::Open(i));
        match a.service.source_type {
            SourceType::Pull => pieces.extend(
                lib.files
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| f.account == i)
                    .map(|(j, _)| Piece::File(j)),
            ),
            SourceType::Push => pieces.push(Piece::Pushes(
                pushes
                    .iter()
                    .filter(|p| p.account_id == a.id)
                    .cloned()
                    .collect(),
            )),
        }
        pieces.push(Piece::Close);
    }
    pieces.push(Piece::Tail);
    let lib = Arc::new(lib);
    let stream = futures_util::stream::iter(pieces)
        .map(move |piece| Ok::<Bytes, std::io::Error>(Bytes::from(render(&lib, window, piece))));
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/xml")],
        Body::from_stream(stream),
    )
        .into_response())
}

use futures_util::StreamExt;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_checked() {
        let w = |q: &str| parse_query(q).map_err(|e| e.message);
        assert_eq!(
            w("format=xml&from=undefined&to=undefined").unwrap(),
            Window {
                from: None,
                to: None
            }
        );
        assert_eq!(
            w("format=xml&from=10&to=20").unwrap(),
            Window {
                from: Some(10),
                to: Some(20)
            }
        );
        assert_eq!(
            w("format=xml&to=5").unwrap(),
            Window {
                from: None,
                to: Some(5)
            }
        );
        for bad in [
            "",
            "format=json",
            "format=xml&from=-1",
            "format=xml&from=1.5",
            "format=xml&to=",
            "format=xml&from=20&to=10",
            "format=xml&from=99999999999999999999999",
        ] {
            assert!(w(bad).is_err(), "{bad}");
        }
        assert!(
            Window {
                from: Some(1),
                to: Some(1)
            }
            .holds(1999)
        );
        assert!(
            !Window {
                from: Some(1),
                to: Some(1)
            }
            .holds(2000)
        );
    }

    #[test]
    fn xml_text_is_escaped() {
        assert_eq!(xml_escape("a<b>&\"'\u{1}"), "a&lt;b&gt;&amp;&quot;&apos; ");
        assert_eq!(iso(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso(1_735_689_600_000 + 3_661_000), "2025-01-01T01:01:01Z");
    }
}
