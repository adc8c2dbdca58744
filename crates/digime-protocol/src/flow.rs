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
//! the kept response body through `handle_body` (writing what it outputs), then
//! `handle_body_end` (or `handle_transport_error`), then poll again; after `Done`, stop.
//! A driver that gets `Send` while it still holds an unread body drops that body.
//! Every request a flow emits is freshly signed (new nonce and timestamp), so retries
//! are never replays.
//!
//! A call made with a user's token ([`AuthedCall`]) refreshes once on 401:
//!
//! ```text
//!  ┌────────┐ 2xx        ┌──────┐
//!  │  Call  ├───────────▶│ Done │◀──────────────┐
//!  └─┬──┬───┘            └──────┘               │ 2xx / any error
//!    │  │ 401 (first)   ┌─────────┐ new token ┌─┴──────┐
//!    │  └──────────────▶│ Refresh ├──────────▶│ Call 2 │ (Event::TokenRefreshed first)
//!    │ other error      └────┬────┘           └────────┘
//!    ▼                       │ refresh refused
//!  Done(Err)            Done(Err(ReauthorizationRequired))
//! ```

use crate::auth::{self, AuthorizeOptions, AuthorizeUrl, Session};
use crate::config::{Contract, SessionKey};
use crate::error::{ApiError, Error, ErrorCode, TransportError};
use crate::jwks::{self, KeySet};
use crate::retry::{Outcome, RetryPolicy};
use crate::sdk::Sdk;
use crate::token::UserAccessToken;
use crate::wire::{self, Body};
use digime_crypto::{CodeVerifier, SecretString, random};
use http::{Method, Request, Response};
use serde_json::{Map, Value};
use std::time::{Duration, SystemTime};

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
    Error::InvalidInput(format!("flow driven out of order: {what}"))
}

// ---------------------------------------------------------------------------------
// One request with retries.

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

/// One logical request: built (signed) per attempt, retried per policy.
pub(crate) struct Leg {
    method: Method,
    policy: RetryPolicy,
    retries: u32,
    state: LegState,
}

impl Leg {
    pub(crate) fn new(method: Method, policy: RetryPolicy) -> Self {
        Leg {
            method,
            policy,
            retries: 0,
            state: LegState::Ready,
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
                    self.state = LegState::InFlight;
                    Sub::Send(req)
                }
                Err(e) => Sub::Done(Err(e)),
            },
            LegState::Got(outcome) => {
                if outcome.as_ref().is_ok_and(|r| r.status().is_success()) {
                    return Sub::Done(outcome.map_err(Error::from));
                }
                let o = match &outcome {
                    Ok(r) => Outcome::Status(r.status().as_u16(), wire::retry_after_header(r)),
                    Err(t) => Outcome::Transport(t),
                };
                let jitter = random::below(u64::MAX).unwrap_or(0);
                if let Some(delay) =
                    self.policy
                        .delay(&self.method, self.retries + 1, o, now, jitter)
                {
                    self.retries += 1;
                    self.state = LegState::Ready;
                    return Sub::Sleep(delay);
                }
                Sub::Done(outcome.map_err(Error::from))
            }
            LegState::InFlight => {
                self.state = LegState::InFlight;
                Sub::Done(Err(misuse("poll before the response was handled")))
            }
            LegState::Finished => Sub::Done(Err(misuse("poll after the request finished"))),
        }
    }

    pub(crate) fn handle(&mut self, outcome: Result<Response<Vec<u8>>, TransportError>) {
        if matches!(self.state, LegState::InFlight) {
            self.state = LegState::Got(outcome);
        }
    }
}

// ---------------------------------------------------------------------------------
// Verifying a server token, fetching the pinned key set when needed.

struct VerifyToken {
    token: String,
    kid: Option<String>,
    fetch: Option<Leg>,
}

impl VerifyToken {
    fn new(token: String) -> Self {
        VerifyToken {
            token,
            kid: None,
            fetch: None,
        }
    }

