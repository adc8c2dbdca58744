//! POST `oauth/authorize` and the onboard URL (`docs/protocol.md`, "Authorize"): a
//! fresh PKCE pair per attempt, the server's token verified, the URL built.

use super::code::{CodeRequest, IssuedCode, no_refresh};
use super::reference::{CreateReference, ReferenceKind};
use super::{AuthorizeOptions, AuthorizeUrl, SampleData, SourceType, SourcesScope};
use crate::call::ClientCall;
use crate::config::{Config, Contract};
use crate::error::{Error, TransportError};
use crate::flow::{Flow, Step, Sub, misuse};
use crate::sdk::Sdk;
use crate::wire;
use http::Response;
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

/// The optional parameters of an onboard page's query (docs/protocol.md, "Authorize"),
/// borrowed from the options of the call that makes the URL.
#[derive(Default)]
pub(crate) struct PageQuery<'a> {
    pub(crate) source_type: SourceType,
    pub(crate) service_id: Option<u64>,
    pub(crate) sample_data: Option<&'a SampleData>,
    pub(crate) locale: Option<&'a str>,
    pub(crate) include_sample_data_only_sources: Option<bool>,
    pub(crate) storage_ref: Option<&'a str>,
    pub(crate) trigger_query: Option<bool>,
    pub(crate) sources_scope: Option<&'a SourcesScope>,
}

impl<'a> PageQuery<'a> {
    pub(crate) fn of(options: &'a AuthorizeOptions) -> Self {
        PageQuery {
            source_type: options.source_type,
            service_id: options.service_id,
            sample_data: options.sample_data.as_ref(),
            locale: options.locale.as_deref(),
            include_sample_data_only_sources: options.include_sample_data_only_sources,
            storage_ref: None,
            trigger_query: options.trigger_query,
            sources_scope: options.sources_scope.as_ref(),
        }
    }

    /// `{onboard}{page}?code=…&sourceType=…&…`, each parameter in its place and only
    /// under its condition.
    pub(crate) fn url(&self, config: &Config, page: &str, code: &str) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("code", code);
        q.append_pair("sourceType", self.source_type.as_str());
        if let Some(id) = self.service_id.filter(|&id| id != 0) {
            q.append_pair("service", &id.to_string());
        }
        if let Some(sd) = self.sample_data {
            q.append_pair("sampleDataSet", &sd.data_set);
            if sd.auto_onboard {
                q.append_pair("sampleDataAutoOnboard", "true");
            }
        }
        if let Some(l) = self.locale {
            q.append_pair("lng", l);
        }
        if let Some(b) = self.include_sample_data_only_sources {
            q.append_pair("includeSampleDataOnlySources", bool_str(b));
        }
        if let Some(r) = self.storage_ref {
            q.append_pair("storageRef", r);
        }
        if let Some(b) = self.trigger_query {
            q.append_pair("triggerQuery", bool_str(b));
        }
        if let Some(scope) = self.sources_scope {
            // Encoded twice, as the official SDK does (encodeURIComponent, then the query).
            let json = serde_json::to_string(scope).unwrap_or_default();
            q.append_pair("sourcesScope", &encode_uri_component(&json));
        }
        format!("{}{}?{}", config.onboard_url(), page, q.finish())
    }
}

pub(crate) fn bool_str(b: bool) -> &'static str {
    if b { "true" } else { "false" }
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
    PageQuery {
        storage_ref,
        ..PageQuery::of(options)
    }
    .url(config, page, code)
}

// ---------------------------------------------------------------------------------
// oauth/authorize → verified preauthorization code → onboard URL.

/// Makes the URL of an [`AuthorizeFlow`] from the verified preauthorization code.
pub(crate) type MakeUrl = Box<dyn FnOnce(&Config, &str) -> String + Send>;

/// What an [`AuthorizeFlow`] makes of the code.
enum Target {
    /// The `authorize` page's URL, from the options.
    Onboard,
    /// Another URL, made by the caller (the postbox era's pre-authorization, the
    /// `user-reauth` page).
    Made(Option<MakeUrl>),
}

/// Builds the authorization URL (docs/protocol.md, "Authorize"): POST `oauth/authorize` with a fresh PKCE
/// pair per attempt, verify the server's token, then, with a
/// [`AuthorizeOptions::storage_id`], POST `reference` for the URL's `storageRef`, and
/// build the onboard URL. The user-reauth URL is the same flow over
/// `oauth/token/reference` ([`super::ReauthorizeFlow`]).
pub struct AuthorizeFlow {
    sdk: Sdk,
    contract: Contract,
    callback: String,
    options: AuthorizeOptions,
    target: Target,
    request: CodeRequest,
    /// The storage reference being made, with the code it is for.
    storage_ref: Option<(IssuedCode, ClientCall<CreateReference>)>,
}

/// The `{agent, actions?}` body of the calls that create a session with their code.
pub(crate) fn agent_body(
    config: &Config,
    actions: Option<&super::SessionOptions>,
) -> Result<Vec<u8>, Error> {
    let mut body = Map::new();
    body.insert("agent".into(), wire::agent_json(config));
    if let Some(actions) = actions {
        body.insert(
            "actions".into(),
            serde_json::to_value(actions).map_err(|e| Error::InvalidInput(e.to_string()))?,
        );
    }
    serde_json::to_vec(&body).map_err(|e| Error::InvalidInput(e.to_string()))
}

