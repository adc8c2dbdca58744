//! Refresh-then-retry: the one combinator behind every call made with a user's token
//! (`docs/protocol.md`, "Refresh on 401").
//!
//! A call is a series of attempts ([`Refreshable`]). An attempt that the server
//! answers with a refused token (or, for a postbox push, a parked file) ends with
//! [`Attempted::Refresh`]; [`Refreshing`] then refreshes the token once, announces it
//! ([`Event::TokenRefreshed`]) and runs one more attempt with it. The rule "a rotated
//! token is never lost" lives here and only here: the new token is in the result
//! ([`Authed::refreshed_token`]), or in [`Error::AfterRefresh`] when the call fails
//! after the refresh.
//!
//! ```text
//!  ┌─────────┐ Final / error ┌──────┐
//!  │ Attempt ├──────────────▶│ Done │◀──────────────┐
//!  └────┬────┘               └──────┘               │ any end
//!       │ Refresh (first)  ┌─────────┐ new token ┌──┴────────┐
//!       └─────────────────▶│ Refresh ├──────────▶│ Attempt 2 │ (Event::TokenRefreshed first)
//!                          └────┬────┘           └───────────┘
//!                               │ refused
//!                   Done(Err(ReauthorizationRequired))
//! ```
//!
//! The refresh is shared with every other call of the process that holds the same
//! refresh token ([`crate::single_flight`]): one refresh for all of them, announced by
//! the call that made it and returned to each. A call whose token a refresh has
//! already superseded uses the new one from its first attempt.
//!
//! [`AuthedCall`] is the combinator over one request ([`UserOperation`]); the file
//! download ([`crate::ReadFile`]) and the postbox push
//! (`legacy::PushToPostbox`) are the same combinator over their own attempts.

use crate::auth::TokenFlow;
use crate::config::Contract;
use crate::error::{Error, ErrorCode, TransportError};
use crate::flow::{Authed, Event, Flow, Leg, Step, Sub, misuse};
use crate::retry::RetryPolicy;
use crate::sdk::Sdk;
use crate::single_flight::SharedRefresh;
use crate::token::UserAccessToken;
use crate::trace;
use crate::wire::{self, Body};
use http::{Method, Request, Response};
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

/// How one attempt of a call made with a user's token ended.
#[derive(Debug)]
pub enum Attempted<T> {
    /// The call's result; nothing to refresh.
    Final(T),
    /// The server wants a fresh token: refresh once and attempt again. When the call
    /// cannot refresh (it already did, it has no token, or refreshing is off), this is
    /// its result.
    Refresh(Result<T, Error>),
}

/// A call made with a user's token, as a series of attempts.
pub trait Refreshable {
    /// What the call returns.
    type Output;
    /// One attempt, with the current token.
    type Attempt: Flow<Output = Attempted<Self::Output>>;
    /// A new attempt with the current token.
    fn attempt(&mut self) -> Self::Attempt;
    /// The refresh of the current token, or `None` when the call has none.
    fn refresh(&self) -> Option<TokenFlow>;
    /// Installs the refreshed token for the next attempts.
    fn set_token(&mut self, token: UserAccessToken);
}

// One phase is live at a time and a flow lives as long as one call: boxing buys nothing.
#[allow(clippy::large_enum_variant)]
enum Phase<A> {
    Attempt(A),
    Refresh(Box<SharedRefresh>),
    Finished,
}

/// Runs a [`Refreshable`] call: refreshes the token at most once, when an attempt asks
/// for it, and attempts again (see the module docs).
pub struct Refreshing<R: Refreshable> {
    calls: R,
    may_refresh: bool,
    /// Whether the one refresh of the call happened (or was taken from another call).
    did_refresh: bool,
    /// Whether the first poll looked for a token that supersedes the caller's.
    looked: bool,
    refreshed: Option<UserAccessToken>,
    phase: Phase<R::Attempt>,
}

impl<R: Refreshable> Refreshing<R> {
    /// Starts the call with its first attempt.
    pub fn start(mut calls: R) -> Self {
        let first = calls.attempt();
        Refreshing {
            calls,
            may_refresh: true,
            did_refresh: false,
            looked: false,
            refreshed: None,
            phase: Phase::Attempt(first),
        }
    }

