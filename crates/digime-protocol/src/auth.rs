//! Authorization: options and the onboard URL (auth.md §5), the callback (§6), the
//! token payload (§7.2, §7.4).

use crate::config::{Config, SessionKey};
use crate::error::{CallbackError, CallbackErrorCode, Error};
use crate::token::{Token, User, UserAccessToken};
use digime_crypto::{CodeVerifier, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// Where the user's data comes from in the onboard flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceType {
    /// Data pulled from a source (default).
    #[default]
    Pull,
    /// Data pushed by the app.
    Push,
}

impl SourceType {
    fn as_str(self) -> &'static str {
        match self {
            SourceType::Pull => "pull",
            SourceType::Push => "push",
        }
    }
}

/// Sample data instead of a real source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleData {
    /// The data set name (`sampleDataSet`).
    pub data_set: String,
    /// Onboard the sample automatically (`sampleDataAutoOnboard=true`).
    pub auto_onboard: bool,
}

/// Health data types for `sourcesScope`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[allow(missing_docs)]
pub enum DataType {
    MedicationInformation,
    LaboratoryResults,
    Appointments,
    PatientSummaryHospitalData,
    GpData,
    MentalHealthPatientSummary,
    Documents,
    MeasurementsVitalSigns,
    AllergyIntolerances,
    Images,
    MedicationRelatedIntolerances,
    ReferralToQuestionnaire,
    QuestionnaireResponse,
    LongtermHealthcarePatientSummary,
    PatientCorrectionsRequest,
    Vaccinations,
    IntegralBirthCareProcess,
}

/// Organisation types for `sourcesScope`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[allow(missing_docs)]
pub enum OrganizationType {
    GeneralPractitioner,
    HealthCenter,
    Hospital,
    PrivateTreatmentCenter,
    SpecialistCentre,
    RadiotherapyCenter,
    DialysisCenter,
    ObstetricsAndMaternityCare,
    MentalHealthCare,
    YouthHealthCare,
    PsychologyAndPsychotherapy,
    NursingAndCareHomesAndHomeCare,
    DisabilityCare,
    MentallyDisabledCare,
    DaycareCenters,
    RehabilitationCenter,
    Pharmacy,
    AudiologicalCenter,
    MedicalAids,
    Physiotherapy,
    ProtectedAndSupportedLiving,
    Dentist,
    Ambulance,
    HealthInsurers,
}

/// Limits which health sources the user is offered.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourcesScope {
    /// Data types.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_type: Option<Vec<DataType>>,
    /// Organisation type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization_type: Option<OrganizationType>,
}

/// A time range of a read scope: `from`/`to` in Unix seconds, or `last` like `"6y"`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TimeRange {
    /// Start, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<u64>,
    /// Relative range, `<n>d|m|y`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
    /// End, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<u64>,
}

/// An object type within a service type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceObjectType {
    /// Object type id.
    pub id: u64,
}

/// A service type and its object types.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceType {
    /// Service type id.
    pub id: u64,
    /// Object types.
    pub service_object_types: Vec<ServiceObjectType>,
}

/// A service group and its service types.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceGroup {
    /// Service group id.
    pub id: u64,
    /// Service types.
    pub service_types: Vec<ServiceType>,
}

/// The scope of a pull.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Scope {
    /// Time ranges.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_ranges: Option<Vec<TimeRange>>,
    /// Service groups.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_groups: Option<Vec<ServiceGroup>>,
    /// Free-form criteria, forwarded as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub criteria: Option<Vec<Value>>,
}

/// `limits.duration.sourceFetch` (seconds).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DurationLimits {
    /// Seconds a source fetch may take.
    pub source_fetch: u64,
}

/// Limits of a pull.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Limits {
    /// Duration limits.
    pub duration: DurationLimits,
}

/// Which accounts to fetch.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AccountFilter {
    /// Account ids.
    pub id: Vec<String>,
}

/// `sourceFetchFilter`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SourceFetchFilter {
    /// The account filter.
    pub account: AccountFilter,
}

/// `actions.pull`: what a session reads.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PullOptions {
    /// Limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// Scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    /// Whether to fetch fresh data from sources (server default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_fetch: Option<bool>,
    /// Restrict the fetch to some accounts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_fetch_filter: Option<SourceFetchFilter>,
}

/// Session options (`actions` in request bodies).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SessionOptions {
    /// The pull action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull: Option<PullOptions>,
}

/// Everything optional about an authorization (auth.md §5.4, §5.5).
#[derive(Debug, Clone, Default)]
pub struct AuthorizeOptions {
    /// Preselect a service (`service`), from `querySources`.
    pub service_id: Option<u32>,
    /// `sourceType` (default `pull`).
    pub source_type: SourceType,
    /// Sample data.
    pub sample_data: Option<SampleData>,
    /// UI language (`lng`), e.g. `nl`.
    pub locale: Option<String>,
    /// `includeSampleDataOnlySources`.
    pub include_sample_data_only_sources: Option<bool>,
    /// `triggerQuery`: start a read right after onboarding (server default true).
    pub trigger_query: Option<bool>,
    /// `sourcesScope`.
    pub sources_scope: Option<SourcesScope>,
    /// `actions` of the session created with the authorization.
    pub session_options: Option<SessionOptions>,
    /// A token the user already has for another contract: links this contract to the
    /// same library.
    pub user_access_token: Option<UserAccessToken>,
}

