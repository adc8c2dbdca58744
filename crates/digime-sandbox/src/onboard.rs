//! The onboard pages under `/apps/saas/`, where the URLs the SDK builds send the user:
//! `authorize`, `user-reauth`, `onboard`, `reauthorize` and `revoke`. Each checks its
//! link, then shows its consent page (whose form posts to `{page}/decision`) or, with
//! automatic consent, decides at once, and sends the browser back to the app with a
//! 302 to the redirect URI of its code, merged with that URI's own query.

use crate::catalogue::{CATALOGUE, SampleSet, Service, SourceType, service_by_source};
use crate::common::{html_escape, postbox_key, redirect, saas_postbox, saas_postbox_of};
use crate::demo::{account_reference, new_account};
use crate::library::{account_set, account_set_mut, library_for, visible_accounts};
use crate::state::{
    Persisted, PreAuthorization, ReferenceCode, ReferenceKind, RegisteredContract, UserRecord,
};
use crate::sync::{SessionOptions, parse_options, start_sync};
use crate::tokens::issue_auth_code;
use crate::{ConsentMode, Shared, now_ms, random_id};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;

/// One of the onboard pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Page {
    Authorize,
    UserReauth,
    Onboard,
    Reauthorize,
    Revoke,
}

impl Page {
    const ALL: [Page; 5] = [
        Page::Authorize,
        Page::UserReauth,
        Page::Onboard,
        Page::Reauthorize,
        Page::Revoke,
    ];

    /// Its path under the onboard base.
    fn name(self) -> &'static str {
        match self {
            Page::Authorize => "authorize",
            Page::UserReauth => "user-reauth",
            Page::Onboard => "onboard",
            Page::Reauthorize => "reauthorize",
            Page::Revoke => "revoke",
        }
    }
}

/// The pages and their decisions.
pub(crate) fn routes() -> Router<Shared> {
    let mut router = Router::new();
    for page in Page::ALL {
        router = router
            .route(
                &format!("/apps/saas/{}", page.name()),
                get(
                    move |State(shared): State<Shared>, RawQuery(query): RawQuery| async move {
                        let params = Params::parse(query.unwrap_or_default().as_bytes());
                        run(&shared, page, params, None).await
                    },
                ),
            )
            .route(
                &format!("/apps/saas/{}/decision", page.name()),
                post(
                    move |State(shared): State<Shared>, body: Bytes| async move {
                        let mut params = Params::parse(&body);
                        let allow = match params.take("decision").as_deref() {
                            Some("allow") => true,
                            Some("deny") => false,
                            _ => {
                                return error_page(
                                    StatusCode::BAD_REQUEST,
                                    "ONBOARD_ERROR",
                                    "Unknown decision.",
                                );
                            }
                        };
                        run(&shared, page, params, Some(allow)).await
                    },
                ),
            );
    }
    router
}

// ---------------------------------------------------------------------------
// The link.

/// The query of a page (or the fields of its decision form, which carries them).
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(bytes: &[u8]) -> Params {
        Params(form_urlencoded::parse(bytes).into_owned().collect())
    }
    /// The first value of `key`.
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    /// Removes every `key`; the first value.
    fn take(&mut self, key: &str) -> Option<String> {
        let first = self.get(key).map(str::to_owned);
        self.0.retain(|(k, _)| k != key);
        first
    }
}

/// What a page's link asks for, checked.
#[derive(Debug, Default)]
struct Link {
    source_type: Option<SourceType>,
    /// `service`: a source id of the catalogue.
    service: Option<u64>,
    /// `sampleDataSet`.
    sample_set: Option<String>,
    /// `sampleDataAutoOnboard=true`.
    auto_onboard: bool,
    trigger_query: Option<bool>,
    account_ref: Option<String>,
}

/// The `dataType` values of `sourcesScope`.
const DATA_TYPES: &[&str] = &[
    "medication-information",
    "laboratory-results",
    "appointments",
    "patient-summary-hospital-data",
    "gp-data",
    "mental-health-patient-summary",
    "documents",
    "measurements-vital-signs",
    "allergy-intolerances",
    "images",
    "medication-related-intolerances",
    "referral-to-questionnaire",
    "questionnaire-response",
    "longterm-healthcare-patient-summary",
    "patient-corrections-request",
    "vaccinations",
    "integral-birth-care-process",
];

/// The `organizationType` values of `sourcesScope`.
const ORGANIZATION_TYPES: &[&str] = &[
    "general-practitioner",
    "health-center",
    "hospital",
    "private-treatment-center",
    "specialist-centre",
    "radiotherapy-center",
    "dialysis-center",
    "obstetrics-and-maternity-care",
    "mental-health-care",
    "youth-health-care",
    "psychology-and-psychotherapy",
    "nursing-and-care-homes-and-home-care",
    "disability-care",
    "mentally-disabled-care",
    "daycare-centers",
    "rehabilitation-center",
    "pharmacy",
    "audiological-center",
    "medical-aids",
    "physiotherapy",
    "protected-and-supported-living",
    "dentist",
    "ambulance",
    "health-insurers",
];

