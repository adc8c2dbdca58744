//! Multi-request operations as state machines.
//!
//! A [`Flow`] never performs IO and never reads the clock. The driver runs it:
//!
//! ```text
//! loop {
//!     match flow.poll(now()) {
//!         Step::Send(request) => match perform(request) {     // exactly one answer per Send
//!             Ok(response) => flow.handle_response(response),
//!             Err(error)   => flow.handle_transport_error(error),
//!         },
//!         Step::Sleep(duration) => sleep(duration),           // then poll again
//!         Step::Event(event)    => deliver(event),            // then poll again
//!         Step::Done(result)    => return result,             // the flow is finished
//!     }
//! }
//! ```
//!
//! Drain rule: after `Send`, call `handle_response` or `handle_transport_error` once
//! before polling again; after `Sleep` and `Event`, poll again; after `Receive`, feed
//! the kept response body through `handle_body` (writing what it outputs, then what
//! `handle_body_drain` outputs until it returns `false`), then `handle_body_end` (and
//! drain the same way), or `handle_transport_error`, then poll again; after `Done`,
//! stop. [`feed_body`] and [`drain_body`] are that bookkeeping.
//! A driver that gets `Send` while it still holds an unread body drops that body.
//! Every request a flow emits is freshly signed (new nonce and timestamp), so retries
//! are never replays.
//!
//! # Writing a driver
//!
//! A driver is the loop above plus a way to move bytes. The repository's
//! [`examples/std_transport.rs`](https://github.com/digime-rs/digime-rs/blob/main/examples/std_transport.rs)
//! is a complete one, the template to start from: a minimal HTTP/1.1 client on
//! `std::net`, this run loop with its streamed bodies and uploads, and the coordinator
//! loop of [`crate::read_all`], running authorize → exchange → push → read-all against
//! the sandbox. What it must get right, and what `digime-blocking` and `digime-async`
//! do the same way:
//!
//! * a buffered answer's body is capped at [`wire::MAX_RESPONSE_BYTES`], and a
//!   streamed one is held to [`wire::SlowBodyGuard`]'s floor;
//! * every failure is a [`TransportError`] of the right
//!   [`kind`](crate::TransportErrorKind) (nothing connected, a timeout, a connection
//!   lost mid-answer, a body too large), because the retry rules depend on it;
//! * a request carrying [`Body::Upload`] is sent as [`crate::upload`] says, from the
//!   caller's first byte on every attempt;
//! * [`Event::TokenRefreshed`] reaches the app, which persists the token.
//!
//! A call made with a user's token refreshes once on 401: see [`crate::refresh`].
//! Each endpoint's flow lives in the module of its endpoint ([`crate::auth`],
//! [`crate::read`], [`crate::push`], and the postbox era's `legacy`); this module has the run-loop
//! types and the one-request-with-retries building block they share.

use crate::error::{Error, TransportError};
use crate::retry::{Outcome, RetryPolicy};
use crate::token::UserAccessToken;
use crate::trace::RequestTrace;
use crate::wire::{self, Body};
use digime_crypto::random;
use http::{Method, Request, Response};
use std::time::{Duration, SystemTime};

pub use crate::auth::{AuthorizeFlow, TokenFlow};
pub use crate::refresh::{AuthedCall, UserOperation};

/// What the driver must do next.
#[derive(Debug)]
pub enum Step<T> {
    /// Perform this request and report its response.
    Send(Request<Body>),
    /// Read the body of the last response (a 2xx answer to a request marked
    /// [`crate::read::StreamResponse`], whose body the driver kept unread): pass each
    /// chunk to [`Flow::handle_body`] and write what it appends to `out` to the
    /// caller's sink, stop early if it returns `false`, then call
    /// [`Flow::handle_body_end`], or [`Flow::handle_transport_error`] if reading (or
    /// writing to the sink, [`crate::TransportErrorKind::Sink`]) failed. Then poll again.
    Receive,
    /// Wait this long, then poll again.
    Sleep(Duration),
    /// Hand this event to the app, then poll again.
    Event(Event),
    /// The flow is finished.
    Done(Result<T, Error>),
}

/// Something the app should know while a flow runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// The access token was refreshed: persist this token, the old one is spent.
    TokenRefreshed(UserAccessToken),
}