    fn poll(&mut self, sdk: &Sdk, now: SystemTime) -> Sub<Map<String, Value>> {
        let config = sdk.config();
        let jwks_url = config.jwks_url();
        if self.kid.is_none() {
            let header = match jwks::check_header(&self.token, &jwks_url) {
                Ok(h) => h,
                Err(e) => return Sub::Done(Err(e)),
            };
            if let Some(key) = sdk.key_cache().get(&header.kid, now, config.jwks_ttl) {
                return Sub::Done(jwks::verify(&self.token, &key, now));
            }
            self.kid = Some(header.kid);
            self.fetch = Some(Leg::new(Method::GET, config.retry.clone()));
        }
        let Some(leg) = self.fetch.as_mut() else {
            return Sub::Done(Err(misuse("verification already finished")));
        };
        let step = leg.poll(now, |_| {
            Ok(wire::accept_json(wire::request(
                Method::GET,
                &jwks_url,
                None,
                Body::Empty,
            )?))
        });
        match step {
            Sub::Send(r) => Sub::Send(r),
            Sub::Sleep(d) => Sub::Sleep(d),
            Sub::Done(Err(e)) => Sub::Done(Err(e)),
            Sub::Done(Ok(resp)) => {
                if !wire::is_success(&resp) {
                    return Sub::Done(Err(wire::error_from_response(&resp, now)));
                }
                let set = match KeySet::parse(resp.body()) {
                    Ok(s) => s,
                    Err(e) => return Sub::Done(Err(e)),
                };
                let kid = self.kid.clone().unwrap_or_default();
                let key = set.get(&kid).cloned();
                sdk.key_cache().store(set, now);
                match key {
                    Some(key) => Sub::Done(jwks::verify(&self.token, &key, now)),
                    None => Sub::Done(Err(Error::UnknownSigningKey { kid })),
                }
            }
        }
    }

    fn handle(&mut self, outcome: Result<Response<Vec<u8>>, TransportError>) {
        if let Some(leg) = self.fetch.as_mut() {
            leg.handle(outcome);
        }
    }
}

/// Reads `{"token": "<JWS>", ...}` from a success body.
fn token_field(body: &[u8], context: &'static str) -> Result<(String, Map<String, Value>), Error> {
    let decode = |detail: &str| Error::Decode {
        context,
        detail: detail.to_owned(),
    };
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) else {
        return Err(decode("body is not a JSON object"));
    };
    match obj.get("token").and_then(Value::as_str) {
        Some(t) if !t.is_empty() => Ok((t.to_owned(), obj)),
        _ => Err(decode("no token in the response")),
    }
}

// ---------------------------------------------------------------------------------
// oauth/token: code exchange and refresh.

#[derive(Clone)]
enum Grant {
    Code {
        code: SecretString,
        verifier: CodeVerifier,
    },
    Refresh {
        refresh_token: SecretString,
    },
}

/// The shape of the token payload and the claims of the request.
#[derive(Clone)]
pub(crate) enum TokenFormat {
    /// Today's nested `{access_token:{value,expires_on}, ...}` (auth.md §7.2).
    Nested,
    /// SDK v4's flat `{access_token, refresh_token, expires_on}`, with a `redirect_uri`
    /// claim in the request (write.md §5.3.3, §5.3.4).
    Flat {
        /// The `redirect_uri` claim.
        redirect_uri: String,
    },
}

enum TokenPhase {
    Post(Leg),
    Verify(VerifyToken),
    Finished,
}

/// Exchanges an authorization code, or refreshes a token, for a verified
/// [`UserAccessToken`] (auth.md §7, §8).
pub struct TokenFlow {
    sdk: Sdk,
    contract: Contract,
    grant: Grant,
    format: TokenFormat,
    phase: TokenPhase,
}

impl TokenFlow {
    pub(crate) fn exchange(
        sdk: Sdk,
        contract: Contract,
        code: &str,
        verifier: CodeVerifier,
    ) -> Self {
        let policy = sdk.config().retry.clone();
        TokenFlow {
            sdk,
            contract,
            grant: Grant::Code {
                code: SecretString::new(code),
                verifier,
            },
            format: TokenFormat::Nested,
            phase: TokenPhase::Post(Leg::new(Method::POST, policy)),
        }
    }