    /// Never refreshes: an attempt that asks for a refresh ends the call with its
    /// result, for a caller that refreshes once on behalf of many concurrent calls.
    pub fn without_refresh(mut self) -> Self {
        self.may_refresh = false;
        self
    }

    /// The call's attempts.
    pub fn calls(&self) -> &R {
        &self.calls
    }

    /// The call's attempts, taken back (the flow is dropped).
    pub fn into_calls(self) -> R {
        self.calls
    }

    /// The attempt in flight, if any.
    pub fn current_attempt(&self) -> Option<&R::Attempt> {
        match &self.phase {
            Phase::Attempt(a) => Some(a),
            _ => None,
        }
    }

    /// Before the first attempt: a token that a refresh of this process already issued
    /// for the caller's replaces it (the caller's refresh token is spent).
    fn adopt_newer(&mut self, now: SystemTime) {
        let Some(flow) = self.calls.refresh() else {
            return;
        };
        let Some(key) = flow.refresh_key() else {
            return;
        };
        let next = |t: &UserAccessToken| flow.key_of(t);
        if let Some(newer) = flow.sdk().refreshes().superseded(key, now, next) {
            self.calls.set_token(newer.clone());
            self.refreshed = Some(newer);
            self.phase = Phase::Attempt(self.calls.attempt());
        }
    }

    fn finish(&mut self, result: Result<R::Output, Error>) -> Step<Authed<R::Output>> {
        self.phase = Phase::Finished;
        Step::Done(with_refreshed(result, self.refreshed.take()))
    }
}

/// The rule "a rotated token is never lost": a result carries the token a refresh
/// issued, and so does an error ([`Error::AfterRefresh`]).
fn with_refreshed<T>(
    result: Result<T, Error>,
    refreshed: Option<UserAccessToken>,
) -> Result<Authed<T>, Error> {
    match (result, refreshed) {
        (Ok(value), refreshed_token) => Ok(Authed {
            value,
            refreshed_token,
        }),
        (Err(e @ Error::AfterRefresh { .. }), _) => Err(e),
        (Err(error), Some(token)) => Err(Error::AfterRefresh {
            refreshed_token: Box::new(token),
            error: Box::new(error),
        }),
        (Err(error), None) => Err(error),
    }
}

impl<R: Refreshable> Flow for Refreshing<R> {
    type Output = Authed<R::Output>;

    fn poll(&mut self, now: SystemTime) -> Step<Self::Output> {
        if !self.looked {
            self.looked = true;
            self.adopt_newer(now);
        }
        loop {
            match &mut self.phase {
                Phase::Attempt(attempt) => match attempt.poll(now) {
                    Step::Send(r) => return Step::Send(r),
                    Step::Sleep(d) => return Step::Sleep(d),
                    Step::Receive => return Step::Receive,
                    Step::Event(e) => return Step::Event(e),
                    Step::Done(Ok(Attempted::Final(value))) => return self.finish(Ok(value)),
                    Step::Done(Err(e)) => return self.finish(Err(e)),
                    Step::Done(Ok(Attempted::Refresh(fallback))) => {
                        if !self.may_refresh {
                            // Whoever refreshes on this call's behalf must know it wants one.
                            let wrapped = fallback.map_err(|e| Error::RefreshNeeded(Box::new(e)));
                            return self.finish(wrapped);
                        }
                        match (!self.did_refresh).then(|| self.calls.refresh()) {
                            Some(Some(flow)) => {
                                self.did_refresh = true;
                                self.phase = Phase::Refresh(Box::new(SharedRefresh::new(flow)));
                            }
                            _ => return self.finish(fallback),
                        }
                    }
                },
                Phase::Refresh(flow) => match flow.poll(now) {
                    Step::Send(r) => return Step::Send(r),
                    Step::Sleep(d) => return Step::Sleep(d),
                    Step::Done(Err(e)) => return self.finish(Err(e)),
                    Step::Done(Ok(token)) => {
                        let ours = flow.was_ours();
                        self.calls.set_token(token.clone());
                        self.refreshed = Some(token.clone());
                        self.phase = Phase::Attempt(self.calls.attempt());
                        // Announced once, by the call that refreshed; the others only
                        // return it.
                        if ours {
                            trace::token_refreshed();
                            return Step::Event(Event::TokenRefreshed(token));
                        }
                    }
                    Step::Receive | Step::Event(_) => {
                        return self.finish(Err(misuse("unexpected step of a token refresh")));
                    }
                },
                Phase::Finished => return Step::Done(Err(misuse("poll after Done"))),
            }
        }
    }