/// A sans-IO operation; see the module docs for the run loop.
pub trait Flow {
    /// The result of the operation.
    type Output;
    /// The next thing to do.
    fn poll(&mut self, now: SystemTime) -> Step<Self::Output>;
    /// The response to the last `Send`.
    fn handle_response(&mut self, response: Response<Vec<u8>>);
    /// The last `Send` failed without a response, or reading a streamed body failed.
    fn handle_transport_error(&mut self, error: TransportError);
    /// A chunk of the streamed body (after [`Step::Receive`]). Output for the caller's
    /// sink is appended to `out`. Returns `false` when the rest of the body is not
    /// wanted (the flow failed; poll to learn why).
    fn handle_body(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> bool {
        let _ = (chunk, out);
        false
    }
    /// The streamed body ended; poll again. Output for the sink is appended to `out`.
    fn handle_body_end(&mut self, out: &mut Vec<u8>) {
        let _ = out;
    }
    /// After [`Flow::handle_body`] or [`Flow::handle_body_end`]: appends to `out` more
    /// output that is ready without more input (a step of a highly compressed body) and
    /// returns whether there is still more. The driver writes `out` and calls again
    /// until it returns `false` (see [`drain_body`]), so that output goes to the sink a
    /// bounded step at a time.
    fn handle_body_drain(&mut self, out: &mut Vec<u8>) -> bool {
        let _ = out;
        false
    }
}

/// The result of a call made with a user's token.
#[derive(Debug, Clone)]
pub struct Authed<T> {
    /// The call's result.
    pub value: T,
    /// The new token, when the call had to refresh: persist it.
    pub refreshed_token: Option<UserAccessToken>,
}

pub(crate) fn misuse(what: &'static str) -> Error {
    Error::Misuse(format!("flow driven out of order: {what}"))
}

// ---------------------------------------------------------------------------------
// One request with retries.

/// How an attempt ended, as logged: never the body or the error's text.
enum Logged {
    Status(u16),
    Transport(crate::error::TransportErrorKind),
    /// A 2xx whose body did not decode.
    Malformed,
}

impl std::fmt::Display for Logged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Logged::Status(s) => write!(f, "{s}"),
            Logged::Transport(kind) => write!(f, "{kind:?}"),
            Logged::Malformed => f.write_str("malformed"),
        }
    }
}

pub(crate) enum Sub<T> {
    Send(Request<Body>),
    Sleep(Duration),
    Done(Result<T, Error>),
}

enum LegState {
    Ready,
    InFlight,
    Got(Result<Response<Vec<u8>>, TransportError>),
    Finished,
}

/// One logical request: built (signed) per attempt, retried per policy, logged as
/// one span (`crate::trace`).
pub(crate) struct Leg {
    method: Method,
    policy: RetryPolicy,
    retries: u32,
    state: LegState,
    pub(crate) trace: RequestTrace,
}

impl Leg {
    /// `operation` names the call in the logs.
    pub(crate) fn new(operation: &'static str, method: Method, policy: RetryPolicy) -> Self {
        Leg {
            method,
            policy,
            retries: 0,
            state: LegState::Ready,
            trace: RequestTrace::new(operation),
        }
    }

