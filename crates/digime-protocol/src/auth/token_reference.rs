//! POST `oauth/token/reference` (`docs/protocol.md`, "Reference codes"): a reference
//! code, signed for with the user's access token, that opens one of three onboard
//! pages for a user who has authorized already.
//!
//! | call | page | PKCE | refresh on 401 | result |
//! |---|---|---|---|---|
//! | [`crate::Sdk::reauthorize_url`] | `user-reauth` | yes | no (the token is dead) | [`super::AuthorizeUrl`] |
//! | [`crate::Sdk::onboard_service_url`] | `onboard` | no | yes | [`OnboardUrl`] |
//! | [`crate::Sdk::reauthorize_account_url`] | `reauthorize` (after POST `reference`) | no | yes | [`OnboardUrl`] |

use super::authorize::{AuthorizeFlow, MakeUrl, PageQuery, agent_body, bool_str};
use super::code::{CodeRequest, IssuedCode};
use super::reference::{CreateReference, ReferenceKind};
use super::{SampleData, Session, SessionOptions, SourceType, SourcesScope, TokenFlow};
use crate::call::ClientCall;
use crate::config::{Config, Contract};
use crate::error::{Error, TransportError};
use crate::flow::{Flow, Step, Sub, misuse};
use crate::refresh::{Attempted, Refreshable, Refreshing};
use crate::sdk::Sdk;
use crate::token::UserAccessToken;
use http::Response;
use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

const PATH: &str = "oauth/token/reference";
const CODE_CLAIM: &str = "reference_code";

/// Everything optional about a user's reauthorization (docs/protocol.md, "Reference
/// codes").
#[derive(Debug, Clone, Default)]
pub struct ReauthorizeOptions {
    /// Echoed on the callback; bind it to the user's browser session.
    pub state: Option<String>,
    /// UI language (`lng`), e.g. `nl`.
    pub locale: Option<String>,
    /// `actions` of the session created with the reauthorization.
    pub session_options: Option<SessionOptions>,
    /// `triggerQuery`: start a read right after (server default true).
    pub trigger_query: Option<bool>,
}

/// Everything optional about adding a service to a user's library (docs/protocol.md,
/// "Reference codes"); the page parameters are those of [`super::AuthorizeOptions`].
#[derive(Debug, Clone, Default)]
pub struct OnboardServiceOptions {
    /// The service to add (`service`), from the discovery API; without it the user
    /// chooses.
    pub service_id: Option<u64>,
    /// `sourceType` (default `pull`).
    pub source_type: SourceType,
    /// Sample data.
    pub sample_data: Option<SampleData>,
    /// UI language (`lng`).
    pub locale: Option<String>,
    /// `includeSampleDataOnlySources`.
    pub include_sample_data_only_sources: Option<bool>,
    /// `triggerQuery`: read the new service's data right after (server default true).
    pub trigger_query: Option<bool>,
    /// `sourcesScope`.
    pub sources_scope: Option<SourcesScope>,
    /// `actions` of the session created with the code.
    pub session_options: Option<SessionOptions>,
    /// Echoed on the callback, when given.
    pub state: Option<String>,
}

/// Everything optional about reauthorizing one account.
#[derive(Debug, Clone, Default)]
pub struct ReauthorizeAccountOptions {
    /// UI language (`lng`).
    pub locale: Option<String>,
}

/// An onboard page to send the user to, and the session created with it. The user's
/// token stays valid: there is no code to exchange afterwards. `Debug` hides the URL's
/// query (its code).
#[derive(Clone)]
pub struct OnboardUrl {
    /// The page's URL.
    pub url: String,
    /// The session created with the code (it reads the new data after the page), if the
    /// server returned one.
    pub session: Option<Session>,
}

impl fmt::Debug for OnboardUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnboardUrl")
            .field("url", &super::redacted_url(&self.url))
            .field("session", &self.session)
            .finish()
    }
}

/// The claims every reference code is asked for with (the PKCE pair aside).
fn claims(token: &UserAccessToken, callback: &str, state: Option<&str>) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert(
        "access_token".into(),
        token.access_token.value.expose().into(),
    );
    claims.insert("redirect_uri".into(), callback.into());
    if let Some(state) = state {
        claims.insert("state".into(), state.into());
    }
    claims
}

// ---------------------------------------------------------------------------------
// user-reauth: a new token pair for the same user, with PKCE, never refreshed.

/// Builds the user-reauthorization URL: POST `oauth/token/reference` with a PKCE pair
/// and the current (possibly expired) access token, then `{onboard}user-reauth`. Its
/// code is exchanged like an authorization's, with the verifier it returns. It is the
/// authorization's flow over another request, and never refreshes.
pub type ReauthorizeFlow = AuthorizeFlow;