/// `sourcesScope`, once decoded by the query parser and once more here (the SDK
/// encodes it twice): a JSON object with an optional `dataType` array and an optional
/// `organizationType`, each of the known values.
fn check_sources_scope(raw: &str) -> Result<(), String> {
    let bad = || "sourcesScope must be an encoded {dataType?: [...], organizationType?}".to_owned();
    let text = crate::common::percent_decode(raw).ok_or_else(bad)?;
    let Ok(Value::Object(scope)) = serde_json::from_str::<Value>(&text) else {
        return Err(bad());
    };
    if let Some(types) = scope.get("dataType") {
        let ok = types.as_array().is_some_and(|a| {
            a.iter()
                .all(|t| t.as_str().is_some_and(|t| DATA_TYPES.contains(&t)))
        });
        if !ok {
            return Err("sourcesScope.dataType must be an array of known data types".into());
        }
    }
    if let Some(org) = scope.get("organizationType")
        && !org
            .as_str()
            .is_some_and(|o| ORGANIZATION_TYPES.contains(&o))
    {
        return Err("sourcesScope.organizationType must be a known organization type".into());
    }
    Ok(())
}

/// A `lng` value: a language tag such as `nl` or `en-GB`.
fn is_locale(s: &str) -> bool {
    (2..=35).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks the parameters of a page's link (the code is looked up later). Unknown
/// parameters are ignored, as a web page does.
fn check_link(page: Page, p: &Params) -> Result<Link, String> {
    let boolean = |name: &str| match p.get(name) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(format!("{name} must be true or false")),
    };
    let locale = || match p.get("lng") {
        Some(l) if !is_locale(l) => {
            Err("lng must be a language tag such as nl or en-GB".to_owned())
        }
        _ => Ok(()),
    };
    let source_type = |required: bool| match p.get("sourceType") {
        None if !required => Ok(None),
        Some(s) => SourceType::parse(s)
            .map(Some)
            .ok_or_else(|| "Unknown sourceType.".to_owned()),
        None => Err("sourceType is required (pull or push)".to_owned()),
    };
    let mut link = Link::default();
    match page {
        Page::UserReauth => {
            locale()?;
            link.trigger_query = boolean("triggerQuery")?;
        }
        // Both pages take the same parameters (authorize also `storageRef`): a page
        // checks its own query whoever built the link; a bad value is the page's error.
        Page::Authorize | Page::Onboard => {
            link.source_type = source_type(page == Page::Onboard)?;
            link.service = match p.get("service") {
                None => None,
                Some(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => Some(
                    s.parse()
                        .map_err(|_| "service must be a source id".to_owned())?,
                ),
                Some(_) => return Err("service must be a source id (a decimal number)".into()),
            };
            match p.get("sampleDataSet") {
                Some("") => return Err("sampleDataSet must not be empty".into()),
                Some(set) => link.sample_set = Some(set.to_owned()),
                None => {}
            }
            link.auto_onboard = boolean("sampleDataAutoOnboard")? == Some(true);
            locale()?;
            boolean("includeSampleDataOnlySources")?;
            link.trigger_query = boolean("triggerQuery")?;
            if let Some(scope) = p.get("sourcesScope") {
                check_sources_scope(scope)?;
            }
            if page == Page::Authorize && p.get("storageRef") == Some("") {
                return Err("storageRef must not be empty".into());
            }
        }
        Page::Reauthorize => {
            link.account_ref = Some(
                p.get("accountRef")
                    .filter(|r| !r.is_empty())
                    .ok_or_else(|| "accountRef is required".to_owned())?
                    .to_owned(),
            );
            locale()?;
        }
        Page::Revoke => {}
    }
    Ok(link)
}

// ---------------------------------------------------------------------------
// Answers.

fn error_page(status: StatusCode, code: &str, text: &str) -> Response {
    (
        status,
        Html(format!(
            "<!doctype html><html><head><title>digi.me sandbox</title></head><body><h1>Authorization failed</h1><p>{}</p><p><code>{}</code></p></body></html>",
            html_escape(text),
            html_escape(code)
        )),
    )
        .into_response()
}

/// A code the page does not know (never issued, spent, or expired long ago): there is
/// nowhere to send the user back to.
fn unknown_code() -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        "INVALID_CODE",
        "This link is unknown, used or expired.",
    )
}

/// The session options of a request's `actions.pull` (checked when the request came;
/// none: the defaults).
fn pull_options(actions: Option<&Value>, now: u64) -> SessionOptions {
    actions
        .and_then(|a| a.get("pull"))
        .and_then(|pull| parse_options(pull, now).ok())
        .unwrap_or_default()
}