    fn handle_response(&mut self, response: Response<Vec<u8>>) {
        match &mut self.phase {
            Phase::Attempt(a) => a.handle_response(response),
            Phase::Refresh(f) => f.handle_response(response),
            Phase::Finished => {}
        }
    }

    fn handle_transport_error(&mut self, error: TransportError) {
        match &mut self.phase {
            Phase::Attempt(a) => a.handle_transport_error(error),
            Phase::Refresh(f) => f.handle_transport_error(error),
            Phase::Finished => {}
        }
    }

    fn handle_body(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> bool {
        match &mut self.phase {
            Phase::Attempt(a) => a.handle_body(chunk, out),
            _ => false,
        }
    }

    fn handle_body_end(&mut self, out: &mut Vec<u8>) {
        if let Phase::Attempt(a) = &mut self.phase {
            a.handle_body_end(out);
        }
    }

    fn handle_body_drain(&mut self, out: &mut Vec<u8>) -> bool {
        match &mut self.phase {
            Phase::Attempt(a) => a.handle_body_drain(out),
            _ => false,
        }
    }
}

impl<R: Refreshable + fmt::Debug> fmt::Debug for Refreshing<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = match &self.phase {
            Phase::Attempt(_) => "attempt",
            Phase::Refresh(_) => "refresh",
            Phase::Finished => "finished",
        };
        f.debug_struct("Refreshing")
            .field("calls", &self.calls)
            .field("may_refresh", &self.may_refresh)
            .field("refreshed", &self.refreshed.is_some())
            .field("phase", &phase)
            .finish()
    }
}

// ---------------------------------------------------------------------------------
// One request made with a user's token.

/// One API call made with a user's access token: its request, its response parser
/// and its refresh rule, in the module of its endpoint.
pub trait UserOperation {
    /// What the call returns.
    type Output;
    /// The HTTP method (for the retry policy).
    fn method(&self) -> Method;
    /// The retry policy of this call: by default the configuration's.
    fn retry_policy(&self, sdk: &Sdk) -> RetryPolicy {
        sdk.config().retry.clone()
    }
    /// Builds the request for one attempt, signed with `token`.
    fn build(
        &self,
        sdk: &Sdk,
        contract: &Contract,
        token: &UserAccessToken,
        now: SystemTime,
    ) -> Result<Request<Body>, Error>;
    /// Parses a 2xx response.
    fn parse(&self, response: Response<Vec<u8>>) -> Result<Self::Output, Error>;
    /// Whether every 401 refreshes (file reads and library pushes), or only a 401
    /// whose body is `InvalidToken` or not a standard error.
    fn refresh_on_any_401(&self) -> bool;
}

/// Whether a 401 answer should make the caller refresh the token: any 401 for file
/// reads and pushes; otherwise every 401 but one whose body is the standard error
/// shape `{"error":{"code","message"}}` with a code other than `InvalidToken` (a flat
/// `{"error","message"}` body, plain text or nothing all refresh).
pub(crate) fn refresh_wanted(status: u16, body: &[u8], any_401: bool) -> bool {
    if status != 401 {
        return false;
    }
    if any_401 {
        return true;
    }
    let standard_code = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            let error = v.get("error")?.as_object()?;
            error.get("message")?.as_str()?;
            error.get("code")?.as_str().map(str::to_owned)
        });
    standard_code.is_none_or(|code| ErrorCode::from(code.as_str()) == ErrorCode::InvalidToken)
}

/// Whether an error a call returned asks for a refresh (for callers that refresh on
/// the call's behalf, see [`Refreshing::without_refresh`]): an [`Error::RefreshNeeded`],
/// or, for an error that did not come through such a call, a 401 by the same rule as
/// [`refresh_wanted`] as far as the error tells it.
pub(crate) fn error_wants_refresh(error: &Error, any_401: bool) -> bool {
    match error {
        Error::RefreshNeeded(_) => true,
        Error::Api(api) => api.status == 401 && (any_401 || api.code == ErrorCode::InvalidToken),
        Error::UnexpectedStatus { status, .. } => *status == 401,
        _ => false,
    }
}

