//! Retry policy as data (docs/protocol.md, "Retries"): which requests are retried, how
//! often, and how long to wait. Every retry is a freshly signed request.
//!
//! Failures fall in three classes ([`Outcome::unprocessed`],
//! [`Outcome::maybe_processed`]):
//! - **not processed** (429, 503, no connection made): retried for every method, POSTs
//!   included, since repeating a request the server did not take cannot do anything twice;
//! - **maybe processed** (the connection failed after the request went out; 500, 502,
//!   504 and the like): retried only for the policy's [`RetryPolicy::methods`], the
//!   requests that may be repeated. Any other request fails with
//!   [`crate::Error::OutcomeUnknown`]: its write may have happened;
//! - **processed** (any other status): never retried, but for the policy's other
//!   `status_codes` of a repeatable method (408, 413 with `Retry-After`).

use crate::error::{TransportError, TransportErrorKind};
use http::Method;
use std::time::{Duration, SystemTime};

/// Statuses retried by default (got 11): 408, 413, 429, 500, 502, 503, 504, 521, 522, 524.
pub const RETRY_STATUS_CODES: [u16; 10] = [408, 413, 429, 500, 502, 503, 504, 521, 522, 524];

/// How requests are retried. The default matches the official SDK: up to 2 retries of
/// idempotent methods, backoff `1000·2^(n−1)` ms plus 0–100 ms of jitter, `Retry-After`
/// honoured. Unlike the official SDK:
/// - a request of any method, POST included, is retried when it was certainly not
///   processed (429, 503, a refused connection; see the [module docs](self));
/// - a `Retry-After` longer than [`DEFAULT_MAX_RETRY_AFTER`] ends the retries (the error
///   then carries `retry_after()`), so that a server can never park a call for hours.
///
/// ```
/// use digime_protocol::retry::{Outcome, RetryPolicy};
/// use http::Method;
/// use std::time::{Duration, SystemTime};
///
/// let policy = RetryPolicy::default();
/// let now = SystemTime::now();
/// // A push (POST) answered 503 was not processed: it is retried.
/// assert!(policy.delay(&Method::POST, 1, Outcome::Status(503, Some("0")), now, 0).is_some());
/// // Answered 500, it may have been processed: it is not repeated.
/// assert_eq!(policy.delay(&Method::POST, 1, Outcome::Status(500, None), now, 0), None);
/// // A GET may be repeated whatever happened to it.
/// assert_eq!(
///     policy.delay(&Method::GET, 1, Outcome::Status(500, None), now, 0),
///     Some(Duration::from_secs(1)),
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub limit: u32,
    /// Methods whose requests may be repeated, and so are retried even when they may
    /// have been processed (a lost answer, a 500). Requests of other methods are retried
    /// only when they were certainly not processed. Adding `POST` makes the code
    /// exchange, authorize and the trigger repeat after a lost answer too; pushes,
    /// refreshes, deletions and storage writes never do (they use
    /// [`RetryPolicy::unprocessed_only`]).
    pub methods: Vec<Method>,
    /// HTTP statuses that are retried.
    pub status_codes: Vec<u16>,
    /// Delay before the first retry; doubled for each further retry.
    pub base_delay: Duration,
    /// Upper bound (exclusive) of the random jitter added to each delay.
    pub max_jitter: Duration,
    /// Longest `Retry-After` honoured; a longer one ends the retries. `None`: no bound.
    pub max_retry_after: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            limit: 2,
            methods: vec![
                Method::GET,
                Method::PUT,
                Method::HEAD,
                Method::DELETE,
                Method::OPTIONS,
                Method::TRACE,
            ],
            status_codes: RETRY_STATUS_CODES.to_vec(),
            base_delay: Duration::from_millis(1000),
            max_jitter: Duration::from_millis(100),
            max_retry_after: Some(DEFAULT_MAX_RETRY_AFTER),
        }
    }
}