    pub(crate) fn refresh(sdk: Sdk, contract: Contract, token: &UserAccessToken) -> Self {
        TokenFlow {
            sdk,
            contract,
            grant: Grant::Refresh {
                refresh_token: token.refresh_token.value.clone(),
            },
            format: TokenFormat::Nested,
            // The refresh never follows the user's retry options (auth.md §1.3).
            phase: TokenPhase::Post(Leg::new(Method::POST, RetryPolicy::never())),
        }
    }

    /// Uses the SDK v4 (legacy ongoing postbox) token format.
    pub(crate) fn with_format(mut self, format: TokenFormat) -> Self {
        self.format = format;
        self
    }

    fn poll_sub(&mut self, now: SystemTime) -> Sub<UserAccessToken> {
        loop {
            match &mut self.phase {
                TokenPhase::Post(leg) => {
                    let (sdk, contract, grant, format) =
                        (&self.sdk, &self.contract, &self.grant, &self.format);
                    match leg.poll(now, |now| {
                        build_token_request(sdk, contract, grant, format, now)
                    }) {
                        Sub::Send(r) => return Sub::Send(r),
                        Sub::Sleep(d) => return Sub::Sleep(d),
                        Sub::Done(Err(e)) => {
                            self.phase = TokenPhase::Finished;
                            return Sub::Done(Err(e));
                        }
                        Sub::Done(Ok(resp)) => {
                            if !wire::is_success(&resp) {
                                self.phase = TokenPhase::Finished;
                                return Sub::Done(Err(self.refusal(&resp, now)));
                            }
                            match token_field(resp.body(), "token") {
                                Ok((token, _)) => {
                                    self.phase = TokenPhase::Verify(VerifyToken::new(token))
                                }
                                Err(e) => {
                                    self.phase = TokenPhase::Finished;
                                    return Sub::Done(Err(e));
                                }
                            }
                        }
                    }
                }
                TokenPhase::Verify(v) => {
                    return match v.poll(&self.sdk, now) {
                        Sub::Send(r) => Sub::Send(r),
                        Sub::Sleep(d) => Sub::Sleep(d),
                        Sub::Done(result) => {
                            self.phase = TokenPhase::Finished;
                            Sub::Done(result.and_then(|claims| match &self.format {
                                TokenFormat::Nested => auth::token_from_claims(&claims),
                                TokenFormat::Flat { .. } => {
                                    crate::legacy::token_from_flat_claims(&claims)
                                }
                            }))
                        }
                    };
                }
                TokenPhase::Finished => return Sub::Done(Err(misuse("poll after Done"))),
            }
        }
    }

    /// A refused refresh means the user must authorize again.
    fn refusal(&self, resp: &Response<Vec<u8>>, now: SystemTime) -> Error {
        let err = wire::error_from_response(resp, now);
        match (&self.grant, err) {
            (Grant::Refresh { .. }, Error::Api(api))
                if api.status == 401 && api.code == ErrorCode::InvalidToken =>
            {
                Error::ReauthorizationRequired(api)
            }
            (
                Grant::Refresh { .. },
                Error::UnexpectedStatus {
                    status: 401, body, ..
                },
            ) => Error::ReauthorizationRequired(ApiError {
                status: 401,
                code: ErrorCode::InvalidToken,
                message: if body.is_empty() {
                    "refresh refused".into()
                } else {
                    body
                },
                reference: None,
                retry_after: None,
            }),
            (_, e) => e,
        }
    }

    fn handle(&mut self, outcome: Result<Response<Vec<u8>>, TransportError>) {
        match &mut self.phase {
            TokenPhase::Post(leg) => leg.handle(outcome),
            TokenPhase::Verify(v) => v.handle(outcome),
            TokenPhase::Finished => {}
        }
    }
}

