//! POST `oauth/authorize` and the onboard URL (`docs/protocol.md`, "Authorize"): a
//! fresh PKCE pair per attempt, the server's token verified, the URL built.

use super::{AuthorizeOptions, AuthorizeUrl, Session, parse_session, token_field};
use crate::config::{Config, Contract};
use crate::error::{Error, TransportError};
use crate::flow::{Flow, Leg, Step, Sub, lift, misuse};
use crate::jwks::VerifyToken;
use crate::sdk::Sdk;
use crate::wire::{self, Body};
use digime_crypto::CodeVerifier;
use http::{Method, Response};
use serde_json::{Map, Value};
use std::time::SystemTime;

/// `encodeURIComponent`: everything but `A-Z a-z 0-9 - _ . ! ~ * ' ( )` is %-encoded.
pub(crate) fn encode_uri_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Builds `{onboard}{page}?code=…&…` with the optional parameters of docs/protocol.md, "Authorize" in
/// their order (`storage_ref` only for `authorize`).
pub fn onboard_url(
    config: &Config,
    page: &str,
    code: &str,
    options: &AuthorizeOptions,
    storage_ref: Option<&str>,
) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("code", code);
    q.append_pair("sourceType", options.source_type.as_str());
    if let Some(id) = options.service_id.filter(|&id| id != 0) {
        q.append_pair("service", &id.to_string());
    }
    if let Some(sd) = &options.sample_data {
        q.append_pair("sampleDataSet", &sd.data_set);
        if sd.auto_onboard {
            q.append_pair("sampleDataAutoOnboard", "true");
        }
    }
    if let Some(l) = &options.locale {
        q.append_pair("lng", l);
    }
    if let Some(b) = options.include_sample_data_only_sources {
        q.append_pair(
            "includeSampleDataOnlySources",
            if b { "true" } else { "false" },
        );
    }
    if let Some(r) = storage_ref {
        q.append_pair("storageRef", r);
    }
    if let Some(b) = options.trigger_query {
        q.append_pair("triggerQuery", if b { "true" } else { "false" });
    }
    if let Some(scope) = &options.sources_scope {
        // Encoded twice, as the official SDK does (encodeURIComponent, then the query).
        let json = serde_json::to_string(scope).unwrap_or_default();
        q.append_pair("sourcesScope", &encode_uri_component(&json));
    }
    format!("{}{}?{}", config.onboard_url(), page, q.finish())
}

// ---------------------------------------------------------------------------------
// oauth/authorize → verified preauthorization code → onboard URL.

enum AuthorizePhase {
    Post(Leg),
    Verify(VerifyToken, Option<Session>),
    Finished,
}

/// Makes the URL of an [`AuthorizeFlow`] from the verified preauthorization code.
pub(crate) type MakeUrl = Box<dyn FnOnce(&Config, &str) -> String + Send>;

/// What an [`AuthorizeFlow`] makes of the preauthorization code.
enum Target {
    /// The onboard URL; the request has the JSON body `{agent, actions}`.
    Onboard,
    /// Another URL, made by the caller; the request has no body (the postbox era's
    /// pre-authorization).
    Bare(Option<MakeUrl>),
}

/// Builds the authorization URL (docs/protocol.md, "Authorize"): POST `oauth/authorize` with a fresh PKCE
/// pair per attempt, verify the server's token, build the onboard URL.
pub struct AuthorizeFlow {
    sdk: Sdk,
    contract: Contract,
    callback: String,
    state: Option<String>,
    options: AuthorizeOptions,
    target: Target,
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
            target: Target::Onboard,
            verifier: None,
            phase: AuthorizePhase::Post(Leg::new(Method::POST, policy)),
        }
    }

    /// A pre-authorization without a body or an `access_token` claim, `state` only
    /// when given, whose URL `make_url` builds from the code (the postbox era).
    pub(crate) fn bare(
        sdk: Sdk,
        contract: Contract,
        redirect_uri: String,
        state: Option<String>,
        make_url: MakeUrl,
    ) -> Self {
        let policy = sdk.config().retry.clone();
        AuthorizeFlow {
            sdk,
            contract,
            callback: redirect_uri,
            state,
            options: AuthorizeOptions::default(),
            target: Target::Bare(Some(make_url)),
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
                        if let Target::Bare(_) = target {
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
                            let config = self.sdk.config();
                            let url = match &mut self.target {
                                Target::Onboard => {
                                    onboard_url(config, "authorize", &code, &self.options, None)
                                }
                                Target::Bare(make_url) => match make_url.take() {
                                    Some(make_url) => make_url(config, &code),
                                    None => return self.finish(Err(misuse("URL made twice"))),
                                },
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

impl std::fmt::Debug for AuthorizeFlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let phase = match &self.phase {
            AuthorizePhase::Post(_) => "authorize",
            AuthorizePhase::Verify(..) => "verify",
            AuthorizePhase::Finished => "finished",
        };
        f.debug_struct("AuthorizeFlow")
            .field("contract", &self.contract.id())
            .field("callback", &self.callback)
            .field("phase", &phase)
            .finish_non_exhaustive()
    }
}
