//! POST `oauth/token` (`docs/protocol.md`, "Token"): the code exchange and the
//! refresh, each answered with a server token verified against the pinned key set.

use super::token_field;
use crate::config::Contract;
use crate::error::{ApiError, Error, ErrorCode, TransportError};
use crate::flow::{Flow, Leg, Step, Sub, lift, misuse};
use crate::jwks::VerifyToken;
use crate::sdk::Sdk;
use crate::token::{Token, User, UserAccessToken};
use crate::wire::{self, Body};
use digime_crypto::{CodeVerifier, SecretString};
use http::{Method, Request, Response};
use serde_json::{Map, Value};
use std::time::SystemTime;

/// Maps a verified token-response payload to a `UserAccessToken` (docs/protocol.md, "Token").
pub fn token_from_claims(
    claims: &serde_json::Map<String, Value>,
) -> Result<UserAccessToken, Error> {
    let tok = |name: &str| -> Result<Token, Error> {
        let obj = claims
            .get(name)
            .and_then(Value::as_object)
            .ok_or_else(|| Error::Decode {
                context: "token",
                detail: format!("no {name} object"),
            })?;
        let value = obj
            .get("value")
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty());
        let expiry = obj.get("expires_on").and_then(Value::as_u64);
        match (value, expiry) {
            (Some(v), Some(e)) => Ok(Token {
                value: crate::token::bounded_token_value(name, v)?,
                expiry: e,
            }),
            _ => Err(Error::Decode {
                context: "token",
                detail: format!("{name} lacks a value or a numeric expires_on"),
            }),
        }
    };
    Ok(UserAccessToken {
        access_token: tok("access_token")?,
        refresh_token: tok("refresh_token")?,
        user: User {
            id: claims.get("sub").and_then(Value::as_str).map(str::to_owned),
        },
        consent_id: claims
            .get("consentid")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
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

/// Reads a verified token payload into a token.
pub(crate) type ReadClaims = fn(&Map<String, Value>) -> Result<UserAccessToken, Error>;

enum TokenPhase {
    Post(Leg),
    Verify(VerifyToken),
    Finished,
}

/// Exchanges an authorization code, or refreshes a token, for a verified
/// [`UserAccessToken`] (docs/protocol.md, "Token").
pub struct TokenFlow {
    sdk: Sdk,
    contract: Contract,
    grant: Grant,
    /// Claims added to the request's (the postbox era's `redirect_uri`).
    extra_claims: Map<String, Value>,
    read_claims: ReadClaims,
    phase: TokenPhase,
}

impl std::fmt::Debug for TokenFlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let grant = match self.grant {
            Grant::Code { .. } => "authorization_code",
            Grant::Refresh { .. } => "refresh_token",
        };
        let phase = match self.phase {
            TokenPhase::Post(_) => "token",
            TokenPhase::Verify(_) => "verify",
            TokenPhase::Finished => "finished",
        };
        f.debug_struct("TokenFlow")
            .field("contract", &self.contract.id())
            .field("grant", &grant)
            .field("phase", &phase)
            .finish_non_exhaustive()
    }
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
            extra_claims: Map::new(),
            read_claims: token_from_claims,
            phase: TokenPhase::Post(Leg::new("exchange_code", Method::POST, policy)),
        }
    }

    pub(crate) fn refresh(sdk: Sdk, contract: Contract, token: &UserAccessToken) -> Self {
        // Retried only when it was not processed: a repeated refresh would present a
        // rotated refresh token (docs/protocol.md, "Retries").
        let policy = sdk.config().retry.unprocessed_only();
        TokenFlow {
            sdk,
            contract,
            grant: Grant::Refresh {
                refresh_token: token.refresh_token.value.clone(),
            },
            extra_claims: Map::new(),
            read_claims: token_from_claims,
            phase: TokenPhase::Post(Leg::new("refresh_token", Method::POST, policy)),
        }
    }

    /// The key that shares this refresh with every call holding the same refresh token
    /// ([`crate::single_flight`]); `None` for a code exchange.
    pub(crate) fn refresh_key(&self) -> Option<crate::single_flight::Key> {
        match &self.grant {
            Grant::Refresh { refresh_token } => Some(crate::single_flight::key(
                &self.contract.client_id(self.sdk.config().application_id()),
                refresh_token.expose(),
            )),
            Grant::Code { .. } => None,
        }
    }

    /// The sharing key of `token`'s refresh token, for this flow's contract.
    pub(crate) fn key_of(&self, token: &UserAccessToken) -> crate::single_flight::Key {
        crate::single_flight::key(
            &self.contract.client_id(self.sdk.config().application_id()),
            token.refresh_token.value.expose(),
        )
    }

    /// The SDK the flow runs for.
    pub(crate) fn sdk(&self) -> &Sdk {
        &self.sdk
    }

    /// Another token shape: `extra_claims` go into the request, and `read_claims`
    /// reads the verified payload (the postbox era's flat tokens).
    pub(crate) fn with_payload(
        mut self,
        extra_claims: Map<String, Value>,
        read_claims: ReadClaims,
    ) -> Self {
        self.extra_claims = extra_claims;
        self.read_claims = read_claims;
        self
    }

    fn poll_sub(&mut self, now: SystemTime) -> Sub<UserAccessToken> {
        loop {
            match &mut self.phase {
                TokenPhase::Post(leg) => {
                    let (sdk, contract, grant, extra) =
                        (&self.sdk, &self.contract, &self.grant, &self.extra_claims);
                    match leg.poll(now, |now| {
                        build_token_request(sdk, contract, grant, extra, now)
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
                            Sub::Done(result.and_then(|claims| (self.read_claims)(&claims)))
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
    extra_claims: &Map<String, Value>,
    now: SystemTime,
) -> Result<Request<Body>, Error> {
    let mut claims = extra_claims.clone();
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