pub(crate) fn reauthorize_flow(
    sdk: Sdk,
    contract: Contract,
    token: &UserAccessToken,
    callback: &str,
    options: ReauthorizeOptions,
) -> Result<ReauthorizeFlow, Error> {
    let claims = claims(token, callback, options.state.as_deref());
    let body = agent_body(sdk.config(), options.session_options.as_ref())?;
    let request =
        CodeRequest::new(&sdk, PATH, "reauthorize", CODE_CLAIM, claims, Some(body)).with_pkce();
    let (locale, trigger_query) = (options.locale, options.trigger_query);
    let make_url: MakeUrl = Box::new(move |config: &Config, code: &str| {
        user_reauth_url(config, code, locale.as_deref(), trigger_query)
    });
    Ok(AuthorizeFlow::made(
        sdk,
        contract,
        callback.to_owned(),
        request,
        make_url,
    ))
}

/// `{onboard}user-reauth?code=…[&lng=…][&triggerQuery=…]`.
fn user_reauth_url(
    config: &Config,
    code: &str,
    locale: Option<&str>,
    trigger_query: Option<bool>,
) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("code", code);
    if let Some(l) = locale {
        q.append_pair("lng", l);
    }
    if let Some(b) = trigger_query {
        q.append_pair("triggerQuery", bool_str(b));
    }
    format!("{}user-reauth?{}", config.onboard_url(), q.finish())
}

// ---------------------------------------------------------------------------------
// onboard and reauthorize: refreshed on 401.

#[derive(Debug)]
enum Page {
    Onboard(Box<OnboardServiceOptions>),
    ReauthorizeAccount {
        account_id: String,
        options: ReauthorizeAccountOptions,
    },
}

impl Page {
    fn url(&self, config: &Config, code: &str, account_ref: Option<&str>) -> String {
        match self {
            Page::Onboard(o) => PageQuery {
                source_type: o.source_type,
                service_id: o.service_id,
                sample_data: o.sample_data.as_ref(),
                locale: o.locale.as_deref(),
                include_sample_data_only_sources: o.include_sample_data_only_sources,
                storage_ref: None,
                trigger_query: o.trigger_query,
                sources_scope: o.sources_scope.as_ref(),
            }
            .url(config, "onboard", code),
            Page::ReauthorizeAccount { options, .. } => {
                let mut q = form_urlencoded::Serializer::new(String::new());
                q.append_pair("code", code);
                q.append_pair("accountRef", account_ref.unwrap_or_default());
                if let Some(l) = &options.locale {
                    q.append_pair("lng", l);
                }
                format!("{}reauthorize?{}", config.onboard_url(), q.finish())
            }
        }
    }
}

/// The attempts of [`crate::Sdk::onboard_service_url`] and
/// [`crate::Sdk::reauthorize_account_url`] (a [`Refreshable`]).
pub struct OnboardPage {
    sdk: Sdk,
    contract: Contract,
    token: UserAccessToken,
    callback: String,
    page: Arc<Page>,
}

/// The flow of [`crate::Sdk::onboard_service_url`] and
/// [`crate::Sdk::reauthorize_account_url`]: refreshed once on a 401 that asks for it.
pub type OnboardFlow = Refreshing<OnboardPage>;

impl OnboardPage {
    pub(crate) fn onboard(
        sdk: Sdk,
        contract: Contract,
        token: UserAccessToken,
        callback: &str,
        options: OnboardServiceOptions,
    ) -> OnboardFlow {
        Refreshing::start(OnboardPage {
            sdk,
            contract,
            token,
            callback: callback.to_owned(),
            page: Arc::new(Page::Onboard(Box::new(options))),
        })
    }

    pub(crate) fn reauthorize_account(
        sdk: Sdk,
        contract: Contract,
        token: UserAccessToken,
        callback: &str,
        account_id: &str,
        options: ReauthorizeAccountOptions,
    ) -> OnboardFlow {
        Refreshing::start(OnboardPage {
            sdk,
            contract,
            token,
            callback: callback.to_owned(),
            page: Arc::new(Page::ReauthorizeAccount {
                account_id: account_id.to_owned(),
                options,
            }),
        })
    }
}

impl fmt::Debug for OnboardPage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let page = match &*self.page {
            Page::Onboard(_) => "onboard",
            Page::ReauthorizeAccount { .. } => "reauthorize",
        };
        f.debug_struct("OnboardPage")
            .field("contract", &self.contract.id())
            .field("page", &page)
            .finish_non_exhaustive()
    }
}

impl Refreshable for OnboardPage {
    type Output = OnboardUrl;
    type Attempt = OnboardAttempt;