    pub(crate) fn poll(
        &mut self,
        now: SystemTime,
        build: impl FnOnce(SystemTime) -> Result<Request<Body>, Error>,
    ) -> Sub<Response<Vec<u8>>> {
        match std::mem::replace(&mut self.state, LegState::Finished) {
            LegState::Ready => match build(now) {
                Ok(req) => {
                    self.trace.sent(&self.method, req.uri().path(), now);
                    self.state = LegState::InFlight;
                    Sub::Send(req)
                }
                Err(e) => Sub::Done(Err(e)),
            },
            LegState::Got(outcome) => {
                let attempt = self.retries + 1;
                let logged = match &outcome {
                    Ok(r) => Logged::Status(r.status().as_u16()),
                    Err(t) => Logged::Transport(t.kind),
                };
                if outcome.as_ref().is_ok_and(|r| r.status().is_success()) {
                    self.trace.finished(attempt, &logged, now);
                    return Sub::Done(outcome.map_err(Error::from));
                }
                let o = match &outcome {
                    Ok(r) => Outcome::Status(r.status().as_u16(), wire::retry_after_header(r)),
                    Err(t) => Outcome::Transport(t),
                };
                let jitter = random::below(u64::MAX).unwrap_or(0);
                if let Some(delay) = self.policy.delay(&self.method, attempt, o, now, jitter) {
                    self.trace.retried(attempt, &logged, delay);
                    self.retries += 1;
                    self.state = LegState::Ready;
                    return Sub::Sleep(delay);
                }
                self.trace.finished(attempt, &logged, now);
                // A request that is not repeated and may have been processed: its
                // outcome is unknown (docs/protocol.md, "Retries"). A response is
                // marked, for `wire::error_from_response`.
                let unknown = self.policy.outcome_unknown(&self.method, o);
                match outcome {
                    Ok(mut response) => {
                        if unknown {
                            response.extensions_mut().insert(wire::MaybeProcessed);
                        }
                        Sub::Done(Ok(response))
                    }
                    Err(t) if unknown => {
                        Sub::Done(Err(Error::OutcomeUnknown(Box::new(Error::Transport(t)))))
                    }
                    Err(t) => Sub::Done(Err(Error::Transport(t))),
                }
            }
            LegState::InFlight => {
                self.state = LegState::InFlight;
                Sub::Done(Err(misuse("poll before the response was handled")))
            }
            LegState::Finished => Sub::Done(Err(misuse("poll after the request finished"))),
        }
    }

    /// After a 2xx answer whose body did not parse: a proxy that cut or mangled it is
    /// the likely cause, so a request the policy repeats after a lost answer (a GET)
    /// is made again, as after a connection lost mid-body; `None` otherwise (and for
    /// a write, which the server did process). Counts as one of the policy's retries.
    pub(crate) fn retry_malformed(&mut self, error: &Error, now: SystemTime) -> Option<Duration> {
        if !matches!(error, Error::Decode { .. }) {
            return None;
        }
        let cut = TransportError::new(crate::error::TransportErrorKind::Reset, error.to_string());
        let jitter = random::below(u64::MAX).unwrap_or(0);
        let delay = (self.policy).delay(
            &self.method,
            self.retries + 1,
            Outcome::Transport(&cut),
            now,
            jitter,
        )?;
        (self.trace).retried(self.retries + 1, &Logged::Malformed, delay);
        self.retries += 1;
        self.state = LegState::Ready;
        Some(delay)
    }

    pub(crate) fn handle(&mut self, outcome: Result<Response<Vec<u8>>, TransportError>) {
        if matches!(self.state, LegState::InFlight) {
            self.state = LegState::Got(outcome);
        }
    }
}

// ---------------------------------------------------------------------------------
// The drain rule, for drivers: what to do with a kept body after `Step::Receive`.

/// Feeds one piece of a kept body into `flow` (after [`Step::Receive`]): `Some(chunk)`,
/// or `None` once the body ended. The output for the caller's sink is left in `out`
/// (cleared first). Returns whether to read on, once `out` is written; report a
/// failed read or write with [`Flow::handle_transport_error`] (a sink's with
/// [`TransportError::sink`]) and stop.
pub fn feed_body<F: Flow + ?Sized>(flow: &mut F, chunk: Option<&[u8]>, out: &mut Vec<u8>) -> bool {
    out.clear();
    match chunk {
        Some(chunk) => flow.handle_body(chunk, out),
        None => {
            flow.handle_body_end(out);
            false
        }
    }
}

/// After [`feed_body`]: the next step of output that is ready without more input, left
/// in `out` (cleared first). Returns whether to call again once `out` is written. A
/// driver writes what `feed_body` gave, then loops on this until it returns `false`,
/// before it reads on (or polls, after the body's end).
pub fn drain_body<F: Flow + ?Sized>(flow: &mut F, out: &mut Vec<u8>) -> bool {
    out.clear();
    flow.handle_body_drain(out)
}

/// What a driver reports when a flow asks for a body it did not keep.
pub fn no_body_kept() -> TransportError {
    TransportError::new(
        crate::error::TransportErrorKind::Other,
        "no response body to receive",
    )
}

