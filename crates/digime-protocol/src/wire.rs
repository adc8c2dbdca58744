//! Requests and responses as plain data, request JWT signing (docs/protocol.md, "Request JWTs") and the
//! conversion of error responses (docs/protocol.md, "Errors").

use crate::config::{Config, Contract};
use crate::error::{ApiError, Error, ErrorCode, TransportError, TransportErrorKind};
use crate::upload::Upload;
use digime_crypto::random;
use http::{HeaderValue, Method, Request, Response, header};
use serde_json::{Map, Value};
use std::time::{Duration, SystemTime};

/// The body of an outgoing request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// No body.
    Empty,
    /// These bytes.
    Bytes(Vec<u8>),
    /// The caller's upload, streamed by the driver from its first byte (it is rewound
    /// before every attempt) through a fresh [`Upload::encoder`], with a
    /// `Content-Length` of [`Upload::body_len`] of the reader's length. Only push
    /// operations produce it; see [`crate::upload`].
    Upload(Upload),
}

/// The largest non-streamed response body the SDK reads (JSON answers, key sets).
pub const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// The slowest a streamed response body may come, on average over each window of
/// time spent waiting for it (docs/protocol.md, "Timeouts"): 1 KiB a second.
pub const MIN_BYTES_PER_SECOND: u64 = 1024;

/// Keeps a streamed body (a file download) above [`MIN_BYTES_PER_SECOND`]: a server
/// that sends a byte just before every idle timeout would otherwise keep the call
/// alive forever. A driver records each read with the time it waited for it, so a
/// slow sink of the caller's never counts against the server. Pure: no clock.
#[derive(Debug, Clone)]
pub struct SlowBodyGuard {
    window: Duration,
    waited: Duration,
    bytes: u64,
}

impl SlowBodyGuard {
    /// A guard that judges every `window` of waiting (the drivers use their idle
    /// timeout).
    pub fn new(window: Duration) -> Self {
        SlowBodyGuard {
            window,
            waited: Duration::ZERO,
            bytes: 0,
        }
    }

    /// Records `bytes` read after waiting `waited` for them: a
    /// [`TransportErrorKind::Timeout`] once a whole window brought less than the
    /// floor.
    pub fn record(&mut self, bytes: usize, waited: Duration) -> Result<(), TransportError> {
        self.bytes = self.bytes.saturating_add(bytes as u64);
        self.waited = self.waited.saturating_add(waited);
        if self.waited < self.window {
            return Ok(());
        }
        let floor = MIN_BYTES_PER_SECOND as f64 * self.waited.as_secs_f64();
        if (self.bytes as f64) < floor {
            return Err(TransportError::new(
                TransportErrorKind::Timeout,
                format!(
                    "{} bytes in {:?}: slower than {MIN_BYTES_PER_SECOND} bytes a second",
                    self.bytes, self.waited
                ),
            ));
        }
        (self.waited, self.bytes) = (Duration::ZERO, 0);
        Ok(())
    }
}

/// The fixed JOSE header of request JWTs: `{"alg":"PS512","typ":"JWT"}`.
pub const REQUEST_JWT_HEADER: &[u8] = br#"{"alg":"PS512","typ":"JWT"}"#;