/// The server's answer inside an [`Error::RefreshNeeded`], for reporting.
pub(crate) fn without_marker(error: Error) -> Error {
    match error {
        Error::RefreshNeeded(e) => *e,
        e => e,
    }
}

/// The attempts of a [`UserOperation`]: one request each, with the current token.
pub struct UserCall<O> {
    sdk: Sdk,
    contract: Contract,
    token: UserAccessToken,
    op: Arc<O>,
    /// Whether the token was refreshed (logged with the attempts made after).
    refreshed: bool,
}

impl<O> fmt::Debug for UserCall<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserCall")
            .field("operation", &std::any::type_name::<O>())
            .field("contract", &self.contract.id())
            .finish_non_exhaustive()
    }
}

impl<O: UserOperation> Refreshable for UserCall<O> {
    type Output = O::Output;
    type Attempt = OneCall<O>;

    fn attempt(&mut self) -> OneCall<O> {
        let mut leg = Leg::new(
            trace::operation_name::<O>(),
            self.op.method(),
            self.op.retry_policy(&self.sdk),
        );
        if self.refreshed {
            leg.trace.after_refresh();
        }
        OneCall {
            leg,
            sdk: self.sdk.clone(),
            contract: self.contract.clone(),
            token: self.token.clone(),
            op: self.op.clone(),
        }
    }

    fn refresh(&self) -> Option<TokenFlow> {
        Some(TokenFlow::refresh(
            self.sdk.clone(),
            self.contract.clone(),
            &self.token,
        ))
    }

    fn set_token(&mut self, token: UserAccessToken) {
        self.token = token;
        self.refreshed = true;
    }
}

/// One attempt of a [`UserOperation`]: its request, retried as its policy says.
pub struct OneCall<O> {
    sdk: Sdk,
    contract: Contract,
    token: UserAccessToken,
    op: Arc<O>,
    leg: Leg,
}

impl<O> fmt::Debug for OneCall<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OneCall")
            .field("operation", &std::any::type_name::<O>())
            .finish_non_exhaustive()
    }
}

impl<O: UserOperation> OneCall<O> {
    /// Logs this attempt as made after its call's token was refreshed.
    pub(crate) fn after_refresh(mut self, refreshed: bool) -> Self {
        if refreshed {
            self.leg.trace.after_refresh();
        }
        self
    }

    /// A standalone attempt (no refresh), for flows that build on one request.
    pub(crate) fn new(sdk: Sdk, contract: Contract, token: UserAccessToken, op: O) -> Self {
        UserCall {
            sdk,
            contract,
            token,
            op: Arc::new(op),
            refreshed: false,
        }
        .attempt()
    }
}

impl<O: UserOperation> Flow for OneCall<O> {
    type Output = Attempted<O::Output>;

    fn poll(&mut self, now: SystemTime) -> Step<Self::Output> {
        let (sdk, contract, token, op) = (&self.sdk, &self.contract, &self.token, &self.op);
        match self
            .leg
            .poll(now, |now| op.build(sdk, contract, token, now))
        {
            Sub::Send(r) => Step::Send(r),
            Sub::Sleep(d) => Step::Sleep(d),
            Sub::Done(Err(e)) => Step::Done(Err(e)),
            Sub::Done(Ok(resp)) if wire::is_success(&resp) => match self.op.parse(resp) {
                Err(e) => match self.leg.retry_malformed(&e, now) {
                    Some(delay) => Step::Sleep(delay),
                    None => Step::Done(Err(e)),
                },
                ok => Step::Done(ok.map(Attempted::Final)),
            },
            Sub::Done(Ok(resp)) => {
                let error = wire::error_from_response(&resp, now);
                let (status, any) = (resp.status().as_u16(), self.op.refresh_on_any_401());
                Step::Done(if refresh_wanted(status, resp.body(), any) {
                    Ok(Attempted::Refresh(Err(error)))
                } else {
                    Err(error)
                })
            }
        }
    }

    fn handle_response(&mut self, response: Response<Vec<u8>>) {
        self.leg.handle(Ok(response));
    }

    fn handle_transport_error(&mut self, error: TransportError) {
        self.leg.handle(Err(error));
    }
}

/// A [`UserOperation`] run with refresh-on-401: the request, and on a 401 that asks
/// for it, one refresh ([`Event::TokenRefreshed`]) and one more request, freshly
/// signed with the new token.
pub type AuthedCall<O> = Refreshing<UserCall<O>>;