impl AuthorizeOptions {
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self
            .sample_data
            .as_ref()
            .is_some_and(|sd| sd.data_set.is_empty())
        {
            return Err(Error::InvalidInput(
                "sample data set name cannot be empty".into(),
            ));
        }
        let tag_ok = |l: &str| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if let Some(l) = self.locale.as_deref().filter(|l| !tag_ok(l)) {
            return Err(Error::InvalidInput(format!(
                "locale {l:?} is not a language tag"
            )));
        }
        if self
            .user_access_token
            .as_ref()
            .is_some_and(|t| t.access_token.value.is_empty())
        {
            return Err(Error::InvalidInput(
                "user access token has an empty access token".into(),
            ));
        }
        Ok(())
    }
}

/// A read session returned with an authorization (`session.expiry` is Unix ms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The session key.
    pub key: SessionKey,
    /// Expiry, Unix milliseconds.
    pub expiry: u64,
}

/// The result of `authorize_url`: send the user to `url`, keep `code_verifier` and
/// the `state` server-side until the callback.
#[derive(Debug, Clone)]
pub struct AuthorizeUrl {
    /// The onboard URL to redirect the user's browser to.
    pub url: String,
    /// The PKCE verifier to pass to `exchange_code_for_token`.
    pub code_verifier: CodeVerifier,
    /// The session created with the authorization, if the server returned one.
    pub session: Option<Session>,
}

/// `encodeURIComponent`: everything but `A-Z a-z 0-9 - _ . ! ~ * ' ( )` is %-encoded.
fn encode_uri_component(s: &str) -> String {
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

/// Builds `{onboard}{page}?code=…&…` with the optional parameters of auth.md §5.4 in
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

/// An authorization code from the callback.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthorizationCode(SecretString);

impl AuthorizationCode {
    /// Wraps a code.
    pub fn new(code: impl Into<String>) -> Self {
        AuthorizationCode(SecretString::new(code))
    }
    /// The code.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

impl fmt::Debug for AuthorizationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthorizationCode([redacted])")
    }
}

/// A successful authorization callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationCallback {
    /// The code to exchange.
    pub code: AuthorizationCode,
    /// The echoed state.
    pub state: Option<String>,
    /// `accountReference`, when the service sent one.
    pub account_reference: Option<String>,
    /// Every other query parameter (the app's own, legacy `postboxId`, …), in order.
    pub extra: Vec<(String, String)>,
}

impl AuthorizationCallback {
    /// Checks the echoed state against the one the app stored (constant time).
    pub fn verify_state(self, expected: &str) -> Result<Self, CallbackError> {
        match &self.state {
            Some(s) if digime_crypto::constant_time_eq(s.as_bytes(), expected.as_bytes()) => {
                Ok(self)
            }
            _ => Err(CallbackError::StateMismatch),
        }
    }
}

/// The decoded query parameters of a callback (a full URL, a path with a query, or a
/// bare query string), in order; a repeated parameter is refused.
pub(crate) fn callback_query_pairs(input: &str) -> Result<Vec<(String, String)>, CallbackError> {
    let query = match input.find('?') {
        Some(i) => &input[i + 1..],
        None if input.contains("://") => "",
        None => input,
    };
    let query = query.split('#').next().unwrap_or("");
    let mut seen = std::collections::HashSet::new();
    let mut pairs = Vec::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if !seen.insert(k.to_string()) {
            return Err(CallbackError::Malformed(format!(
                "parameter {k:?} is repeated"
            )));
        }
        pairs.push((k.into_owned(), v.into_owned()));
    }
    Ok(pairs)
}

/// Parses the redirect back from the onboard page: a full URL, a path with a query,
/// or a bare query string. Repeated parameters are refused (they make the redirect
/// ambiguous).
pub fn parse_callback(input: &str) -> Result<AuthorizationCallback, CallbackError> {
    let mut success = None;
    let mut code = None;
    let mut state = None;
    let mut error_code = None;
    let mut account_reference = None;
    let mut extra = Vec::new();
    for (k, v) in callback_query_pairs(input)? {
        match &*k {
            "success" => success = Some(v),
            "code" => code = Some(v),
            "state" => state = Some(v),
            "errorCode" => error_code = Some(v),
            "accountReference" => account_reference = Some(v),
            _ => extra.push((k, v)),
        }
    }
    match success.as_deref() {
        Some("true") => {
            let code = code
                .filter(|c| !c.is_empty())
                .ok_or_else(|| CallbackError::Malformed("success without a code".into()))?;
            Ok(AuthorizationCallback {
                code: AuthorizationCode::new(code),
                state,
                account_reference,
                extra,
            })
        }
        Some("false") => Err(CallbackError::Failed {
            code: CallbackErrorCode::parse(error_code.as_deref().unwrap_or("")),
            state,
        }),
        Some(other) => Err(CallbackError::Malformed(format!("success={other:?}"))),
        None => Err(CallbackError::Malformed("no success parameter".into())),
    }
}

