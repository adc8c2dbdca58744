//! Structured logs of API calls, through [`tracing`] (feature `tracing`, on by
//! default; with no subscriber installed, each call site costs one relaxed load).
//!
//! Every request (with its retries) is a span named `digime.request` at `INFO`, target
//! `digime_protocol`, with these fields:
//!
//! | Field | What |
//! |---|---|
//! | `operation` | the call: `ReadAccounts`, `PushToLibrary`, `authorize`, `exchange_code`, `refresh_token`, `jwks`, … |
//! | `method` | `GET`, `POST`, … |
//! | `path` | the path template: the API's own segments kept, every other one (a session key, a file name, an id) as `{}`; no host, no query |
//! | `status` | the final status, or the transport error's kind |
//! | `attempt` | attempts made (1 without retries) |
//! | `duration_ms` | from the first attempt sent to the last answer |
//! | `refresh` | whether the call is the retry of a call whose token was refreshed |
//!
//! Each attempt that is retried is a `DEBUG` event in the span (`attempt`, `status`,
//! `retry_in_ms`), so is the end of the request (`request done`), and a token refresh
//! is an `INFO` event. Nothing logged carries a
//! token, a code, a verifier, a key, a session key or any other part of a URL but the
//! template ([`path_template`]; tested by the blocking driver's `tests/logs.rs`).

use http::Method;
use std::time::SystemTime;

/// The API's own path segments: anything else in a path is the caller's or the
/// server's data, logged as `{}`.
const SEGMENTS: &[&str] = &[
    "oauth",
    "authorize",
    "token",
    "reference",
    "jwks",
    "permission-access",
    "contract",
    "revoke",
    "trigger",
    "query",
    "accounts",
    "user",
    "service",
    "storage",
    "clouds",
    "files",
    "apps",
    "discovery",
    "sources",
    "countries",
    "platforms",
    "categories",
    "services",
    "sample",
    "datasets",
    "export",
    "report",
    "import",
    "fhir",
    "stu3",
    "3.0.2",
    "postbox",
    "session",
    "h:accountId",
];

/// The template a request path is logged as: the API's own segments and version
/// segments (`v1.7`) kept, every other non-empty one (a session key, a file name, an
/// id: anything a new endpoint adds too) replaced by `{}`.
///
/// ```
/// use digime_protocol::trace::path_template;
/// assert_eq!(
///     path_template("/v1.7/permission-access/query/sk-secret/18_4_28.json"),
///     "/v1.7/permission-access/query/{}/{}"
/// );
/// assert_eq!(path_template("/v1.7/oauth/token"), "/v1.7/oauth/token");
/// ```
pub fn path_template(path: &str) -> String {
    let is_version = |s: &str| {
        s.strip_prefix('v').is_some_and(|v| {
            let mut parts = v.split('.');
            parts.clone().count() == 2
                && parts.all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        })
    };
    path.split('/')
        .map(|s| {
            if s.is_empty() || SEGMENTS.contains(&s) || is_version(s) {
                s
            } else {
                "{}"
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The short name of an operation type: `ReadAccounts` for
/// `digime_protocol::read::ReadAccounts`.
pub(crate) fn operation_name<O: ?Sized>() -> &'static str {
    let full = std::any::type_name::<O>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

/// What one request logs (see the module docs); a no-op without the feature.
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
pub(crate) struct RequestTrace {
    operation: &'static str,
    refresh: bool,
    first_sent: Option<SystemTime>,
    #[cfg(feature = "tracing")]
    span: Option<tracing::Span>,
}

impl RequestTrace {
    pub(crate) fn new(operation: &'static str) -> Self {
        RequestTrace {
            operation,
            refresh: false,
            first_sent: None,
            #[cfg(feature = "tracing")]
            span: None,
        }
    }

    /// Marks the request as the retry of a call whose token was refreshed.
    pub(crate) fn after_refresh(&mut self) {
        self.refresh = true;
    }

    /// An attempt goes out.
    pub(crate) fn sent(&mut self, method: &Method, path: &str, now: SystemTime) {
        self.first_sent.get_or_insert(now);
        #[cfg(feature = "tracing")]
        if self.span.is_none() {
            self.span = Some(tracing::info_span!(
                target: "digime_protocol",
                "digime.request",
                operation = self.operation,
                method = %method,
                path = %path_template(path),
                status = tracing::field::Empty,
                attempt = tracing::field::Empty,
                duration_ms = tracing::field::Empty,
                refresh = self.refresh,
            ));
        }
        #[cfg(not(feature = "tracing"))]
        let _ = (method, path);
    }

    /// An attempt is answered (`outcome`: a status, or a transport error's kind) and
    /// will be made again after `retry_in`.
    pub(crate) fn retried(
        &self,
        attempt: u32,
        outcome: &dyn std::fmt::Display,
        retry_in: std::time::Duration,
    ) {
        #[cfg(feature = "tracing")]
        if let Some(span) = &self.span {
            tracing::debug!(
                target: "digime_protocol",
                parent: span,
                attempt,
                status = %outcome,
                retry_in_ms = retry_in.as_millis() as u64,
                "attempt retried"
            );
        }
        #[cfg(not(feature = "tracing"))]
        let _ = (attempt, outcome, retry_in);
    }

    /// The request is over: its last outcome, after `attempt` attempts.
    pub(crate) fn finished(&self, attempt: u32, outcome: &dyn std::fmt::Display, now: SystemTime) {
        let duration_ms = self
            .first_sent
            .and_then(|t| now.duration_since(t).ok())
            .map_or(0, |d| d.as_millis() as u64);
        #[cfg(feature = "tracing")]
        if let Some(span) = &self.span {
            span.record("status", tracing::field::display(outcome));
            span.record("attempt", attempt);
            span.record("duration_ms", duration_ms);
            tracing::debug!(
                target: "digime_protocol",
                parent: span,
                attempt,
                status = %outcome,
                duration_ms,
                "request done"
            );
        }
        #[cfg(not(feature = "tracing"))]
        let _ = (attempt, outcome, duration_ms);
    }
}

/// A call refreshed its token (logged once, by the call that refreshed; the new
/// token is not logged).
pub(crate) fn token_refreshed() {
    #[cfg(feature = "tracing")]
    tracing::info!(target: "digime_protocol", "token refreshed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_apis_own_segments_survive_a_template() {
        for (path, template) in [
            (
                "/v1.7/permission-access/accounts",
                "/v1.7/permission-access/accounts",
            ),
            (
                "/v1.7/permission-access/query/s/f.json",
                "/v1.7/permission-access/query/{}/{}",
            ),
            (
                "/v1.7/permission-access/service/h:accountId",
                "/v1.7/permission-access/service/h:accountId",
            ),
            (
                "/v1.7/clouds/st-1/files/apps/app/a/b.txt",
                "/v1.7/clouds/{}/files/apps/{}/{}/{}",
            ),
            (
                "/v1.4/permission-access/postbox/pb-1",
                "/v1.4/permission-access/postbox/{}",
            ),
            (
                "/prefix/v1.7/discovery/sources",
                "/{}/v1.7/discovery/sources",
            ),
            ("/v1.x/token/", "/{}/token/"),
            ("/secret-token-value", "/{}"),
        ] {
            assert_eq!(path_template(path), template, "{path}");
        }
    }

    #[test]
    fn an_operation_is_named_by_its_type() {
        assert_eq!(
            operation_name::<crate::read::ReadAccounts>(),
            "ReadAccounts"
        );
        assert_eq!(operation_name::<Vec<String>>(), "Vec");
    }
}