/// A flow's result once its sink was flushed: a failed flush fails a call that had
/// succeeded (a buffered sink's last write fails there, not in `write`).
pub fn with_flushed<T>(result: Result<T, Error>, flushed: std::io::Result<()>) -> Result<T, Error> {
    match (result, flushed) {
        (Ok(_), Err(e)) => Err(Error::Transport(TransportError::sink(&e))),
        (r, _) => r,
    }
}

pub(crate) fn lift<T>(sub: Sub<T>) -> Step<T> {
    match sub {
        Sub::Send(r) => Step::Send(r),
        Sub::Sleep(d) => Step::Sleep(d),
        Sub::Done(r) => Step::Done(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::{AuthorizeOptions, Config, Contract, FileDescriptor, KeySet, PrivateKey, Sdk};
    use crate::{TransportErrorKind, UserAccessToken};
    use digime_crypto::jws;
    use serde_json::{Map, Value};

    fn respond(status: u16, headers: &[(&str, &str)], body: &str) -> Response<Vec<u8>> {
        let mut b = Response::builder().status(status);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(body.as_bytes().to_vec()).unwrap()
    }

    fn claims_of(req: &Request<Body>) -> Map<String, Value> {
        let auth = req.headers()["authorization"].to_str().unwrap();
        let jwt = auth.strip_prefix("Bearer ").unwrap();
        let payload = jws::Compact::parse(jwt).unwrap().payload().unwrap();
        serde_json::from_slice(&payload).unwrap()
    }

    fn sdk_with_post_retries() -> (Sdk, Contract) {
        let mut config = Config::new("app").unwrap();
        config.retry.methods.push(Method::POST);
        config.retry.base_delay = Duration::from_millis(10);
        config.retry.max_jitter = Duration::ZERO;
        let contract = Contract::new("c", PrivateKey::generate().unwrap()).unwrap();
        (Sdk::new(config), contract)
    }

    #[test]
    fn every_retry_is_freshly_signed_and_retry_after_is_honoured() {
        let (sdk, contract) = sdk_with_post_retries();
        let mut flow = sdk
            .authorize_url(
                &contract,
                "https://app.example/cb",
                "s",
                AuthorizeOptions::default(),
            )
            .unwrap();
        let now = SystemTime::now();
        let Step::Send(first) = flow.poll(now) else {
            panic!()
        };
        flow.handle_transport_error(TransportError::new(TransportErrorKind::Connect, "refused"));
        assert!(matches!(flow.poll(now), Step::Sleep(d) if d == Duration::from_millis(10)));
        let Step::Send(second) = flow.poll(now) else {
            panic!()
        };
        flow.handle_response(respond(503, &[("retry-after", "7")], ""));
        assert!(matches!(flow.poll(now), Step::Sleep(d) if d == Duration::from_secs(7)));
        let Step::Send(third) = flow.poll(now) else {
            panic!()
        };
        let nonces: Vec<_> = [&first, &second, &third]
            .iter()
            .map(|r| claims_of(r)["nonce"].as_str().unwrap().to_owned())
            .collect();
        assert!(nonces[0] != nonces[1] && nonces[1] != nonces[2] && nonces[0] != nonces[2]);
        let challenges: Vec<_> = [&first, &third]
            .iter()
            .map(|r| claims_of(r)["code_challenge"].as_str().unwrap().to_owned())
            .collect();
        assert_ne!(challenges[0], challenges[1], "a new PKCE pair per attempt");
        // The limit (2 retries) is reached: the last error is reported.
        flow.handle_response(respond(
            503,
            &[],
            r#"{"error":{"code":"Busy","message":"later"}}"#,
        ));
        match flow.poll(now) {
            Step::Done(Err(Error::Api(api))) => assert_eq!(api.status, 503),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_failure_after_a_refresh_still_hands_over_the_new_token() {
        let sdk = Sdk::new(Config::new("app").unwrap());
        let server = PrivateKey::generate().unwrap();
        sdk.use_static_server_keys(KeySet::from_keys([("k".to_string(), server.public_key())]));
        let contract = Contract::new("c", PrivateKey::generate().unwrap()).unwrap();
        let token: UserAccessToken = serde_json::from_str(
            r#"{"accessToken":{"value":"old","expiry":1},"refreshToken":{"value":"r1","expiry":2}}"#,
        )
        .unwrap();
        let mut push = sdk
            .push_to_library(&contract, &token, &FileDescriptor::new("text/plain"))
            .unwrap();
        let now = SystemTime::now();
        let Step::Send(_) = push.poll(now) else {
            panic!()
        };
        push.handle_response(respond(401, &[], ""));
        let Step::Send(refresh) = push.poll(now) else {
            panic!()
        };
        assert_eq!(claims_of(&refresh)["refresh_token"], "r1");
        let claims = r#"{"access_token":{"value":"new","expires_on":4000000000},"refresh_token":{"value":"r2","expires_on":4000000000}}"#;
        let signed = jws::sign(
            br#"{"alg":"PS512","typ":"JWT","kid":"k"}"#,
            claims.as_bytes(),
            &server,
        )
        .unwrap();
        push.handle_response(respond(201, &[], &format!(r#"{{"token":"{signed}"}}"#)));
        assert!(matches!(
            push.poll(now),
            Step::Event(Event::TokenRefreshed(_))
        ));
        let Step::Send(retry) = push.poll(now) else {
            panic!()
        };
        assert_eq!(claims_of(&retry)["access_token"], "new");
        // The retry fails, even with another 401: no second refresh, and the rotated
        // token is not lost.
        push.handle_response(respond(
            401,
            &[],
            r#"{"error":{"code":"InvalidToken","message":"no"}}"#,
        ));
        match push.poll(now) {
            Step::Done(Err(e)) => {
                assert_eq!(
                    e.refreshed_token().unwrap().refresh_token.value.expose(),
                    "r2"
                );
                assert_eq!(e.api().unwrap().code, ErrorCode::InvalidToken);
                assert!(!e.needs_reauthorization());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn no_flow_shows_a_secret_in_debug() {
        let sdk = Sdk::new(Config::new("app").unwrap());
        let contract = Contract::new("c", PrivateKey::generate().unwrap()).unwrap();
        let token: UserAccessToken = serde_json::from_str(
            r#"{"accessToken":{"value":"SECRET-AT","expiry":1},"refreshToken":{"value":"SECRET-RT","expiry":2}}"#,
        )
        .unwrap();
        let session = crate::SessionKey::new("SECRET-SK").unwrap();
        let code = crate::AuthorizationCode::new("SECRET-CODE");
        let verifier = digime_crypto::CodeVerifier::generate().unwrap();
        let descriptor = FileDescriptor::new("text/plain");
        let shown = [
            format!("{:?}", sdk.read_accounts(&contract, &token)),
            format!("{:?}", sdk.refresh_token(&contract, &token)),
            format!(
                "{:?}",
                sdk.exchange_code_for_token(&contract, &code, &verifier)
                    .unwrap()
            ),
            format!(
                "{:?}",
                sdk.read_file(&contract, &token, &session, "f", crate::Output::Stream)
                    .unwrap()
            ),
            format!(
                "{:?}",
                sdk.read_all_files::<()>(&contract, &token, &session, Default::default())
            ),
            format!(
                "{:?}",
                sdk.push_to_library(&contract, &token, &descriptor).unwrap()
            ),
            format!("{:?}", sdk.contract_details(&contract)),
            format!(
                "{:?}",
                sdk.reauthorize_url(
                    &contract,
                    "https://a.example/cb",
                    &token,
                    Default::default()
                )
                .unwrap()
            ),
            format!(
                "{:?}",
                sdk.onboard_service_url(
                    &contract,
                    "https://a.example/cb",
                    &token,
                    Default::default()
                )
                .unwrap()
            ),
            format!(
                "{:?}",
                sdk.reauthorize_account_url(
                    &contract,
                    "https://a.example/cb",
                    &token,
                    "acc",
                    Default::default()
                )
                .unwrap()
            ),
            format!(
                "{:?}",
                sdk.revoke_account_permission_url(&contract, &token, "acc", "https://a.example/r")
                    .unwrap()
            ),
            format!("{:?}", sdk.delete_user(&contract, &token)),
            format!(
                "{:?}",
                sdk.delete_account(&contract, &token, "acc").unwrap()
            ),
        ];
        for text in shown {
            assert!(!text.contains("SECRET"), "{text}");
        }
    }
}
