//! Retry policy as data (docs/protocol.md, "Configuration"): which requests are retried, how often, and
//! how long to wait. Every retry is a freshly signed request.

use crate::error::TransportError;
use http::Method;
use std::time::{Duration, SystemTime};

/// Statuses retried by default (got 11): 408, 413, 429, 500, 502, 503, 504, 521, 522, 524.
pub const RETRY_STATUS_CODES: [u16; 10] = [408, 413, 429, 500, 502, 503, 504, 521, 522, 524];

/// How requests are retried. The default matches the official SDK: up to 2 retries of
/// idempotent methods (never POST), backoff `1000·2^(n−1)` ms plus 0–100 ms of jitter,
/// `Retry-After` honoured. Unlike the official SDK, a `Retry-After` longer than
/// [`DEFAULT_MAX_RETRY_AFTER`] ends the retries (the error then carries
/// `retry_after()`), so that a server can never park a call for hours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub limit: u32,
    /// Methods that may be retried. Add `POST` to retry authorize and code exchange.
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

impl RetryPolicy {
    /// A policy that never retries (used for pushes and refreshes).
    pub fn never() -> Self {
        RetryPolicy {
            limit: 0,
            ..RetryPolicy::default()
        }
    }

    /// The delay before retry number `retry` (1-based) of a `method` request that ended
    /// with `outcome`, or `None` when it must not be retried. `jitter` is a random value
    /// in `0..=u64::MAX` supplied by the caller, so that this stays deterministic.
    pub fn delay(
        &self,
        method: &Method,
        retry: u32,
        outcome: Outcome<'_>,
        now: SystemTime,
        jitter: u64,
    ) -> Option<Duration> {
        if retry == 0 || retry > self.limit || !self.methods.contains(method) {
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

/// Parses `Retry-After`: delay seconds or an HTTP date (a past date means now).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
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
