//! The request shape behind every onboard URL (`docs/protocol.md`, "Authorize" and
//! "Reference codes"): a POST signed with the call's claims, answered with
//! `{"token": <server JWS>, "session"?}`, whose verified payload carries the code the
//! onboard page takes. `oauth/authorize` ([`super::authorize`]) and
//! `oauth/token/reference` ([`super::reference`]) are both this request.

use super::{Session, parse_session, token_field};
use crate::config::Contract;
use crate::error::{Error, TransportError};
use crate::flow::{Leg, Sub, misuse};
use crate::jwks::VerifyToken;
use crate::refresh::{Attempted, refresh_wanted};
use crate::sdk::Sdk;
use crate::wire::{self, Body};
use digime_crypto::CodeVerifier;
use http::{Method, Response};
use serde_json::{Map, Value};
use std::time::SystemTime;

/// What the server issued: the code for the onboard page, the session created with
/// it, and the PKCE verifier of the attempt that got it (for a request with PKCE).
pub(crate) struct IssuedCode {
    pub(crate) code: String,
    pub(crate) session: Option<Session>,
    pub(crate) verifier: Option<CodeVerifier>,
}

enum Phase {
    Post(Leg),
    Verify(VerifyToken, Option<Session>),
    Finished,
}

/// One POST answered by a signed code, with its retries and the verification of the
/// server's token (which may fetch the key set).
pub(crate) struct CodeRequest {
    path: &'static str,
    context: &'static str,
    code_claim: &'static str,
    claims: Map<String, Value>,
    pkce: bool,
    body: Option<Vec<u8>>,
    refreshable: bool,
    verifier: Option<CodeVerifier>,
    phase: Phase,
}

impl CodeRequest {
    /// POST `path` signed with `claims` (plus `client_id`, `nonce`, `timestamp`), with
    /// a JSON `body` or none; the code is the `code_claim` of the server's token.
    pub(crate) fn new(
        sdk: &Sdk,
        path: &'static str,
        context: &'static str,
        code_claim: &'static str,
        claims: Map<String, Value>,
        body: Option<Vec<u8>>,
    ) -> Self {
        CodeRequest {
            path,
            context,
            code_claim,
            claims,
            pkce: false,
            body,
            refreshable: false,
            verifier: None,
            phase: Phase::Post(Leg::new(context, Method::POST, sdk.config().retry.clone())),
        }
    }

    /// Adds a fresh PKCE pair to each attempt (`code_challenge`, S256); the verifier of
    /// the last attempt is in the [`IssuedCode`].
    pub(crate) fn with_pkce(mut self) -> Self {
        self.pkce = true;
        self
    }

    /// A 401 that asks for a refresh (`docs/protocol.md`, "Refresh on 401") ends with
    /// [`Attempted::Refresh`] rather than an error: the claims carry a user's token.
    pub(crate) fn refreshable(mut self) -> Self {
        self.refreshable = true;
        self
    }