/// The claims of `oauth/authorize` but the PKCE pair.
fn authorize_claims(
    callback: &str,
    state: Option<&str>,
    access_token: Option<&str>,
) -> Map<String, Value> {
    let mut claims = Map::new();
    if let Some(t) = access_token {
        claims.insert("access_token".into(), t.into());
    }
    claims.insert("redirect_uri".into(), callback.into());
    claims.insert("response_mode".into(), "query".into());
    claims.insert("response_type".into(), "code".into());
    if let Some(state) = state {
        claims.insert("state".into(), state.into());
    }
    claims
}

impl AuthorizeFlow {
    pub(crate) fn new(
        sdk: Sdk,
        contract: Contract,
        callback: String,
        state: String,
        options: AuthorizeOptions,
    ) -> Result<Self, Error> {
        let access_token = options
            .user_access_token
            .as_ref()
            .map(|t| t.access_token.value.expose());
        let claims = authorize_claims(&callback, Some(&state), access_token);
        let body = agent_body(sdk.config(), options.session_options.as_ref())?;
        let request =
            CodeRequest::new(&sdk, PATH, "authorize", CODE_CLAIM, claims, Some(body)).with_pkce();
        Ok(AuthorizeFlow {
            sdk,
            contract,
            callback,
            options,
            target: Target::Onboard,
            request,
            storage_ref: None,
        })
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
        let claims = authorize_claims(&redirect_uri, state.as_deref(), None);
        let request =
            CodeRequest::new(&sdk, PATH, "authorize", CODE_CLAIM, claims, None).with_pkce();
        Self::made(sdk, contract, redirect_uri, request, make_url)
    }

    /// A flow of `request` (one with PKCE), whose URL `make_url` builds from the code.
    pub(crate) fn made(
        sdk: Sdk,
        contract: Contract,
        callback: String,
        request: CodeRequest,
        make_url: MakeUrl,
    ) -> Self {
        AuthorizeFlow {
            sdk,
            contract,
            callback,
            options: AuthorizeOptions::default(),
            target: Target::Made(Some(make_url)),
            request,
            storage_ref: None,
        }
    }

    /// The URL from the verified code (and the storage reference, if any).
    fn done(&mut self, issued: IssuedCode, storage_ref: Option<&str>) -> Step<AuthorizeUrl> {
        let Some(code_verifier) = issued.verifier else {
            return Step::Done(Err(misuse("no verifier")));
        };
        let config = self.sdk.config();
        let url = match &mut self.target {
            Target::Onboard => onboard_url(
                config,
                "authorize",
                &issued.code,
                &self.options,
                storage_ref,
            ),
            Target::Made(make_url) => match make_url.take() {
                Some(make_url) => make_url(config, &issued.code),
                None => return Step::Done(Err(misuse("URL made twice"))),
            },
        };
        Step::Done(Ok(AuthorizeUrl {
            url,
            code_verifier,
            session: issued.session,
        }))
    }
}

const PATH: &str = "oauth/authorize";
const CODE_CLAIM: &str = "preauthorization_code";

impl Flow for AuthorizeFlow {
    type Output = AuthorizeUrl;
    fn poll(&mut self, now: SystemTime) -> Step<AuthorizeUrl> {
        if let Some((_, call)) = &mut self.storage_ref {
            return match call.poll(now) {
                Step::Done(Ok(reference)) => match self.storage_ref.take() {
                    Some((issued, _)) => self.done(issued, Some(&reference)),
                    None => Step::Done(Err(misuse("no code"))),
                },
                Step::Done(Err(e)) => Step::Done(Err(e)),
                Step::Send(r) => Step::Send(r),
                Step::Sleep(d) => Step::Sleep(d),
                Step::Event(e) => Step::Event(e),
                Step::Receive => Step::Done(Err(misuse("a reference never streams"))),
            };
        }
        let issued = match no_refresh(self.request.poll(&self.sdk, &self.contract, now)) {
            Sub::Send(r) => return Step::Send(r),
            Sub::Sleep(d) => return Step::Sleep(d),
            Sub::Done(Err(e)) => return Step::Done(Err(e)),
            Sub::Done(Ok(issued)) => issued,
        };
        match (&self.target, &self.options.storage_id) {
            (Target::Onboard, Some(storage)) => {
                let op = match CreateReference::new(ReferenceKind::Storage, storage.as_str()) {
                    Ok(op) => op,
                    Err(e) => return Step::Done(Err(e)),
                };
                let call = ClientCall::new(self.sdk.clone(), self.contract.clone(), op);
                self.storage_ref = Some((issued, call));
                self.poll(now)
            }
            _ => self.done(issued, None),
        }
    }
    fn handle_response(&mut self, response: Response<Vec<u8>>) {
        match &mut self.storage_ref {
            Some((_, call)) => call.handle_response(response),
            None => self.request.handle(Ok(response)),
        }
    }
    fn handle_transport_error(&mut self, error: TransportError) {
        match &mut self.storage_ref {
            Some((_, call)) => call.handle_transport_error(error),
            None => self.request.handle(Err(error)),
        }
    }
}

impl std::fmt::Debug for AuthorizeFlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizeFlow")
            .field("contract", &self.contract.id())
            .field("callback", &self.callback)
            .field("phase", &self.request.phase_name())
            .finish_non_exhaustive()
    }
}