    fn attempt(&mut self) -> OnboardAttempt {
        let (state, body, context) = match &*self.page {
            Page::Onboard(o) => (
                o.state.as_deref(),
                agent_body(self.sdk.config(), o.session_options.as_ref()),
                "onboard",
            ),
            // No state and no actions (docs/protocol.md, "Reference codes").
            Page::ReauthorizeAccount { .. } => (
                None,
                agent_body(self.sdk.config(), None),
                "reauthorize account",
            ),
        };
        let phase = match body {
            Ok(body) => {
                let claims = claims(&self.token, &self.callback, state);
                let request =
                    CodeRequest::new(&self.sdk, PATH, context, CODE_CLAIM, claims, Some(body))
                        .refreshable();
                AttemptPhase::Code(Box::new(request))
            }
            Err(e) => AttemptPhase::Ended(Some(e)),
        };
        OnboardAttempt {
            sdk: self.sdk.clone(),
            contract: self.contract.clone(),
            page: self.page.clone(),
            phase,
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
    }
}

enum AttemptPhase {
    Code(Box<CodeRequest>),
    Reference(Box<ClientCall<CreateReference>>, Option<IssuedCode>),
    /// Finished, with the error to report if it failed before its first request.
    Ended(Option<Error>),
}

/// One attempt of an [`OnboardFlow`]: the reference code with the current token, then
/// (to reauthorize an account) the account's reference, then the URL.
pub struct OnboardAttempt {
    sdk: Sdk,
    contract: Contract,
    page: Arc<Page>,
    phase: AttemptPhase,
}

impl fmt::Debug for OnboardAttempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = match &self.phase {
            AttemptPhase::Code(r) => r.phase_name(),
            AttemptPhase::Reference(..) => "reference",
            AttemptPhase::Ended(_) => "finished",
        };
        f.debug_struct("OnboardAttempt")
            .field("phase", &phase)
            .finish_non_exhaustive()
    }
}

impl OnboardAttempt {
    fn done(
        &mut self,
        issued: IssuedCode,
        account_ref: Option<&str>,
    ) -> Step<Attempted<OnboardUrl>> {
        self.phase = AttemptPhase::Ended(None);
        let url = self.page.url(self.sdk.config(), &issued.code, account_ref);
        Step::Done(Ok(Attempted::Final(OnboardUrl {
            url,
            session: issued.session,
        })))
    }
}

impl Flow for OnboardAttempt {
    type Output = Attempted<OnboardUrl>;

    fn poll(&mut self, now: SystemTime) -> Step<Attempted<OnboardUrl>> {
        match &mut self.phase {
            AttemptPhase::Code(request) => match request.poll(&self.sdk, &self.contract, now) {
                Sub::Send(r) => Step::Send(r),
                Sub::Sleep(d) => Step::Sleep(d),
                Sub::Done(Err(e)) => Step::Done(Err(e)),
                Sub::Done(Ok(Attempted::Refresh(Err(e)))) => {
                    Step::Done(Ok(Attempted::Refresh(Err(e))))
                }
                Sub::Done(Ok(Attempted::Final(issued) | Attempted::Refresh(Ok(issued)))) => {
                    match &*self.page {
                        Page::Onboard(_) => self.done(issued, None),
                        Page::ReauthorizeAccount { account_id, .. } => {
                            match CreateReference::new(ReferenceKind::Account, account_id.as_str())
                            {
                                Ok(op) => {
                                    let call = ClientCall::new(
                                        self.sdk.clone(),
                                        self.contract.clone(),
                                        op,
                                    );
                                    self.phase =
                                        AttemptPhase::Reference(Box::new(call), Some(issued));
                                    self.poll(now)
                                }
                                Err(e) => Step::Done(Err(e)),
                            }
                        }
                    }
                }
            },
            AttemptPhase::Reference(call, issued) => match call.poll(now) {
                Step::Send(r) => Step::Send(r),
                Step::Sleep(d) => Step::Sleep(d),
                Step::Done(Err(e)) => Step::Done(Err(e)),
                Step::Done(Ok(account_ref)) => match issued.take() {
                    Some(issued) => self.done(issued, Some(&account_ref)),
                    None => Step::Done(Err(misuse("poll after Done"))),
                },
                Step::Receive | Step::Event(_) => Step::Done(Err(misuse("unexpected step"))),
            },
            AttemptPhase::Ended(e) => {
                Step::Done(Err(e.take().unwrap_or_else(|| misuse("poll after Done"))))
            }
        }
    }

    fn handle_response(&mut self, response: Response<Vec<u8>>) {
        match &mut self.phase {
            AttemptPhase::Code(r) => r.handle(Ok(response)),
            AttemptPhase::Reference(call, _) => call.handle_response(response),
            AttemptPhase::Ended(_) => {}
        }
    }

    fn handle_transport_error(&mut self, error: TransportError) {
        match &mut self.phase {
            AttemptPhase::Code(r) => r.handle(Err(error)),
            AttemptPhase::Reference(call, _) => call.handle_transport_error(error),
            AttemptPhase::Ended(_) => {}
        }
    }
}