fn build_token_request(
    sdk: &Sdk,
    contract: &Contract,
    grant: &Grant,
    format: &TokenFormat,
    now: SystemTime,
) -> Result<Request<Body>, Error> {
    let mut claims = Map::new();
    if let TokenFormat::Flat { redirect_uri } = format {
        claims.insert("redirect_uri".into(), redirect_uri.as_str().into());
    }
    match grant {
        Grant::Code { code, verifier } => {
            claims.insert("code".into(), code.expose().into());
            claims.insert("code_verifier".into(), verifier.expose().into());
            claims.insert("grant_type".into(), "authorization_code".into());
        }
        Grant::Refresh { refresh_token } => {
            claims.insert("grant_type".into(), "refresh_token".into());
            claims.insert("refresh_token".into(), refresh_token.expose().into());
        }
    }
    let config = sdk.config();
    let jwt = wire::sign_request_jwt(config, contract, now, claims)?;
    let mut req = wire::request(
        Method::POST,
        &config.api("oauth/token"),
        Some(&jwt),
        Body::Empty,
    )?;
    if matches!(grant, Grant::Refresh { .. }) {
        req.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
    }
    Ok(wire::accept_json(req))
}

fn lift<T>(sub: Sub<T>) -> Step<T> {
    match sub {
        Sub::Send(r) => Step::Send(r),
        Sub::Sleep(d) => Step::Sleep(d),
        Sub::Done(r) => Step::Done(r),
    }
}

impl Flow for TokenFlow {
    type Output = UserAccessToken;
    fn poll(&mut self, now: SystemTime) -> Step<UserAccessToken> {
        lift(self.poll_sub(now))
    }
    fn handle_response(&mut self, response: Response<Vec<u8>>) {
        self.handle(Ok(response));
    }
    fn handle_transport_error(&mut self, error: TransportError) {
        self.handle(Err(error));
    }
}

// ---------------------------------------------------------------------------------
// oauth/authorize → verified preauthorization code → onboard URL.

enum AuthorizePhase {
    Post(Leg),
    Verify(VerifyToken, Option<Session>),
    Finished,
}

/// What an [`AuthorizeFlow`] makes of the preauthorization code.
pub(crate) enum AuthorizeTarget {
    /// The onboard URL; the request has the JSON body `{agent, actions}`.
    Onboard,
    /// The SDK v4 ongoing-postbox deep link (write.md §5.3.2): the request has no body.
    PostboxDeepLink {
        /// The session the deep link carries.
        session_key: SessionKey,
    },
}

/// Builds the authorization URL (auth.md §5): POST `oauth/authorize` with a fresh PKCE
/// pair per attempt, verify the server's token, build the onboard URL.
pub struct AuthorizeFlow {
    sdk: Sdk,
    contract: Contract,
    callback: String,
    state: Option<String>,
    options: AuthorizeOptions,
    target: AuthorizeTarget,
    verifier: Option<CodeVerifier>,
    phase: AuthorizePhase,
}

impl AuthorizeFlow {
    pub(crate) fn new(
        sdk: Sdk,
        contract: Contract,
        callback: String,
        state: String,
        options: AuthorizeOptions,
    ) -> Self {
        let policy = sdk.config().retry.clone();
        AuthorizeFlow {
            sdk,
            contract,
            callback,
            state: Some(state),
            options,
            target: AuthorizeTarget::Onboard,
            verifier: None,
            phase: AuthorizePhase::Post(Leg::new(Method::POST, policy)),
        }
    }

    /// The pre-authorization of an SDK v4 ongoing postbox: no body, no `access_token`,
    /// `state` only when given; the result is the `digime://postbox/create` deep link.
    pub(crate) fn postbox_deep_link(
        sdk: Sdk,
        contract: Contract,
        redirect_uri: String,
        state: Option<String>,
        session_key: SessionKey,
    ) -> Self {
        let policy = sdk.config().retry.clone();
        AuthorizeFlow {
            sdk,
            contract,
            callback: redirect_uri,
            state,
            options: AuthorizeOptions::default(),
            target: AuthorizeTarget::PostboxDeepLink { session_key },
            verifier: None,
            phase: AuthorizePhase::Post(Leg::new(Method::POST, policy)),
        }
    }