/// Maps a verified token-response payload to a `UserAccessToken` (auth.md §7.4).
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
                value: SecretString::new(v),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn onboard_url_worked_example() {
        let config = Config::new("app").unwrap();
        let options = AuthorizeOptions {
            service_id: Some(30),
            sample_data: Some(SampleData {
                data_set: "default".into(),
                auto_onboard: true,
            }),
            locale: Some("nl".into()),
            include_sample_data_only_sources: Some(false),
            trigger_query: Some(false),
            sources_scope: Some(SourcesScope {
                data_type: Some(vec![DataType::Documents, DataType::GpData]),
                organization_type: Some(OrganizationType::Hospital),
            }),
            ..Default::default()
        };
        let url = onboard_url(
            &config,
            "authorize",
            "PRE_9j63Ta1XOKcNs9xtnf6U8ktU",
            &options,
            Some("ref_2tBigUYC7m2y"),
        );
        assert_eq!(
            url,
            "https://api.digi.me/apps/saas/authorize?code=PRE_9j63Ta1XOKcNs9xtnf6U8ktU&sourceType=pull&service=30&sampleDataSet=default&sampleDataAutoOnboard=true&lng=nl&includeSampleDataOnlySources=false&storageRef=ref_2tBigUYC7m2y&triggerQuery=false&sourcesScope=%257B%2522dataType%2522%253A%255B%2522documents%2522%252C%2522gp-data%2522%255D%252C%2522organizationType%2522%253A%2522hospital%2522%257D"
        );
        let minimal = onboard_url(
            &config,
            "authorize",
            "a b",
            &AuthorizeOptions::default(),
            None,
        );
        assert_eq!(
            minimal,
            "https://api.digi.me/apps/saas/authorize?code=a+b&sourceType=pull"
        );
        let auto_off = AuthorizeOptions {
            service_id: Some(0),
            sample_data: Some(SampleData {
                data_set: "x".into(),
                auto_onboard: false,
            }),
            ..Default::default()
        };
        assert_eq!(
            onboard_url(&config, "authorize", "c", &auto_off, None),
            "https://api.digi.me/apps/saas/authorize?code=c&sourceType=pull&sampleDataSet=x"
        );
    }

    #[test]
    fn callback_success_and_state() {
        let cb = parse_callback("https://app.example.com/digime/callback?success=true&code=AUTH_3d9c1a77e2&state=u42-7c1e&accountReference=acc_ref_BbnJ3Qbw&userId=7").unwrap();
        assert_eq!(cb.code.expose(), "AUTH_3d9c1a77e2");
        assert_eq!(cb.account_reference.as_deref(), Some("acc_ref_BbnJ3Qbw"));
        assert_eq!(cb.extra, vec![("userId".to_string(), "7".to_string())]);
        assert!(cb.clone().verify_state("u42-7c1e").is_ok());
        assert_eq!(cb.verify_state("other"), Err(CallbackError::StateMismatch));
        let no_state = parse_callback("success=true&code=x").unwrap();
        assert_eq!(no_state.verify_state(""), Err(CallbackError::StateMismatch));
    }

    #[test]
    fn callback_errors() {
        assert_eq!(
            parse_callback("/cb?success=false&errorCode=USER_CANCEL&state=s"),
            Err(CallbackError::Failed {
                code: CallbackErrorCode::UserCancel,
                state: Some("s".into())
            })
        );
        for bad in [
            "https://x/cb",
            "success=maybe&code=x",
            "success=true",
            "success=true&code=",
            "success=true&code=a&code=b",
            "%%%",
        ] {
            assert!(
                matches!(parse_callback(bad), Err(CallbackError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn token_claims() {
        let claims: serde_json::Map<String, Value> = serde_json::from_str(
            r#"{"access_token":{"value":"at","expires_on":1718086400},"refresh_token":{"value":"rt","expires_on":1725862400},"sub":"usr","consentid":"cns","identifier":{"id":"x"},"token_type":"Bearer"}"#,
        )
        .unwrap();
        let t = token_from_claims(&claims).unwrap();
        assert_eq!(t.refresh_token.expiry, 1725862400);
        assert_eq!(t.consent_id.as_deref(), Some("cns"));
        let missing: serde_json::Map<String, Value> =
            serde_json::from_str(r#"{"access_token":{"value":"at","expires_on":1}}"#).unwrap();
        assert!(token_from_claims(&missing).is_err());
    }
}