/// What a consent page tells the person deciding, besides what the app asks: one
/// labelled line each.
type Facts = Vec<(&'static str, String)>;

/// The contract's facts: the application, the contract and what it may do.
fn contract_facts(contract: Option<&RegisteredContract>, client_id: &str) -> Facts {
    let Some(c) = contract else {
        return vec![("Contract", client_id.to_owned())];
    };
    let access = match (c.kind.can_read(), c.kind.can_write()) {
        (true, true) => "reads your data and writes data into your library",
        (true, false) => "reads your data (it cannot change your library)",
        _ => "writes data into your library (it cannot read it)",
    };
    vec![
        ("Application", format!("{} ({})", c.app_name, c.app_id)),
        ("Contract", format!("{} ({})", c.name, c.contract_id)),
        ("Access", access.to_owned()),
    ]
}

/// A Unix-ms time as the page shows it (`Thu, 03 Dec 2026 05:44:29 GMT`); a time
/// past the year 9999, which a request may well ask for, as its number.
fn shown_time(ms: u64) -> String {
    const YEAR_10000_MS: u64 = 253_402_300_800_000;
    if ms >= YEAR_10000_MS {
        return format!("{ms} ms after 1970");
    }
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
}

/// What a read's `actions.pull` asks for, in words.
fn scope_facts(opts: &SessionOptions) -> Facts {
    let scope = &opts.scope;
    let mut facts = Vec::new();
    let ranges: Vec<String> = (scope.time_ranges.iter())
        .map(|range| match *range {
            (Some(from), Some(to)) => format!("from {} to {}", shown_time(from), shown_time(to)),
            (Some(from), None) => format!("from {}", shown_time(from)),
            (None, Some(to)) => format!("until {}", shown_time(to)),
            (None, None) => "all time".to_owned(),
        })
        .collect();
    facts.push((
        "Time range",
        if ranges.is_empty() {
            "all time".to_owned()
        } else {
            ranges.join("; ")
        },
    ));
    let groups = match &scope.service_groups {
        Some(groups) if !groups.is_empty() => (groups.iter())
            .map(|g| {
                let name = service_group_name(g.id);
                match &g.service_types {
                    Some(types) if !types.is_empty() => format!(
                        "{name}: services {}",
                        (types.iter().map(|t| t.id.to_string()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    _ => format!("{name}: every service"),
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => "every kind of data in your library".to_owned(),
    };
    facts.push(("Data", groups));
    if let Some(criteria) = scope.criteria.as_ref().filter(|c| !c.is_empty()) {
        let mut parts = Vec::new();
        for c in criteria {
            if let Some(m) = &c.mime_type {
                parts.push(format!("types {}", m.join(", ")));
            }
            if let Some(t) = &c.tags {
                parts.push(format!("tags {}", t.join(", ")));
            }
            if let Some(from) = c.from_ms {
                parts.push(format!("from {}", shown_time(from)));
            }
        }
        if !parts.is_empty() {
            facts.push(("Files", parts.join("; ")));
        }
    }
    if opts.fetch == Some(false) {
        facts.push((
            "Sync",
            "reads what your library holds now, without syncing your sources".into(),
        ));
    }
    facts
}

/// A service group's name, from the catalogue's categories.
fn service_group_name(id: u64) -> String {
    (crate::catalogue::CATEGORIES.iter())
        .find(|c| c.id == id)
        .map_or_else(|| format!("service group {id}"), |c| c.name.to_owned())
}

/// The consent page: what `client_id` asks, the facts a person decides on, and a form
/// that posts the link's parameters with the decision to `{page}/decision`. Allow and
/// Deny are alike in size and weight; both are reachable with the keyboard (Tab, then
/// Enter), and the page fits a phone's width.
fn consent_page(
    shared: &Shared,
    page: Page,
    client_id: &str,
    ask: &str,
    facts: Facts,
    p: &Params,
) -> Response {
    let contract = shared.contract(client_id);
    let name = (contract.as_ref()).map_or_else(|| client_id.to_owned(), |c| c.name.clone());
    let hidden: String =
        p.0.iter()
            .map(|(k, v)| {
                format!(
                    "<input type=\"hidden\" name=\"{}\" value=\"{}\">\n",
                    html_escape(k),
                    html_escape(v)
                )
            })
            .collect();
    let rows: String = (contract_facts(contract.as_ref(), client_id).into_iter())
        .chain(facts)
        .map(|(label, value)| {
            format!(
                "<dt>{}</dt><dd>{}</dd>\n",
                html_escape(label),
                html_escape(&value)
            )
        })
        .collect();
    Html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>digi.me sandbox: share your data with {app}?</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 36em; margin: 0 auto; padding: 1.5em 1em; line-height: 1.5 }}
dl {{ display: grid; grid-template-columns: max-content 1fr; gap: .3em 1em; overflow-wrap: anywhere }}
dt {{ font-weight: 600 }}
dd {{ margin: 0 }}
.decision {{ display: flex; flex-wrap: wrap; gap: 1em; margin-top: 1.5em }}
.decision button {{ flex: 1 1 10em; min-height: 3em; font: inherit; font-weight: 600;
  border: 2px solid #222; border-radius: .4em; background: #fff; color: #222; cursor: pointer }}
.decision button:focus-visible {{ outline: 3px solid #1a73e8; outline-offset: 2px }}
@media (max-width: 30em) {{ dl {{ grid-template-columns: 1fr }} dd {{ margin-bottom: .5em }} }}
</style></head>
<body>
<main>
<h1>Share your data with {app}?</h1>
<p><strong>{app}</strong> {ask}</p>
<dl>
{rows}</dl>
<form method="post" action="{page}/decision" class="decision">
{hidden}<button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>
<p><small>Deny sends you back to {app} without sharing anything.</small></p>
</main>
</body></html>"#,
        app = html_escape(&name),
        ask = html_escape(ask),
        page = page.name(),
    ))
    .into_response()
}

/// How a flow reports back to the app.
#[derive(Clone, Copy)]
enum Vocabulary {
    /// `success=true|false`, `errorCode` (authorize, user-reauth, onboard, reauthorize).
    Success,
    /// `result=success|failed`, `error_message` (revoke).
    Result,
}

/// Where the browser goes back to.
struct Back {
    target: url::Url,
    vocabulary: Vocabulary,
    /// Echoed on success and on failure when the code's request had one.
    state: Option<String>,
}

impl Back {
    /// `None` for a redirect URI that does not parse (it was checked when the code was
    /// made, so this does not happen).
    fn to(uri: &str, vocabulary: Vocabulary, state: Option<String>) -> Option<Back> {
        let target = url::Url::parse(uri).ok()?;
        Some(Back {
            target,
            vocabulary,
            state,
        })
    }

    /// A 302 to the target with `params` (then `state`, if any) appended to its query.
    fn redirect(&self, mut params: Vec<(&'static str, String)>) -> Response {
        if let (Vocabulary::Success, Some(s)) = (self.vocabulary, &self.state) {
            params.push(("state", s.clone()));
        }
        self.go(&params)
    }

    /// Like [`Back::redirect`], with parameters after `state`.
    fn go(&self, params: &[(&'static str, String)]) -> Response {
        redirect(self.target.clone(), params)
    }

    fn fail(&self, code: &str) -> Response {
        match self.vocabulary {
            Vocabulary::Success => self.redirect(vec![
                ("success", "false".into()),
                ("errorCode", code.to_owned()),
            ]),
            Vocabulary::Result => self.go(&[
                ("result", "failed".into()),
                ("error_message", code.to_owned()),
            ]),
        }
    }
}

fn bad_redirect() -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        "SERVER_ERROR",
        "The redirect URI is invalid.",
    )
}

/// `answer` once the state is saved; an error page if it cannot be.
fn saved(shared: &Shared, st: &Persisted, answer: Response) -> Response {
    match shared.save(st) {
        Ok(()) => answer,
        Err(e) => error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "SERVER_ERROR",
            &e.to_string(),
        ),
    }
}

// ---------------------------------------------------------------------------
// The flows.

async fn run(shared: &Shared, page: Page, params: Params, decision: Option<bool>) -> Response {
    let Some(code) = params
        .get("code")
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
    else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "INVALID_CODE",
            "The link has no code.",
        );
    };
    let link = match check_link(page, &params) {
        Ok(link) => link,
        Err(fault) => return error_page(StatusCode::BAD_REQUEST, "ONBOARD_ERROR", &fault),
    };
    let decision = decision.or((shared.config.consent == ConsentMode::Auto).then_some(true));
    // `sampleDataAutoOnboard=true` onboards the sample data set without asking.
    let decision = decision.or((link.auto_onboard && link.sample_set.is_some()).then_some(true));
    match page {
        Page::Authorize => authorize(shared, &code, &link, decision, &params).await,
        Page::Revoke => revoke(shared, &code, decision, &params),
        Page::UserReauth | Page::Onboard | Page::Reauthorize => {
            reference(shared, page, &code, &link, decision, &params)
        }
    }
}

/// Whether consenting to this preauthorization must make a new postbox: its contract
/// may write and the linked user (if any) has none for it yet.
fn needs_postbox_key(shared: &Shared, code: &str) -> bool {
    let st = shared.lock();
    let Some(pre) = st.preauths.get(code) else {
        return false;
    };
    let writes = shared
        .contract(&pre.client_id)
        .is_some_and(|c| c.kind.can_write());
    writes
        && pre
            .link_user
            .as_ref()
            .is_none_or(|u| saas_postbox_of(&st, u, &pre.client_id).is_none())
}

/// `authorize`: consent to a contract. Allowed → the user (the linked one, or a new
/// one), the account the link onboards (with `service`, `sampleDataSet` or
/// `sourceType=push`; see [`onboarding`]), the preauthorization's session bound to
/// them and syncing, an authorization code, `accountReference` for a push account, and
/// for a contract that may write the user's postbox for it (one per user and contract,
/// reused), whose id and public key follow the other success parameters (as the real
/// consent does for a write contract). A link that asks for an account the page cannot
/// onboard → `ONBOARD_ERROR` at once, the code spent.
async fn authorize(
    shared: &Shared,
    code: &str,
    link: &Link,
    decision: Option<bool>,
    p: &Params,
) -> Response {
    let Some(pre) = shared.lock().preauths.get(code).cloned() else {
        return unknown_code();
    };
    let back = match Back::to(
        &pre.redirect_uri,
        Vocabulary::Success,
        Some(pre.state.clone()),
    ) {
        Some(b) => b,
        None => return bad_redirect(),
    };
    if pre.expires_ms <= now_ms() {
        return back.fail("INVALID_CODE");
    }
    if let Some(r) = p.get("storageRef") {
        let mut st = shared.lock();
        if storage_target(shared, &st, r, &pre).is_none() {
            if st.preauths.remove(code).is_none() {
                return unknown_code();
            }
            return saved(shared, &st, back.fail("ONBOARD_ERROR"));
        }
    }
    let wants_account = link.service.is_some()
        || link.sample_set.is_some()
        || link.source_type == Some(SourceType::Push);
    // Without `service` the authorize page picks nothing: only push and sample links
    // need one, and `onboarding` refuses them.
    let target = wants_account.then(|| onboarding(link, |_| true));
    if let Some(None) = target {
        let mut st = shared.lock();
        if st.preauths.remove(code).is_none() {
            return unknown_code();
        }
        return saved(shared, &st, back.fail("ONBOARD_ERROR"));
    }
    let target = target.flatten();
    let Some(allow) = decision else {
        let ask = match &target {
            Some(t) => format!(
                "asks to connect to your digi.me library and to add your {} account{}.",
                t.service.name,
                t.set
                    .map_or(String::new(), |s| format!(" (sample data set {})", s.name))
            ),
            None => "asks to connect to your digi.me library.".to_owned(),
        };
        let mut facts = Facts::new();
        if let Some(t) = &target {
            facts.push(("Service", t.service.name.to_string()));
            if let Some(set) = t.set {
                facts.push(("Sample data", set.name.to_string()));
            }
        }
        let can_read = shared
            .contract(&pre.client_id)
            .is_some_and(|c| c.kind.can_read());
        if can_read {
            facts.extend(scope_facts(&pull_options(pre.actions.as_ref(), now_ms())));
        }
        facts.push((
            "Your library",
            if pre.link_user.is_some() {
                "your existing digi.me library, which another contract of this app already uses"
                    .into()
            } else {
                "a new digi.me library".into()
            },
        ));
        return consent_page(shared, Page::Authorize, &pre.client_id, &ask, facts, p);
    };
    // The postbox key pair is made before the state is locked (it takes a while).
    let mut new_key = None;
    if allow && needs_postbox_key(shared, code) {
        match postbox_key().await {
            Ok(k) => new_key = Some(k),
            Err(e) => {
                return error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "SERVER_ERROR",
                    &e.message,
                );
            }
        }
    }
    let now = now_ms();
    let settings = shared.settings();
    let mut st = shared.lock();
    // Looked up again: it may have been spent or expired meanwhile.
    match st.preauths.get(code) {
        None => return unknown_code(),
        Some(pre) if pre.expires_ms <= now => return back.fail("INVALID_CODE"),
        Some(_) => {}
    }
    st.preauths.remove(code);
    if !allow {
        return saved(shared, &st, back.fail("USER_CANCEL"));
    }
    // Checked again: it may have been linked to someone else meanwhile.
    let storage = match p.get("storageRef") {
        None => None,
        Some(r) => match storage_target(shared, &st, r, &pre) {
            Some(id) => Some(id),
            None => return saved(shared, &st, back.fail("ONBOARD_ERROR")),
        },
    };
    let user_id = match pre.link_user.clone() {
        Some(u) if st.users.contains_key(&u) => u,
        _ => {
            let id = random_id("usr_");
            st.users.insert(
                id.clone(),
                UserRecord {
                    id: id.clone(),
                    created: now,
                },
            );
            id
        }
    };
    let added = target.and_then(|t| add_account(shared, &mut st, &user_id, &pre.client_id, t, now));
    // The session handed out with the authorization now reads this user's library,
    // and the sources start syncing.
    if let Some(key) = &pre.session_key {
        let plan = start_sync(
            shared,
            &mut st,
            &settings,
            &user_id,
            &pre.client_id,
            pull_options(pre.actions.as_ref(), now),
            now,
        );
        if let Some(s) = st.sessions.get_mut(key) {
            s.user_id = Some(user_id.clone());
            s.sync = Some(plan);
        }
    }
    if let Some(id) = &storage {
        st.cloud.link(id, &user_id);
    }
    let auth_code = issue_auth_code(
        &mut st,
        &pre.client_id,
        &user_id,
        &pre.code_challenge,
        None,
        now,
    );
    let mut params = vec![
        ("success", "true".to_owned()),
        ("code", auth_code),
        ("state", pre.state.clone()),
    ];
    if let Some(reference) = added.and_then(|a| a.push_reference) {
        params.push(("accountReference", reference));
    }
    let writes = shared
        .contract(&pre.client_id)
        .is_some_and(|c| c.kind.can_write());
    if writes {
        let Some((id, public_key)) =
            saas_postbox(&mut st, &pre.client_id, &user_id, new_key.take(), now)
        else {
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "SERVER_ERROR",
                "The postbox could not be made; follow the link again.",
            );
        };
        params.push(("postboxId", id));
        params.push(("publicKey", public_key));
    }
    saved(shared, &st, back.go(&params))
}

/// The storage a `storageRef` names, if the authorization `pre` may make it the
/// user's: a `cloudId` reference of the code's contract naming a storage of its
/// application that is provisional or already the linked user's (a new user has none).
fn storage_target(
    shared: &Shared,
    st: &Persisted,
    reference: &str,
    pre: &PreAuthorization,
) -> Option<String> {
    let r = st.references.get(reference)?;
    if r.kind != ReferenceKind::CloudId || r.client_id != pre.client_id {
        return None;
    }
    let app_id = shared.contract(&pre.client_id)?.app_id;
    let user = pre
        .link_user
        .as_deref()
        .filter(|u| st.users.contains_key(*u));
    st.cloud
        .linkable(&r.value, &app_id, user)
        .map(|s| s.id.clone())
}

/// What a reference code's page does once the user allows it.
enum Action {
    /// `user-reauth`: an authorization code for a new token pair of the same user.
    Reauth,
    /// `onboard`: add an account of this service (or, when the user has one, share it
    /// with the contract again).
    Onboard(Onboarding),
    /// `reauthorize`: heal this account.
    Reauthorize { account: String, service: String },
}

impl Action {
    fn ask(&self) -> String {
        match self {
            Action::Reauth => {
                "asks you to sign in again, to keep access to your digi.me library.".into()
            }
            Action::Onboard(Onboarding { service, set: None }) => format!(
                "asks to add your {} account to your digi.me library.",
                service.name
            ),
            Action::Onboard(Onboarding {
                service,
                set: Some(set),
            }) => format!(
                "asks to add the sample data set {} of {} to your digi.me library.",
                set.name, service.name
            ),
            Action::Reauthorize { account, service } => format!(
                "asks you to reconnect your {service} account ({account}), which needs to be authorized again."
            ),
        }
    }
}

/// What an `onboard` or `authorize` link onboards: a source and, for a sample data set,
/// the set.
#[derive(Clone, Copy)]
struct Onboarding {
    service: &'static Service,
    set: Option<&'static SampleSet>,
}

/// The account a link asks for: the `service` source id, which must be of the link's
/// `sourceType`, approved (a live account), or approved or `sampledataonly` and have
/// the link's `sampleDataSet` (a sample account). Without `service`, the first
/// approved pull source of the catalogue for which `lacks` holds; a push link and a
/// sample link must name their source. `None` when there is no such account to make.
fn onboarding(link: &Link, lacks: impl Fn(&Service) -> bool) -> Option<Onboarding> {
    let source_type = link.source_type.unwrap_or(SourceType::Pull);
    let service = match link.service {
        Some(id) => service_by_source(id).filter(|s| s.source_type == source_type)?,
        None if source_type == SourceType::Push || link.sample_set.is_some() => return None,
        None => CATALOGUE
            .iter()
            .find(|s| s.source_type == SourceType::Pull && s.onboardable() && lacks(s))?,
    };
    let set = match link.sample_set.as_deref() {
        Some(id) if service.sample_onboardable() => Some(service.sample_set(id)?),
        None if service.onboardable() => None,
        _ => return None,
    };
    Some(Onboarding { service, set })
}

/// What [`add_account`] did.
struct Added {
    /// The reference of a push account, for the callback's `accountReference`.
    push_reference: Option<String>,
}

/// Puts the account of `target` into the user's library: a new one (a fresh id, added
/// now), or, when the user already has an account of that source holding the same
/// data (live, or the same sample set), that one, shared again with `client_id` if the
/// user had withdrawn it. `None` for an unknown user.
fn add_account(
    shared: &Shared,
    st: &mut Persisted,
    user_id: &str,
    client_id: &str,
    target: Onboarding,
    now: u64,
) -> Option<Added> {
    let set_id = target.set.map(|s| s.id);
    let existing = account_set(shared, st, user_id)
        .into_iter()
        .find(|a| a.source_id == target.service.source_id && a.sample_set.as_deref() == set_id)
        .map(|a| a.id);
    let id = match existing {
        Some(id) => {
            if let Some(by_client) = st.revoked.get_mut(user_id)
                && let Some(set) = by_client.get_mut(client_id)
            {
                set.remove(&id);
            }
            id
        }
        None => {
            let account = new_account(target.service, user_id, now, set_id);
            let id = account.id.clone();
            account_set_mut(shared, st, user_id)?.push(account);
            id
        }
    };
    let push_reference = (target.service.source_type == SourceType::Push)
        .then(|| account_reference(target.service, &id));
    Some(Added { push_reference })
}

/// The account an onboard link asks for (see [`onboarding`]; without `service`, the
/// first approved pull source the user has no live account of).
fn onboard_target(
    shared: &Shared,
    st: &Persisted,
    rc: &ReferenceCode,
    link: &Link,
) -> Option<Action> {
    let set = account_set(shared, st, &rc.user_id);
    let lacks = |s: &Service| {
        !set.iter()
            .any(|a| a.source_id == s.source_id && a.sample_set.is_none())
    };
    onboarding(link, lacks).map(Action::Onboard)
}

/// The account a reauthorize link names: `accountRef` must be an `accountId`
/// reference of the code's contract naming an account of the code's user that the
/// contract sees.
fn account_target(
    shared: &Shared,
    st: &Persisted,
    rc: &ReferenceCode,
    link: &Link,
) -> Option<Action> {
    let r = st.references.get(link.account_ref.as_deref()?)?;
    if r.kind != ReferenceKind::AccountId || r.client_id != rc.client_id {
        return None;
    }
    let account = visible_accounts(shared, st, &rc.user_id, Some(&rc.client_id))
        .into_iter()
        .find(|a| a.id == r.value)?;
    let service = service_by_source(account.source_id).map_or("service", |s| s.type_name);
    Some(Action::Reauthorize {
        account: account.id,
        service: service.to_owned(),
    })
}

/// `user-reauth`, `onboard` and `reauthorize`: the pages of `oauth/token/reference`
/// codes. A code with a PKCE challenge is good at `user-reauth` only, one without at
/// the other two only (elsewhere → `INVALID_CODE`, the code unspent). A link the page
/// cannot carry out (an unknown service, a bad account reference) → `ONBOARD_ERROR`,
/// the code spent. On success the code's session is bound to the user and a sync
/// starts (with the request's `actions.pull`), or with `triggerQuery=false` the
/// session shows the library as it is (`completed`).
fn reference(
    shared: &Shared,
    page: Page,
    code: &str,
    link: &Link,
    decision: Option<bool>,
    p: &Params,
) -> Response {
    let now = now_ms();
    let settings = shared.settings();
    let mut st = shared.lock();
    let Some(rc) = st.reference_codes.get(code).cloned() else {
        return unknown_code();
    };
    let back = match Back::to(&rc.redirect_uri, Vocabulary::Success, rc.state.clone()) {
        Some(b) => b,
        None => return bad_redirect(),
    };
    if rc.expires_ms <= now
        || rc.code_challenge.is_some() != (page == Page::UserReauth)
        || !st.users.contains_key(&rc.user_id)
    {
        return back.fail("INVALID_CODE");
    }
    let target = match page {
        Page::Onboard => onboard_target(shared, &st, &rc, link),
        Page::Reauthorize => account_target(shared, &st, &rc, link),
        _ => Some(Action::Reauth),
    };
    let Some(action) = target else {
        st.reference_codes.remove(code);
        return saved(shared, &st, back.fail("ONBOARD_ERROR"));
    };
    let Some(allow) = decision else {
        drop(st);
        let facts = match page {
            Page::Onboard | Page::UserReauth => {
                scope_facts(&pull_options(rc.actions.as_ref(), now))
            }
            _ => Facts::new(),
        };
        return consent_page(shared, page, &rc.client_id, &action.ask(), facts, p);
    };
    st.reference_codes.remove(code);
    if !allow {
        return saved(shared, &st, back.fail("USER_CANCEL"));
    }
    let mut params = vec![("success", "true".to_owned())];
    let mut push_reference = None;
    match action {
        Action::Reauth => {
            let challenge = rc.code_challenge.as_deref().unwrap_or_default();
            let auth_code =
                issue_auth_code(&mut st, &rc.client_id, &rc.user_id, challenge, None, now);
            params.push(("code", auth_code));
        }
        Action::Onboard(target) => {
            push_reference = add_account(shared, &mut st, &rc.user_id, &rc.client_id, target, now)
                .and_then(|a| a.push_reference);
        }
        Action::Reauthorize { account, .. } => {
            if let Some(failures) = st.account_failures.get_mut(&rc.user_id) {
                failures.remove(&account);
            }
        }
    }
    let mut opts = pull_options(rc.actions.as_ref(), now);
    if link.trigger_query == Some(false) {
        opts.fetch = Some(false);
    }
    let plan = start_sync(
        shared,
        &mut st,
        &settings,
        &rc.user_id,
        &rc.client_id,
        opts,
        now,
    );
    if let Some(s) = st.sessions.get_mut(&rc.session_key) {
        s.user_id = Some(rc.user_id.clone());
        s.sync = Some(plan);
    }
    if let Some(reference) = push_reference {
        params.push(("accountReference", reference));
    }
    saved(shared, &st, back.redirect(params))
}

/// `revoke`: withdraws the permission of the code's contract to one account. Allowed →
/// `result=success` (also when the account was deleted meanwhile: the contract no
/// longer sees it either way); denied → `result=failed&error_message=USER_CANCEL`.
fn revoke(shared: &Shared, code: &str, decision: Option<bool>, p: &Params) -> Response {
    let mut st = shared.lock();
    let Some(rv) = st.revoke_codes.get(code).cloned() else {
        return unknown_code();
    };
    let back = match Back::to(&rv.redirect_uri, Vocabulary::Result, None) {
        Some(b) => b,
        None => return bad_redirect(),
    };
    if rv.expires_ms <= now_ms() || !st.users.contains_key(&rv.user_id) {
        return back.fail("INVALID_CODE");
    }
    let Some(allow) = decision else {
        let service = library_for(shared, &st, &rv.user_id, None)
            .and_then(|lib| lib.account(&rv.account_id).map(|a| a.service.type_name))
            .unwrap_or("service");
        let ask = format!(
            "asks you to confirm that it may no longer read your {service} account ({}).",
            rv.account_id
        );
        drop(st);
        return consent_page(shared, Page::Revoke, &rv.client_id, &ask, Facts::new(), p);
    };
    st.revoke_codes.remove(code);
    if !allow {
        return saved(shared, &st, back.fail("USER_CANCEL"));
    }
    let exists = account_set(shared, &st, &rv.user_id)
        .iter()
        .any(|a| a.id == rv.account_id);
    if exists {
        st.revoked
            .entry(rv.user_id.clone())
            .or_default()
            .entry(rv.client_id.clone())
            .or_default()
            .insert(rv.account_id.clone());
    }
    saved(shared, &st, back.go(&[("result", "success".into())]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_time_is_shown_without_a_panic() {
        assert_eq!(shown_time(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            shown_time(253_402_300_799_999),
            "Fri, 31 Dec 9999 23:59:59 GMT"
        );
        assert_eq!(shown_time(u64::MAX), format!("{} ms after 1970", u64::MAX));
    }

    #[test]
    fn an_escape_is_two_hex_digits() {
        assert_eq!(
            crate::common::percent_decode("%7B%22a%22%7D").as_deref(),
            Some("{\"a\"}")
        );
        for bad in ["%+f", "%-1", "%4", "%zz", "%C3"] {
            assert_eq!(crate::common::percent_decode(bad), None, "{bad}");
        }
    }

    fn params(q: &str) -> Params {
        Params::parse(q.as_bytes())
    }

    #[test]
    fn sources_scope_is_decoded_twice_and_checked() {
        // The worked example of the spec: {"dataType":["documents","gp-data"],
        // "organizationType":"hospital"}, as it stands in the URL.
        let q = "code=c&sourceType=pull&sourcesScope=%257B%2522dataType%2522%253A%255B%2522documents%2522%252C%2522gp-data%2522%255D%252C%2522organizationType%2522%253A%2522hospital%2522%257D";
        assert!(check_link(Page::Onboard, &params(q)).is_ok());
        // Encoded once only: the second decoding changes nothing (no `%` left), as
        // with the web client's decodeURIComponent.
        let once =
            "code=c&sourceType=pull&sourcesScope=%7B%22dataType%22%3A%5B%22documents%22%5D%7D";
        assert!(check_link(Page::Onboard, &params(once)).is_ok());
        // A broken escape after the first decoding, and JSON that is not an object.
        let broken = "code=c&sourceType=pull&sourcesScope=%25zz";
        assert!(check_link(Page::Onboard, &params(broken)).is_err());
        let array = "code=c&sourceType=pull&sourcesScope=%255B%255D";
        assert!(check_link(Page::Onboard, &params(array)).is_err());
        let unknown = "code=c&sourceType=pull&sourcesScope=%257B%2522dataType%2522%253A%255B%2522x%2522%255D%257D";
        assert!(check_link(Page::Onboard, &params(unknown)).is_err());
    }

    #[test]
    fn onboard_links_are_type_checked() {
        let ok = check_link(
            Page::Onboard,
            &params("code=c&sourceType=pull&service=29&sampleDataSet=default&sampleDataAutoOnboard=true&lng=nl&includeSampleDataOnlySources=false&triggerQuery=false"),
        )
        .unwrap();
        assert_eq!(ok.service, Some(29));
        assert_eq!(ok.sample_set.as_deref(), Some("default"));
        assert!(ok.auto_onboard);
        assert_eq!(ok.trigger_query, Some(false));
        for bad in [
            "code=c",
            "code=c&sourceType=both",
            "code=c&sourceType=pull&service=x1",
            "code=c&sourceType=pull&service=",
            "code=c&sourceType=pull&triggerQuery=yes",
            "code=c&sourceType=pull&lng=%3Cb%3E",
            "code=c&sourceType=pull&sampleDataSet=",
            "code=c&sourceType=pull&includeSampleDataOnlySources=1",
        ] {
            assert!(check_link(Page::Onboard, &params(bad)).is_err(), "{bad}");
        }
        assert!(check_link(Page::Reauthorize, &params("code=c")).is_err());
        assert!(check_link(Page::Reauthorize, &params("code=c&accountRef=r&lng=en-GB")).is_ok());
        assert!(check_link(Page::UserReauth, &params("code=c&triggerQuery=0")).is_err());
        assert!(check_link(Page::Authorize, &params("code=c&whatever=1")).is_ok());
    }
}