    fn poll_sub(&mut self, now: SystemTime) -> Sub<AuthorizeUrl> {
        loop {
            match &mut self.phase {
                AuthorizePhase::Post(leg) => {
                    let (sdk, contract, callback, state, options, target, verifier) = (
                        &self.sdk,
                        &self.contract,
                        &self.callback,
                        &self.state,
                        &self.options,
                        &self.target,
                        &mut self.verifier,
                    );
                    let step = leg.poll(now, |now| {
                        // A new PKCE pair per attempt; the caller gets the last one.
                        let v = CodeVerifier::generate()?;
                        let mut claims = Map::new();
                        if let Some(t) = &options.user_access_token {
                            claims.insert(
                                "access_token".into(),
                                t.access_token.value.expose().into(),
                            );
                        }
                        claims.insert("code_challenge".into(), v.challenge().into());
                        claims.insert("code_challenge_method".into(), "S256".into());
                        claims.insert("redirect_uri".into(), callback.as_str().into());
                        claims.insert("response_mode".into(), "query".into());
                        claims.insert("response_type".into(), "code".into());
                        if let Some(state) = state {
                            claims.insert("state".into(), state.as_str().into());
                        }
                        *verifier = Some(v);
                        let config = sdk.config();
                        let jwt = wire::sign_request_jwt(config, contract, now, claims)?;
                        if let AuthorizeTarget::PostboxDeepLink { .. } = target {
                            return Ok(wire::accept_json(wire::request(
                                Method::POST,
                                &config.api("oauth/authorize"),
                                Some(&jwt),
                                Body::Empty,
                            )?));
                        }
                        let mut body = Map::new();
                        body.insert("agent".into(), wire::agent_json(config));
                        if let Some(actions) = &options.session_options {
                            body.insert(
                                "actions".into(),
                                serde_json::to_value(actions)
                                    .map_err(|e| Error::InvalidInput(e.to_string()))?,
                            );
                        }
                        let bytes = serde_json::to_vec(&body)
                            .map_err(|e| Error::InvalidInput(e.to_string()))?;
                        Ok(wire::accept_json(wire::request(
                            Method::POST,
                            &config.api("oauth/authorize"),
                            Some(&jwt),
                            Body::Bytes(bytes),
                        )?))
                    });
                    match step {
                        Sub::Send(r) => return Sub::Send(r),
                        Sub::Sleep(d) => return Sub::Sleep(d),
                        Sub::Done(Err(e)) => return self.finish(Err(e)),
                        Sub::Done(Ok(resp)) => {
                            if !wire::is_success(&resp) {
                                return self.finish(Err(wire::error_from_response(&resp, now)));
                            }
                            match token_field(resp.body(), "authorize").and_then(|(t, obj)| {
                                Ok((t, parse_session(obj.get("session"), "authorize")?))
                            }) {
                                Ok((token, session)) => {
                                    self.phase =
                                        AuthorizePhase::Verify(VerifyToken::new(token), session)
                                }
                                Err(e) => return self.finish(Err(e)),
                            }
                        }
                    }
                }
                AuthorizePhase::Verify(v, session) => {
                    return match v.poll(&self.sdk, now) {
                        Sub::Send(r) => Sub::Send(r),
                        Sub::Sleep(d) => Sub::Sleep(d),
                        Sub::Done(Err(e)) => self.finish(Err(e)),
                        Sub::Done(Ok(claims)) => {
                            let session = session.take();
                            let code =
                                match claims.get("preauthorization_code").and_then(Value::as_str) {
                                    Some(c) if !c.is_empty() => c.to_owned(),
                                    _ => {
                                        return self.finish(Err(Error::Decode {
                                            context: "authorize",
                                            detail: "no preauthorization_code in the token".into(),
                                        }));
                                    }
                                };
                            let Some(code_verifier) = self.verifier.take() else {
                                return self.finish(Err(misuse("no verifier")));
                            };
                            let url = match &self.target {
                                AuthorizeTarget::Onboard => auth::onboard_url(
                                    self.sdk.config(),
                                    "authorize",
                                    &code,
                                    &self.options,
                                    None,
                                ),
                                AuthorizeTarget::PostboxDeepLink { session_key } => {
                                    crate::legacy::ongoing_postbox_url(
                                        self.sdk.config(),
                                        &code,
                                        &self.callback,
                                        session_key,
                                    )
                                }
                            };
                            self.finish(Ok(AuthorizeUrl {
                                url,
                                code_verifier,
                                session,
                            }))
                        }
                    };
                }
                AuthorizePhase::Finished => return Sub::Done(Err(misuse("poll after Done"))),
            }
        }
    }