/// Unix milliseconds of `now`.
pub fn unix_millis(now: SystemTime) -> u64 {
    now.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Unix seconds of `now` (the storage JWT, the report's bounds).
pub fn unix_secs(now: SystemTime) -> u64 {
    now.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Signs a request JWT whose payload is `claims` plus `client_id`, `nonce` and
/// `timestamp` (ms). Claims serialise in alphabetical order, as the official SDK's do.
pub fn sign_request_jwt(
    config: &Config,
    contract: &Contract,
    now: SystemTime,
    mut claims: Map<String, Value>,
) -> Result<String, Error> {
    claims.insert(
        "client_id".into(),
        Value::String(contract.client_id(config.application_id())),
    );
    claims.insert("nonce".into(), Value::String(random::nonce()?));
    claims.insert("timestamp".into(), Value::from(unix_millis(now)));
    let payload = serde_json::to_vec(&claims).map_err(|e| Error::InvalidInput(e.to_string()))?;
    Ok(digime_crypto::jws::sign(
        REQUEST_JWT_HEADER,
        &payload,
        contract.key(),
    )?)
}

/// The `{"agent":{"sdk":{...}}}` body part.
pub fn agent_json(config: &Config) -> Value {
    serde_json::json!({
        "sdk": {
            "name": config.agent.name,
            "version": config.agent.version,
            "meta": { "os": std::env::consts::OS, "arch": std::env::consts::ARCH }
        }
    })
}

/// Starts a request with the bearer JWT and, for JSON bodies, the content type.
pub fn request(
    method: Method,
    url: &str,
    bearer: Option<&str>,
    body: Body,
) -> Result<Request<Body>, Error> {
    let mut b = Request::builder().method(method).uri(url);
    if let Some(jwt) = bearer {
        // Sensitive: the JWT carries the access token, and `Debug` of the request (a
        // `Step::Send`) must not show it.
        let mut value = HeaderValue::from_str(&format!("Bearer {jwt}"))
            .map_err(|e| Error::InvalidInput(format!("bearer token: {e}")))?;
        value.set_sensitive(true);
        b = b.header(header::AUTHORIZATION, value);
    }
    if matches!(body, Body::Bytes(_)) {
        b = b.header(header::CONTENT_TYPE, "application/json");
    }
    b.body(body)
        .map_err(|e| Error::InvalidInput(format!("cannot build request to {url:?}: {e}")))
}

/// A header value a request can carry, checked before any IO (`name` says what it is,
/// for the error).
pub fn header_value(name: &str, value: &str) -> Result<HeaderValue, Error> {
    HeaderValue::from_str(value)
        .map_err(|_| Error::InvalidInput(format!("{name} {value:?} cannot be sent in a header")))
}

/// The `accountId` header of the calls whose path ends in the literal `h:accountId`
/// (`docs/protocol.md`, "Revoke", "Deletion"); header names go lower-cased on the wire.
pub const ACCOUNT_ID: http::HeaderName = http::HeaderName::from_static("accountid");

/// An account id for the [`ACCOUNT_ID`] header: not empty, and sendable in a header.
pub fn account_id_header(id: &str) -> Result<HeaderValue, Error> {
    if id.is_empty() {
        return Err(Error::InvalidInput("account id cannot be empty".into()));
    }
    header_value("account id", id)
}

/// Checks a 2xx body that must be JSON or empty (whitespace only), and is otherwise
/// ignored: a deletion's, an upload's, a provider push's.
pub(crate) fn json_or_empty(body: &[u8], context: &'static str) -> Result<(), Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(body)
        .map(|_| ())
        .map_err(|e| Error::Decode {
            context,
            detail: format!("the answer is not JSON: {e}"),
        })
}

/// Sets `content-type: application/json` on a request that may have no body (as the
/// official SDK sends it on the storage and discovery calls), and adds
/// `accept: application/json`.
pub(crate) fn json_content_type(mut req: Request<Body>) -> Request<Body> {
    req.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    accept_json(req)
}

/// Adds `accept: application/json`.
pub fn accept_json(mut req: Request<Body>) -> Request<Body> {
    req.headers_mut()
        .insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    req
}

/// Whether the status is 2xx.
pub fn is_success(resp: &Response<Vec<u8>>) -> bool {
    resp.status().is_success()
}

/// The `Retry-After` value of a response, if any.
pub fn retry_after_header(resp: &Response<Vec<u8>>) -> Option<&str> {
    resp.headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
}

/// Server-supplied text as an error shows it: at most [`MAX_ERROR_TEXT`] characters,
/// without control characters (a hostile server could otherwise fill logs, or forge
/// lines in them, through `Display`).
fn clean(text: &str) -> String {
    let mut out: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_ERROR_TEXT)
        .collect();
    if text
        .chars()
        .filter(|c| !c.is_control())
        .nth(MAX_ERROR_TEXT)
        .is_some()
    {
        out.push('…');
    }
    out
}

/// Most characters kept of a server's error code, message or reference.
pub const MAX_ERROR_TEXT: usize = 512;

/// Parses a body into the standard API error, if it is one (docs/protocol.md, "Errors",
/// shape A or B); its texts are cleaned (see [`MAX_ERROR_TEXT`]).
pub fn parse_error_body(status: u16, body: &[u8]) -> Option<ApiError> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let obj = value.as_object()?;
    // Shape A: {"error":{"code":..,"message":..,"reference"?}}. Checked first: the Node
    // SDK's quirk of reading a shape-A body with a top-level message as shape B (code
    // "[object Object]") is not reproduced.
    if let Some(err) = obj.get("error").and_then(Value::as_object) {
        let code = err.get("code")?.as_str()?;
        let message = err.get("message")?.as_str()?;
        let reference = err.get("reference").and_then(Value::as_str).map(clean);
        return Some(ApiError {
            status,
            code: ErrorCode::from(clean(code).as_str()),
            message: clean(message),
            reference,
            retry_after: None,
        });
    }
    // Shape B: {"error":"Code","message":"text"}, both optional strings, at least one present.
    let code = obj.get("error");
    let message = obj.get("message");
    let is_opt_str = |v: Option<&Value>| v.is_none_or(Value::is_string);
    if is_opt_str(code) && is_opt_str(message) && (code.is_some() || message.is_some()) {
        let code = clean(code.and_then(Value::as_str).unwrap_or("DigiMeServerError"));
        return Some(ApiError {
            status,
            code: ErrorCode::from(code.as_str()),
            message: clean(message.and_then(Value::as_str).unwrap_or("Server error")),
            reference: None,
            retry_after: None,
        });
    }
    None
}

/// Converts a non-2xx response into an error.
pub fn error_from_response(resp: &Response<Vec<u8>>, now: SystemTime) -> Error {
    let status = resp.status().as_u16();
    let retry_after: Option<Duration> =
        retry_after_header(resp).and_then(|v| crate::retry::parse_retry_after(v, now));
    let error = match parse_error_body(status, resp.body()) {
        Some(mut api) => {
            api.retry_after = retry_after;
            Error::Api(api)
        }
        None => Error::UnexpectedStatus {
            status,
            body: snippet(resp.body()),
            retry_after,
        },
    };
    if resp.extensions().get::<MaybeProcessed>().is_some() {
        Error::OutcomeUnknown(Box::new(error))
    } else {
        error
    }
}

/// Marks the final answer of a request that was not repeated and may have been
/// processed (a 500 to a push): its error is [`Error::OutcomeUnknown`]
/// (docs/protocol.md, "Retries"). Set by the request's retry loop, read by
/// [`error_from_response`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct MaybeProcessed;

/// The start of a body as text, for error messages.
pub fn snippet(body: &[u8]) -> String {
    const MAX: usize = 512;
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX)]);
    let mut s: String = text
        .chars()
        .filter(|c| !c.is_control() || *c == ' ')
        .collect();
    if body.len() > MAX {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_streamed_body_below_the_floor_times_out_and_a_slow_sink_does_not_count() {
        use super::SlowBodyGuard;
        let ms = std::time::Duration::from_millis;
        // 1 byte every 59 s: refused once a 60 s window is over.
        let mut trickle = SlowBodyGuard::new(ms(60_000));
        assert!(trickle.record(1, ms(59_000)).is_ok());
        let e = trickle.record(1, ms(59_000)).unwrap_err();
        assert_eq!(e.kind, crate::TransportErrorKind::Timeout);
        // 64 KiB a minute, in bursts: above the floor, window after window.
        let mut steady = SlowBodyGuard::new(ms(60_000));
        for _ in 0..10 {
            for _ in 0..4 {
                assert!(steady.record(16 << 10, ms(15_000)).is_ok());
            }
        }
        // Time spent in the caller's sink is not passed in: only the waits count.
        let mut fast = SlowBodyGuard::new(ms(100));
        for _ in 0..1000 {
            assert!(fast.record(256 << 10, ms(1)).is_ok());
        }
    }

    use super::*;

    fn resp(status: u16, body: &str) -> Response<Vec<u8>> {
        Response::builder()
            .status(status)
            .body(body.as_bytes().to_vec())
            .unwrap()
    }

    #[test]
    fn the_bearer_never_shows_in_debug() {
        let req = request(
            Method::GET,
            "https://a.example/x",
            Some("JWT.SECRET.SIG"),
            Body::Empty,
        )
        .unwrap();
        assert_eq!(req.headers()["authorization"], "Bearer JWT.SECRET.SIG");
        assert!(!format!("{req:?}").contains("SECRET"));
    }

    #[test]
    fn server_error_text_is_bounded_and_has_no_control_characters() {
        let long = "x".repeat(1 << 20);
        let body = serde_json::json!({"error": {"code": "Bad\r\nX-Forged: 1",
            "message": format!("line1\nline2\u{1b}[31m{long}"), "reference": "r\u{0}"}});
        let e = parse_error_body(400, body.to_string().as_bytes()).unwrap();
        assert_eq!(e.code.as_str(), "BadX-Forged: 1");
        assert!(
            e.message.starts_with("line1line2[31mxxx"),
            "{}",
            &e.message[..30]
        );
        assert_eq!(e.message.chars().count(), MAX_ERROR_TEXT + 1);
        assert!(e.message.ends_with('…'));
        assert_eq!(e.reference.as_deref(), Some("r"));
        let shown = Error::Api(e).to_string();
        assert!(
            !shown.chars().any(char::is_control) && shown.len() < 2000,
            "{shown:.80}"
        );
    }

    #[test]
    fn shape_a_and_b() {
        let now = SystemTime::UNIX_EPOCH;
        let a = r#"{"error":{"code":"InvalidRedirectUri","message":"The redirect_uri (x) is invalid","reference":"3Wb9vDEsv4ODYKaoP6lQKCbZu9rnJ6UH"}}"#;
        match error_from_response(&resp(404, a), now) {
            Error::Api(api) => {
                assert_eq!(api.status, 404);
                assert_eq!(api.code, ErrorCode::InvalidRedirectUri);
                assert_eq!(
                    api.reference.as_deref(),
                    Some("3Wb9vDEsv4ODYKaoP6lQKCbZu9rnJ6UH")
                );
            }
            e => panic!("{e:?}"),
        }
        match error_from_response(
            &resp(404, r#"{"error":"NotFound","message":"File not found"}"#),
            now,
        ) {
            Error::Api(api) => {
                assert_eq!(api.code, ErrorCode::Other("NotFound".into()));
                assert_eq!(api.message, "File not found");
            }
            e => panic!("{e:?}"),
        }
        for body in ["", "[1]", r#"{"error":{"code":"X"}}"#, "<html>", "{}"] {
            assert!(
                matches!(
                    error_from_response(&resp(500, body), now),
                    Error::UnexpectedStatus { status: 500, .. }
                ),
                "{body}"
            );
        }
    }

    #[test]
    fn every_fixture_error_body_parses() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/network/get-session-accounts"
        );
        let Ok(entries) = std::fs::read_dir(dir) else {
            panic!("fixtures missing at {dir}");
        };
        let mut seen = 0;
        for entry in entries {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            let mocks: Vec<Value> = serde_json::from_str(&text).unwrap();
            for m in mocks {
                let status = m["status"].as_u64().unwrap() as u16;
                if status < 400 {
                    continue;
                }
                let body = serde_json::to_vec(&m["response"]).unwrap();
                let api = parse_error_body(status, &body).expect("fixture is an API error");
                assert_eq!(
                    api.code.as_str(),
                    m["response"]["error"]["code"].as_str().unwrap()
                );
                seen += 1;
            }
        }
        assert!(seen >= 4);
    }
}
