//! Authorization (`docs/protocol.md`, "Authorization"): the options and results of
//! the authorization calls, one module per endpoint:
//!
//! | module | endpoint |
//! |---|---|
//! | [`authorize`] | POST `oauth/authorize`, then the onboard URL |
//! | [`token`] | POST `oauth/token`: code exchange and refresh |
//! | [`callback`] | the redirect back to the app (no request) |
//! | [`contract`] | GET `permission-access/contract` |
//! | [`token_reference`] | POST `oauth/token/reference`, then the `user-reauth`, `onboard` or `reauthorize` page |
//! | [`reference`](mod@reference) | POST `reference` |
//! | [`revoke`] | GET `permission-access/revoke/h:accountId` |
//!
//! [`authorize`] and [`token_reference`] are the same request shape (a POST answered
//! by a signed code), written once in a private module.
//!
//! Server tokens are verified against the pinned key set of [`crate::jwks`].

pub mod authorize;
pub mod callback;
mod code;
pub mod contract;
pub mod reference;
pub mod revoke;
pub mod token;
pub mod token_reference;

pub use authorize::{AuthorizeFlow, onboard_url};
pub use callback::{
    AuthorizationCallback, AuthorizationCode, OnboardCallback, RevokeCallback, parse_callback,
    parse_onboard_callback, parse_revoke_callback,
};
pub(crate) use callback::{callback_query_pairs, check_state};
pub use contract::{ContractAccess, ContractApplication, ContractDetails, ReadContractDetails};
pub use reference::{CreateReference, ReferenceKind};
pub use revoke::{RevokeAccountPermission, RevokeUrl};
pub use token::{TokenFlow, token_from_claims};
pub use token_reference::{
    OnboardFlow, OnboardServiceOptions, OnboardUrl, ReauthorizeAccountOptions, ReauthorizeFlow,
    ReauthorizeOptions,
};

use crate::config::SessionKey;
use crate::error::Error;
use crate::token::UserAccessToken;
use digime_crypto::CodeVerifier;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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

/// Everything optional about an authorization (docs/protocol.md, "Authorize").
#[derive(Debug, Clone, Default)]
pub struct AuthorizeOptions {
    /// Preselect a service (`service`), from `querySources`.
    pub service_id: Option<u64>,
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
    /// A provisional storage ([`crate::Sdk::create_provisional_storage`]) that becomes
    /// the user's once they authorize: the flow makes a reference to it (POST
    /// `reference`) for the URL's `storageRef`.
    pub storage_id: Option<crate::config::StorageId>,
}

impl AuthorizeOptions {
    pub(crate) fn validate(&self) -> Result<(), Error> {
        check_sample_data(self.sample_data.as_ref())?;
        check_locale(self.locale.as_deref())?;
        if let Some(t) = &self.user_access_token {
            check_token(t)?;
        }
        Ok(())
    }
}

/// A sample data set must be named.
pub(crate) fn check_sample_data(sample: Option<&SampleData>) -> Result<(), Error> {
    if sample.is_some_and(|sd| sd.data_set.is_empty()) {
        return Err(Error::InvalidInput(
            "sample data set name cannot be empty".into(),
        ));
    }
    Ok(())
}

/// A locale is a language tag: 2 to 35 letters, digits, `-` and `_`, starting with a
/// letter (`nl`, `en-GB`, `zh_Hant`).
pub(crate) fn check_locale(locale: Option<&str>) -> Result<(), Error> {
    let tag_ok = |l: &str| {
        (2..=35).contains(&l.len())
            && l.starts_with(|c: char| c.is_ascii_alphabetic())
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    match locale.filter(|l| !tag_ok(l)) {
        Some(l) => Err(Error::InvalidInput(format!(
            "locale {l:?} is not a language tag"
        ))),
        None => Ok(()),
    }
}

/// A token whose access token is empty cannot sign a call.
pub(crate) fn check_token(token: &UserAccessToken) -> Result<(), Error> {
    if token.access_token.value.is_empty() {
        return Err(Error::InvalidInput(
            "user access token has an empty access token".into(),
        ));
    }
    Ok(())
}

/// A callback is an absolute URL without a fragment (the redirect appends a query).
pub(crate) fn check_callback(callback: &str) -> Result<(), Error> {
    let parsed = url::Url::parse(callback)
        .map_err(|e| Error::InvalidInput(format!("callback {callback:?}: {e}")))?;
    if parsed.fragment().is_some() {
        return Err(Error::InvalidInput(
            "callback must not have a fragment".into(),
        ));
    }
    Ok(())
}

/// A read session returned with an authorization (`session.expiry` is Unix ms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The session key.
    pub key: SessionKey,
    /// Expiry, Unix milliseconds.
    pub expiry: u64,
}

/// A URL whose query carries a credential (a page's code), for `Debug`: everything
/// up to the query, which is redacted.
pub(crate) fn redacted_url(url: &str) -> String {
    match url.split_once('?') {
        Some((page, _)) => format!("{page}?[redacted]"),
        None => url.to_owned(),
    }
}

/// The result of `authorize_url` and `reauthorize_url`: send the user to `url`, keep
/// `code_verifier` and the `state` server-side until the callback. `Debug` hides the
/// URL's query (its code) and the verifier.
#[derive(Clone)]
pub struct AuthorizeUrl {
    /// The onboard URL to redirect the user's browser to.
    pub url: String,
    /// The PKCE verifier to pass to `exchange_code_for_token`.
    pub code_verifier: CodeVerifier,
    /// The session created with the authorization, if the server returned one.
    pub session: Option<Session>,
}

impl std::fmt::Debug for AuthorizeUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizeUrl")
            .field("url", &redacted_url(&self.url))
            .field("code_verifier", &self.code_verifier)
            .field("session", &self.session)
            .finish()
    }
}

/// Reads `{"token": "<JWS>", ...}` from a success body.
pub(crate) fn token_field(
    body: &[u8],
    context: &'static str,
) -> Result<(String, Map<String, Value>), Error> {
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

/// A non-empty string field of a JSON object body, or a decode error naming it.
pub(crate) fn string_field(
    body: &[u8],
    field: &str,
    context: &'static str,
) -> Result<String, Error> {
    let value = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get(field)?.as_str().map(str::to_owned));
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(Error::Decode {
            context,
            detail: format!("no {field} in the answer"),
        }),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::error::{CallbackError, CallbackErrorCode};

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