    fn finish(&mut self, r: Result<AuthorizeUrl, Error>) -> Sub<AuthorizeUrl> {
        self.phase = AuthorizePhase::Finished;
        Sub::Done(r)
    }
}

/// Parses an optional `session` object `{key, expiry(ms)}`.
pub(crate) fn parse_session(
    v: Option<&Value>,
    context: &'static str,
) -> Result<Option<Session>, Error> {
    let Some(v) = v else { return Ok(None) };
    let key = v
        .get("key")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty());
    let expiry = v.get("expiry").and_then(Value::as_u64);
    match (key, expiry) {
        (Some(key), Some(expiry)) => Ok(Some(Session {
            key: SessionKey::new(key)?,
            expiry,
        })),
        _ => Err(Error::Decode {
            context,
            detail: "session lacks a key or a numeric expiry".into(),
        }),
    }
}

impl Flow for AuthorizeFlow {
    type Output = AuthorizeUrl;
    fn poll(&mut self, now: SystemTime) -> Step<AuthorizeUrl> {
        lift(self.poll_sub(now))
    }
    fn handle_response(&mut self, response: Response<Vec<u8>>) {
        self.handle(Ok(response));
    }
    fn handle_transport_error(&mut self, error: TransportError) {
        self.handle(Err(error));
    }
}

impl AuthorizeFlow {
    fn handle(&mut self, outcome: Result<Response<Vec<u8>>, TransportError>) {
        match &mut self.phase {
            AuthorizePhase::Post(leg) => leg.handle(outcome),
            AuthorizePhase::Verify(v, _) => v.handle(outcome),
            AuthorizePhase::Finished => {}
        }
    }
}

// ---------------------------------------------------------------------------------
// Calls made with a user's token, wrapped in refresh-on-401 (auth.md §9).

/// One API call made with a user's access token.
pub trait UserOperation {
    /// What the call returns.
    type Output;
    /// The HTTP method (for the retry policy).
    fn method(&self) -> Method;
    /// The retry policy of this call.
    fn retry_policy(&self, sdk: &Sdk) -> RetryPolicy;
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

// One phase is live at a time and a flow lives as long as one call: boxing buys nothing.
#[allow(clippy::large_enum_variant)]
enum AuthedPhase {
    Call(Leg),
    Refresh(Box<TokenFlow>),
    Finished,
}

/// Runs a [`UserOperation`], refreshing the token once on 401 and trying again with a
/// freshly signed request. Emits [`Event::TokenRefreshed`] when it refreshed; the new
/// token is also in the result, or in [`Error::AfterRefresh`] if the retry failed.
pub struct AuthedCall<O> {
    sdk: Sdk,
    contract: Contract,
    op: O,
    token: UserAccessToken,
    refreshed: bool,
    may_refresh: bool,
    phase: AuthedPhase,
}

/// Whether a 401 answer should make the caller refresh the token (auth.md §9.2): any
/// 401 for file reads and pushes, otherwise only `InvalidToken` or a body that is not a
/// standard error.
pub(crate) fn refresh_wanted(status: u16, body: &[u8], any_401: bool) -> bool {
    status == 401
        && (any_401
            || match wire::parse_error_body(401, body) {
                Some(api) => api.code == ErrorCode::InvalidToken,
                None => true,
            })
}

/// The same question asked of an error a call returned (for callers that refresh on
/// the call's behalf, see [`AuthedCall::without_refresh`]).
pub(crate) fn error_wants_refresh(error: &Error, any_401: bool) -> bool {
    match error {
        Error::Api(api) => api.status == 401 && (any_401 || api.code == ErrorCode::InvalidToken),
        Error::UnexpectedStatus { status, .. } => *status == 401,
        _ => false,
    }
}

impl<O: UserOperation> AuthedCall<O> {
    /// Wraps `op`, to be run with `token`.
    pub fn new(sdk: Sdk, contract: Contract, token: UserAccessToken, op: O) -> Self {
        let leg = Leg::new(op.method(), op.retry_policy(&sdk));
        AuthedCall {
            sdk,
            contract,
            op,
            token,
            refreshed: false,
            may_refresh: true,
            phase: AuthedPhase::Call(leg),
        }
    }