/// The longest `Retry-After` waited for by default.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// What came back from one attempt, as far as retrying is concerned.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    /// A response with this status and `Retry-After` header value, if any.
    Status(u16, Option<&'a str>),
    /// No response.
    Transport(&'a TransportError),
}

impl Outcome<'_> {
    /// Whether the request was certainly not processed, so that repeating it cannot do
    /// anything twice: the server said so (429 Too Many Requests, 503 Service
    /// Unavailable), or no connection was made ([`TransportErrorKind::Connect`]).
    pub fn unprocessed(&self) -> bool {
        match self {
            Outcome::Status(status, _) => matches!(status, 429 | 503),
            Outcome::Transport(e) => e.kind == TransportErrorKind::Connect,
        }
    }

    /// Whether the request may have been processed without the client learning how it
    /// ended: the connection failed after the request went out (a reset, a timeout, a
    /// cut or unreadable answer), or a server or gateway error answered it (a 5xx but
    /// 501, 503 and 505). A failure of the caller's own body or sink is neither.
    pub fn maybe_processed(&self) -> bool {
        match self {
            Outcome::Status(status, _) => *status >= 500 && !matches!(status, 501 | 503 | 505),
            Outcome::Transport(e) => matches!(
                e.kind,
                TransportErrorKind::Timeout
                    | TransportErrorKind::Reset
                    | TransportErrorKind::ResponseTooLarge
                    | TransportErrorKind::Other
            ),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn never() -> Self {
        RetryPolicy {
            limit: 0,
            ..RetryPolicy::default()
        }
    }

    /// This policy for a request that must not be repeated once it may have been
    /// processed (a push, a refresh, a deletion, a storage write): the same limit and
    /// waits, no repeatable method, so only what was certainly not processed is
    /// retried, and a lost answer is [`crate::Error::OutcomeUnknown`].
    pub fn unprocessed_only(&self) -> Self {
        RetryPolicy {
            methods: Vec::new(),
            ..self.clone()
        }
    }

    /// Whether `method` requests may be repeated after they may have been processed.
    pub fn repeats(&self, method: &Method) -> bool {
        self.methods.contains(method)
    }

    /// Whether a `method` request that ended with `outcome` and was not retried has an
    /// unknown outcome ([`crate::Error::OutcomeUnknown`]): it may have been processed,
    /// it may write (not GET, HEAD, OPTIONS or TRACE, which only read), and the policy
    /// does not repeat it.
    pub fn outcome_unknown(&self, method: &Method, outcome: Outcome<'_>) -> bool {
        !method.is_safe() && !self.repeats(method) && outcome.maybe_processed()
    }

    /// The delay before retry number `retry` (1-based) of a `method` request that ended
    /// with `outcome`, or `None` when it must not be retried: a request of a method the
    /// policy does not [repeat](Self::repeats) is retried only when it was
    /// [not processed](Outcome::unprocessed). `jitter` is a random value in
    /// `0..=u64::MAX` supplied by the caller, so that this stays deterministic.
    pub fn delay(
        &self,
        method: &Method,
        retry: u32,
        outcome: Outcome<'_>,
        now: SystemTime,
        jitter: u64,
    ) -> Option<Duration> {
        if retry == 0 || retry > self.limit || !(self.repeats(method) || outcome.unprocessed()) {
            return None;
        }
        let computed = || {
            let factor = 1u32.checked_shl(retry - 1).unwrap_or(u32::MAX);
            let jitter_ms = self.max_jitter.as_millis() as u64;
            let j = if jitter_ms == 0 {
                0
            } else {
                jitter % jitter_ms
            };
            self.base_delay.saturating_mul(factor) + Duration::from_millis(j)
        };
        match outcome {
            Outcome::Transport(e) => e.is_retryable().then(computed),
            Outcome::Status(status, retry_after) => {
                if !self.status_codes.contains(&status) {
                    return None;
                }
                match retry_after.and_then(|v| parse_retry_after(v, now)) {
                    Some(wait) => match self.max_retry_after {
                        Some(max) if wait > max => None,
                        _ => Some(wait),
                    },
                    // got never retries a 413 that did not say when to come back.
                    None if status == 413 => None,
                    None => Some(computed()),
                }
            }
        }
    }
}

/// Parses `Retry-After`: delay seconds or an HTTP date (a past date means now). More
/// seconds than a `u64` holds mean "not before the end of time", not "no header".
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(
            value.parse::<u64>().unwrap_or(u64::MAX),
        ));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::TransportErrorKind;

    #[test]
    fn default_backoff_doubles_and_post_is_not_retried() {
        let p = RetryPolicy::default();
        let now = SystemTime::UNIX_EPOCH;
        let s500 = Outcome::Status(500, None);
        assert_eq!(
            p.delay(&Method::GET, 1, s500, now, 0),
            Some(Duration::from_millis(1000))
        );
        assert_eq!(
            p.delay(&Method::GET, 2, s500, now, 99),
            Some(Duration::from_millis(2099))
        );
        assert_eq!(p.delay(&Method::GET, 3, s500, now, 0), None);
        assert_eq!(p.delay(&Method::POST, 1, s500, now, 0), None);
        assert_eq!(
            p.delay(&Method::POST, 1, Outcome::Status(502, None), now, 0),
            None
        );
        assert_eq!(
            p.delay(&Method::GET, 1, Outcome::Status(404, None), now, 0),
            None
        );
    }

    #[test]
    fn retry_after_and_413() {
        let p = RetryPolicy::default();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let later = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(
            p.delay(&Method::GET, 1, Outcome::Status(429, Some("3")), now, 0),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            p.delay(&Method::GET, 1, Outcome::Status(503, Some(&later)), now, 0),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            p.delay(&Method::GET, 1, Outcome::Status(413, None), now, 0),
            None
        );
        assert!(
            p.delay(&Method::GET, 1, Outcome::Status(413, Some("1")), now, 0)
                .is_some()
        );
        let capped = RetryPolicy {
            max_retry_after: Some(Duration::from_secs(2)),
            ..p
        };
        assert_eq!(
            capped.delay(&Method::GET, 1, Outcome::Status(429, Some("3")), now, 0),
            None
        );
    }

    #[test]
    fn what_was_not_processed_is_retried_for_every_method() {
        let p = RetryPolicy::default().unprocessed_only();
        let now = SystemTime::UNIX_EPOCH;
        let refused = TransportError::new(TransportErrorKind::Connect, "refused");
        let reset = TransportError::new(TransportErrorKind::Reset, "reset");
        for method in [Method::POST, Method::DELETE, Method::GET] {
            assert_eq!(
                p.delay(&method, 1, Outcome::Status(429, Some("2")), now, 0),
                Some(Duration::from_secs(2))
            );
            assert_eq!(
                p.delay(&method, 2, Outcome::Status(503, None), now, 0),
                Some(Duration::from_secs(2))
            );
            assert!(
                p.delay(&method, 1, Outcome::Transport(&refused), now, 0)
                    .is_some()
            );
            // The limit still holds.
            assert_eq!(
                p.delay(&method, 3, Outcome::Status(503, None), now, 0),
                None
            );
            // Maybe processed: not repeated.
            assert_eq!(
                p.delay(&method, 1, Outcome::Transport(&reset), now, 0),
                None
            );
            assert_eq!(
                p.delay(&method, 1, Outcome::Status(500, None), now, 0),
                None
            );
        }
        // A far-future Retry-After ends the retries even of what was not processed.
        assert_eq!(
            p.delay(
                &Method::POST,
                1,
                Outcome::Status(503, Some("86400")),
                now,
                0
            ),
            None
        );
        assert_eq!(
            RetryPolicy::never().delay(&Method::POST, 1, Outcome::Status(503, None), now, 0),
            None
        );
    }

    #[test]
    fn the_three_classes_of_failure() {
        let kinds = [
            (TransportErrorKind::Connect, true, false),
            (TransportErrorKind::Timeout, false, true),
            (TransportErrorKind::Reset, false, true),
            (TransportErrorKind::Other, false, true),
            (TransportErrorKind::ResponseTooLarge, false, true),
            (TransportErrorKind::BodySource, false, false),
            (TransportErrorKind::Sink, false, false),
        ];
        for (kind, unprocessed, maybe) in kinds {
            let e = TransportError::new(kind, "x");
            assert_eq!(
                Outcome::Transport(&e).unprocessed(),
                unprocessed,
                "{kind:?}"
            );
            assert_eq!(Outcome::Transport(&e).maybe_processed(), maybe, "{kind:?}");
        }
        for (status, unprocessed, maybe) in [
            (429, true, false),
            (503, true, false),
            (500, false, true),
            (502, false, true),
            (504, false, true),
            (524, false, true),
            (501, false, false),
            (400, false, false),
            (401, false, false),
            (408, false, false),
        ] {
            let o = Outcome::Status(status, None);
            assert_eq!(o.unprocessed(), unprocessed, "{status}");
            assert_eq!(o.maybe_processed(), maybe, "{status}");
        }
    }

    #[test]
    fn transport_errors() {
        let p = RetryPolicy::default();
        let now = SystemTime::UNIX_EPOCH;
        let refused = TransportError::new(TransportErrorKind::Connect, "refused");
        let body = TransportError::new(TransportErrorKind::BodySource, "disk");
        assert!(
            p.delay(&Method::GET, 1, Outcome::Transport(&refused), now, 0)
                .is_some()
        );
        assert!(
            p.delay(&Method::GET, 1, Outcome::Transport(&body), now, 0)
                .is_none()
        );
    }
}