impl<O: UserOperation> Refreshing<UserCall<O>> {
    /// Wraps `op`, to be run with `token`.
    pub fn new(sdk: Sdk, contract: Contract, token: UserAccessToken, op: O) -> Self {
        Refreshing::start(UserCall {
            sdk,
            contract,
            token,
            op: Arc::new(op),
            refreshed: false,
        })
    }

    /// The operation.
    pub fn operation(&self) -> &O {
        &self.calls.op
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attempts scripted by their ends; counts refreshes and attempts.
    #[derive(Debug, Default)]
    struct Scripted {
        ends: Vec<Result<Attempted<u8>, Error>>,
        attempts: usize,
        can_refresh: bool,
    }

    struct End(Option<Result<Attempted<u8>, Error>>);

    impl Flow for End {
        type Output = Attempted<u8>;
        fn poll(&mut self, _: SystemTime) -> Step<Attempted<u8>> {
            Step::Done(self.0.take().unwrap_or(Err(misuse("twice"))))
        }
        fn handle_response(&mut self, _: Response<Vec<u8>>) {}
        fn handle_transport_error(&mut self, _: TransportError) {}
    }

    impl Refreshable for Scripted {
        type Output = u8;
        type Attempt = End;
        fn attempt(&mut self) -> End {
            self.attempts += 1;
            End(Some(self.ends.remove(0)))
        }
        fn refresh(&self) -> Option<TokenFlow> {
            let sdk = Sdk::new(crate::Config::new("app").unwrap());
            let key = crate::PrivateKey::generate().unwrap();
            let contract = Contract::new("c", key).unwrap();
            let token: UserAccessToken = serde_json::from_str(
                r#"{"accessToken":{"value":"a","expiry":1},"refreshToken":{"value":"r","expiry":2}}"#,
            )
            .unwrap();
            self.can_refresh
                .then(|| TokenFlow::refresh(sdk, contract, &token))
        }
        fn set_token(&mut self, _: UserAccessToken) {}
    }

    fn end(flow: &mut Refreshing<Scripted>) -> Result<Authed<u8>, Error> {
        match flow.poll(SystemTime::now()) {
            Step::Done(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_refresh_that_cannot_happen_ends_with_the_fallback() {
        let mut flow = Refreshing::start(Scripted {
            ends: vec![Ok(Attempted::Refresh(Ok(7)))],
            ..Scripted::default()
        });
        assert_eq!(end(&mut flow).unwrap().value, 7);
        assert_eq!(flow.calls().attempts, 1);

        let mut flow = Refreshing::start(Scripted {
            ends: vec![Ok(Attempted::Refresh(Err(misuse("refused"))))],
            can_refresh: true,
            ..Scripted::default()
        })
        .without_refresh();
        // Told not to refresh: the caller learns the call wants one.
        match end(&mut flow) {
            Err(Error::RefreshNeeded(inner)) => assert!(matches!(*inner, Error::Misuse(_))),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_wanted_refresh_starts_the_token_flow() {
        let mut flow = Refreshing::start(Scripted {
            ends: vec![Ok(Attempted::Refresh(Ok(7)))],
            can_refresh: true,
            ..Scripted::default()
        });
        let Step::Send(req) = flow.poll(SystemTime::now()) else {
            panic!("the refresh is sent")
        };
        assert!(req.uri().path().ends_with("oauth/token"));
        assert!(format!("{flow:?}").contains(r#"phase: "refresh""#));
    }

    #[test]
    fn errors_keep_the_rotated_token_once() {
        let token: UserAccessToken = serde_json::from_str(
            r#"{"accessToken":{"value":"a","expiry":1},"refreshToken":{"value":"r2","expiry":2}}"#,
        )
        .unwrap();
        let once = with_refreshed::<u8>(Err(misuse("x")), Some(token.clone())).unwrap_err();
        assert_eq!(
            once.refreshed_token().unwrap().refresh_token.value.expose(),
            "r2"
        );
        let twice = with_refreshed::<u8>(Err(once), Some(token)).unwrap_err();
        assert!(matches!(twice.cause(), Error::Misuse(_)));
        assert!(
            with_refreshed(Ok(1), None)
                .unwrap()
                .refreshed_token
                .is_none()
        );
    }
}