    /// Never refreshes: a 401 ends the call with its error, for a caller that
    /// refreshes once on behalf of many concurrent calls.
    pub fn without_refresh(mut self) -> Self {
        self.may_refresh = false;
        self
    }

    /// The operation.
    pub fn operation(&self) -> &O {
        &self.op
    }

    fn should_refresh(&self, resp: &Response<Vec<u8>>) -> bool {
        self.may_refresh
            && !self.refreshed
            && refresh_wanted(
                resp.status().as_u16(),
                resp.body(),
                self.op.refresh_on_any_401(),
            )
    }

    fn finish(&mut self, r: Result<O::Output, Error>) -> Step<Authed<O::Output>> {
        self.phase = AuthedPhase::Finished;
        let refreshed = self.refreshed.then(|| self.token.clone());
        Step::Done(match (r, refreshed) {
            (Ok(value), refreshed_token) => Ok(Authed {
                value,
                refreshed_token,
            }),
            // The refresh rotated the token: never let an error swallow the new one.
            (Err(error), Some(token)) => Err(Error::AfterRefresh {
                refreshed_token: Box::new(token),
                error: Box::new(error),
            }),
            (Err(error), None) => Err(error),
        })
    }
}

impl<O: UserOperation> Flow for AuthedCall<O> {
    type Output = Authed<O::Output>;

    fn poll(&mut self, now: SystemTime) -> Step<Self::Output> {
        loop {
            match &mut self.phase {
                AuthedPhase::Call(leg) => {
                    let (sdk, contract, token, op) =
                        (&self.sdk, &self.contract, &self.token, &self.op);
                    match leg.poll(now, |now| op.build(sdk, contract, token, now)) {
                        Sub::Send(r) => return Step::Send(r),
                        Sub::Sleep(d) => return Step::Sleep(d),
                        Sub::Done(Err(e)) => return self.finish(Err(e)),
                        Sub::Done(Ok(resp)) => {
                            if wire::is_success(&resp) {
                                let r = self.op.parse(resp);
                                return self.finish(r);
                            }
                            if self.should_refresh(&resp) {
                                let flow = TokenFlow::refresh(
                                    self.sdk.clone(),
                                    self.contract.clone(),
                                    &self.token,
                                );
                                self.phase = AuthedPhase::Refresh(Box::new(flow));
                                continue;
                            }
                            return self.finish(Err(wire::error_from_response(&resp, now)));
                        }
                    }
                }
                AuthedPhase::Refresh(flow) => match flow.poll_sub(now) {
                    Sub::Send(r) => return Step::Send(r),
                    Sub::Sleep(d) => return Step::Sleep(d),
                    Sub::Done(Err(e)) => return self.finish(Err(e)),
                    Sub::Done(Ok(token)) => {
                        self.token = token.clone();
                        self.refreshed = true;
                        self.phase = AuthedPhase::Call(Leg::new(
                            self.op.method(),
                            self.op.retry_policy(&self.sdk),
                        ));
                        return Step::Event(Event::TokenRefreshed(token));
                    }
                },
                AuthedPhase::Finished => return Step::Done(Err(misuse("poll after Done"))),
            }
        }
    }

    fn handle_response(&mut self, response: Response<Vec<u8>>) {
        match &mut self.phase {
            AuthedPhase::Call(leg) => leg.handle(Ok(response)),
            AuthedPhase::Refresh(f) => f.handle(Ok(response)),
            AuthedPhase::Finished => {}
        }
    }

    fn handle_transport_error(&mut self, error: TransportError) {
        match &mut self.phase {
            AuthedPhase::Call(leg) => leg.handle(Err(error)),
            AuthedPhase::Refresh(f) => f.handle(Err(error)),
            AuthedPhase::Finished => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, FileDescriptor, KeySet, PrivateKey, TransportErrorKind};
    use digime_crypto::jws;

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
}