    pub(crate) fn poll(
        &mut self,
        sdk: &Sdk,
        contract: &Contract,
        now: SystemTime,
    ) -> Sub<Attempted<IssuedCode>> {
        loop {
            match &mut self.phase {
                Phase::Post(leg) => {
                    let (claims, pkce, body, verifier) =
                        (&self.claims, self.pkce, &self.body, &mut self.verifier);
                    let path = self.path;
                    let step = leg.poll(now, |now| {
                        let config = sdk.config();
                        let mut claims = claims.clone();
                        if pkce {
                            // A new PKCE pair per attempt; the caller gets the last one.
                            let v = CodeVerifier::generate()?;
                            claims.insert("code_challenge".into(), v.challenge().into());
                            claims.insert("code_challenge_method".into(), "S256".into());
                            *verifier = Some(v);
                        }
                        let jwt = wire::sign_request_jwt(config, contract, now, claims)?;
                        let body = body.clone().map_or(Body::Empty, Body::Bytes);
                        Ok(wire::accept_json(wire::request(
                            Method::POST,
                            &config.api(path),
                            Some(&jwt),
                            body,
                        )?))
                    });
                    match step {
                        Sub::Send(r) => return Sub::Send(r),
                        Sub::Sleep(d) => return Sub::Sleep(d),
                        Sub::Done(Err(e)) => return self.finish(Err(e)),
                        Sub::Done(Ok(resp)) => match self.answered(&resp, now) {
                            Ok(next) => self.phase = next,
                            Err(end) => {
                                self.phase = Phase::Finished;
                                return Sub::Done(end);
                            }
                        },
                    }
                }
                Phase::Verify(v, session) => {
                    return match v.poll(sdk, now) {
                        Sub::Send(r) => Sub::Send(r),
                        Sub::Sleep(d) => Sub::Sleep(d),
                        Sub::Done(Err(e)) => self.finish(Err(e)),
                        Sub::Done(Ok(claims)) => {
                            let session = session.take();
                            let code = match claims.get(self.code_claim).and_then(Value::as_str) {
                                Some(c) if !c.is_empty() => c.to_owned(),
                                _ => {
                                    return self.finish(Err(Error::Decode {
                                        context: self.context,
                                        detail: format!("no {} in the token", self.code_claim),
                                    }));
                                }
                            };
                            let verifier = self.verifier.take();
                            if self.pkce && verifier.is_none() {
                                return self.finish(Err(misuse("no verifier")));
                            }
                            self.finish(Ok(IssuedCode {
                                code,
                                session,
                                verifier,
                            }))
                        }
                    };
                }
                Phase::Finished => return Sub::Done(Err(misuse("poll after Done"))),
            }
        }
    }

    /// The phase after the POST's answer, or how the request ends.
    fn answered(
        &self,
        resp: &Response<Vec<u8>>,
        now: SystemTime,
    ) -> Result<Phase, Result<Attempted<IssuedCode>, Error>> {
        if !wire::is_success(resp) {
            let error = wire::error_from_response(resp, now);
            let status = resp.status().as_u16();
            return Err(
                if self.refreshable && refresh_wanted(status, resp.body(), false) {
                    Ok(Attempted::Refresh(Err(error)))
                } else {
                    Err(error)
                },
            );
        }
        let (token, obj) = token_field(resp.body(), self.context).map_err(Err)?;
        let session = parse_session(obj.get("session"), self.context).map_err(Err)?;
        Ok(Phase::Verify(VerifyToken::new(token), session))
    }

    fn finish(&mut self, r: Result<IssuedCode, Error>) -> Sub<Attempted<IssuedCode>> {
        self.phase = Phase::Finished;
        Sub::Done(r.map(Attempted::Final))
    }

    pub(crate) fn handle(&mut self, outcome: Result<Response<Vec<u8>>, TransportError>) {
        match &mut self.phase {
            Phase::Post(leg) => leg.handle(outcome),
            Phase::Verify(v, _) => v.handle(outcome),
            Phase::Finished => {}
        }
    }

    /// The phase, for `Debug`.
    pub(crate) fn phase_name(&self) -> &'static str {
        match self.phase {
            Phase::Post(_) => "request",
            Phase::Verify(..) => "verify",
            Phase::Finished => "finished",
        }
    }
}

/// The end of a [`CodeRequest`] that cannot refresh: an [`Attempted::Refresh`] is the
/// error it carries.
pub(crate) fn no_refresh(sub: Sub<Attempted<IssuedCode>>) -> Sub<IssuedCode> {
    match sub {
        Sub::Send(r) => Sub::Send(r),
        Sub::Sleep(d) => Sub::Sleep(d),
        Sub::Done(Ok(Attempted::Final(c))) => Sub::Done(Ok(c)),
        Sub::Done(Ok(Attempted::Refresh(r))) => Sub::Done(r),
        Sub::Done(Err(e)) => Sub::Done(Err(e)),
    }
}
