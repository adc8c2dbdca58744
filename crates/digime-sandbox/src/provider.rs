//! Push to a health provider: `POST /v1.7/permission-access/import/h:accountId/
//! {standard}/{version}`, a FHIR STU3 resource for the provider behind one of the
//! user's push accounts, and the control API's view of what was pushed
//! (`/_sandbox/users/{user}/provider-pushes`).
//!
//! A push is kept as sent, one file per push in the user's library folder
//! (`{id}.json`), and a record in the state naming the account.

use crate::catalogue::{SourceType, service_by_source};
use crate::checks::ApiFailure;
use crate::common::{
    ApiResult, DRAIN_LIMIT, drain, hex, internal, read_body, safe_name, unknown_user,
};
use crate::library::visible_accounts;
use crate::serve::{Plain, plain_body};
use crate::state::ProviderPush;
use crate::tokens::user_call;
use crate::{Shared, now_ms, random_id};
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

/// Most a pushed resource may be.
pub(crate) const MAX_FHIR_BODY: usize = 16 << 20;
/// How deep Bundles may nest in a push.
const MAX_BUNDLE_DEPTH: usize = 8;

/// The provider push route, and its control API view.
pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/v1.7/permission-access/import/h:accountId/{standard}/{version}",
            post(push).layer(DefaultBodyLimit::disable()),
        )
        .route("/_sandbox/users/{user}/provider-pushes", get(list))
        .route("/_sandbox/users/{user}/provider-pushes/{id}", get(content))
}

/// The resource types of FHIR STU3 (3.0.2).
const STU3_TYPES: &[&str] = &[
    "Account",
    "ActivityDefinition",
    "AdverseEvent",
    "AllergyIntolerance",
    "Appointment",
    "AppointmentResponse",
    "AuditEvent",
    "Basic",
    "Binary",
    "BodySite",
    "Bundle",
    "CapabilityStatement",
    "CarePlan",
    "CareTeam",
    "ChargeItem",
    "Claim",
    "ClaimResponse",
    "ClinicalImpression",
    "CodeSystem",
    "Communication",
    "CommunicationRequest",
    "CompartmentDefinition",
    "Composition",
    "ConceptMap",
    "Condition",
    "Consent",
    "Contract",
    "Coverage",
    "DataElement",
    "DetectedIssue",
    "Device",
    "DeviceComponent",
    "DeviceMetric",
    "DeviceRequest",
    "DeviceUseStatement",
    "DiagnosticReport",
    "DocumentManifest",
    "DocumentReference",
    "EligibilityRequest",
    "EligibilityResponse",
    "Encounter",
    "Endpoint",
    "EnrollmentRequest",
    "EnrollmentResponse",
    "EpisodeOfCare",
    "ExpansionProfile",
    "ExplanationOfBenefit",
    "FamilyMemberHistory",
    "Flag",
    "Goal",
    "GraphDefinition",
    "Group",
    "GuidanceResponse",
    "HealthcareService",
    "ImagingManifest",
    "ImagingStudy",
    "Immunization",
    "ImmunizationRecommendation",
    "ImplementationGuide",
    "Library",
    "Linkage",
    "List",
    "Location",
    "Measure",
    "MeasureReport",
    "Media",
    "Medication",
    "MedicationAdministration",
    "MedicationDispense",
    "MedicationRequest",
    "MedicationStatement",
    "MessageDefinition",
    "MessageHeader",
    "NamingSystem",
    "NutritionOrder",
    "Observation",
    "OperationDefinition",
    "OperationOutcome",
    "Organization",
    "Parameters",
    "Patient",
    "PaymentNotice",
    "PaymentReconciliation",
    "Person",
    "PlanDefinition",
    "Practitioner",
    "PractitionerRole",
    "Procedure",
    "ProcedureRequest",
    "ProcessRequest",
    "ProcessResponse",
    "Provenance",
    "Questionnaire",
    "QuestionnaireResponse",
    "ReferralRequest",
    "RelatedPerson",
    "RequestGroup",
    "ResearchStudy",
    "ResearchSubject",
    "RiskAssessment",
    "Schedule",
    "SearchParameter",
    "Sequence",
    "ServiceDefinition",
    "Slot",
    "Specimen",
    "StructureDefinition",
    "StructureMap",
    "Subscription",
    "Substance",
    "SupplyDelivery",
    "SupplyRequest",
    "Task",
    "TestReport",
    "TestScript",
    "ValueSet",
    "VisionPrescription",
];

/// The `type` values of an STU3 Bundle.
const BUNDLE_TYPES: &[&str] = &[
    "document",
    "message",
    "transaction",
    "transaction-response",
    "batch",
    "batch-response",
    "history",
    "searchset",
    "collection",
];

/// A FHIR `id`: 1 to 64 of `[A-Za-z0-9.-]`.
fn is_fhir_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Checks one resource at `path` (`""` for the body itself): an object whose
/// `resourceType` is an STU3 type, `id` a FHIR id and `meta` an object when present;
/// a Bundle's `type` a bundle type and `entry`, if any, an array of objects each with
/// a `resource` that is checked in turn. Its type and, for a Bundle, its entry count.
fn check_resource(v: &Value, path: &str, depth: usize) -> Result<(String, Option<usize>), String> {
    let at = |field: &str| format!("{path}{field}");
    let Value::Object(m) = v else {
        return Err(format!(
            "{} must be a JSON object (a FHIR resource)",
            if path.is_empty() {
                "the body"
            } else {
                path.trim_end_matches('.')
            }
        ));
    };
    let ty = match m.get("resourceType") {
        Some(Value::String(t)) if STU3_TYPES.contains(&t.as_str()) => t.clone(),
        Some(Value::String(t)) => {
            return Err(format!(
                "{} {t:?} is not a FHIR STU3 resource type",
                at("resourceType")
            ));
        }
        Some(_) => return Err(format!("{} must be a string", at("resourceType"))),
        None => return Err(format!("{} is required", at("resourceType"))),
    };
    if let Some(id) = m.get("id")
        && !id.as_str().is_some_and(is_fhir_id)
    {
        return Err(format!(
            "{} must be a FHIR id (1-64 of A-Z a-z 0-9 - .)",
            at("id")
        ));
    }
    if m.get("meta").is_some_and(|meta| !meta.is_object()) {
        return Err(format!("{} must be an object", at("meta")));
    }
    if ty != "Bundle" {
        return Ok((ty, None));
    }
    if depth >= MAX_BUNDLE_DEPTH {
        return Err(format!(
            "{path}: Bundles nest more than {MAX_BUNDLE_DEPTH} deep"
        ));
    }
    match m.get("type") {
        Some(Value::String(t)) if BUNDLE_TYPES.contains(&t.as_str()) => {}
        Some(Value::String(t)) => {
            return Err(format!("{} {t:?} is not a Bundle type", at("type")));
        }
        Some(_) => return Err(format!("{} must be a string", at("type"))),
        None => return Err(format!("{} is required for a Bundle", at("type"))),
    }
    let entries = match m.get("entry") {
        None => 0,
        Some(Value::Array(entries)) => {
            for (i, e) in entries.iter().enumerate() {
                let here = format!("{path}entry[{i}]");
                let Value::Object(e) = e else {
                    return Err(format!("{here} must be an object"));
                };
                if e.get("fullUrl").is_some_and(|u| !u.is_string()) {
                    return Err(format!("{here}.fullUrl must be a string"));
                }
                match e.get("resource") {
                    Some(r) => {
                        check_resource(r, &format!("{here}.resource."), depth + 1)?;
                    }
                    None => return Err(format!("{here}.resource is required")),
                }
            }
            entries.len()
        }
        Some(_) => return Err(format!("{} must be an array", at("entry"))),
    };
    Ok((ty, Some(entries)))
}

/// Checks a push body: JSON, a FHIR STU3 resource. Its type and entry count.
pub(crate) fn check_fhir(bytes: &[u8]) -> Result<(String, Option<usize>), ApiFailure> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiFailure::bad_params(&format!("the body is not JSON: {e}")))?;
    check_resource(&v, "", 0).map_err(|e| ApiFailure::bad_params(&format!("FHIR STU3: {e}")))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|h| h.to_str().ok())
}

/// What a push is for, checked before its body is read.
struct Target {
    user_id: String,
    client_id: String,
    account_id: String,
    source_id: u64,
    standard: String,
    version: String,
}

/// Every check of a push before its body: the caller, the standard and version, the
/// contract's right to write, the content type, and the `accountId` header (a push
/// account of the user that the contract sees).
fn check_push(
    shared: &Shared,
    headers: &HeaderMap,
    standard: &str,
    version: &str,
) -> Result<Target, ApiFailure> {
    let (v, tok) = user_call(shared, headers)?;
    if standard != "fhir" {
        return Err(ApiFailure::bad_params("standard must be fhir"));
    }
    if !matches!(version, "stu3" | "3.0.2") {
        return Err(ApiFailure::bad_params("version must be stu3 or 3.0.2"));
    }
    if !v.contract.kind.can_write() {
        return Err(ApiFailure::insufficient_scope());
    }
    if !crate::common::media_type_is(headers, "application/json") {
        return Err(ApiFailure::bad_params(
            "content-type must be application/json",
        ));
    }
    let account_id = header_str(headers, "accountid")
        .filter(|a| !a.is_empty())
        .ok_or_else(|| ApiFailure::bad_params("the accountId header is required"))?;
    let client_id = v.contract.client_id();
    let st = shared.lock();
    let account = visible_accounts(shared, &st, &tok.user_id, Some(&client_id))
        .into_iter()
        .find(|a| a.id == account_id)
        .filter(|a| {
            service_by_source(a.source_id).is_some_and(|s| s.source_type == SourceType::Push)
        })
        .ok_or_else(|| {
            ApiFailure::new(
                404,
                "AccountNotFound",
                format!("The account ({account_id}) was not found"),
            )
        })?;
    Ok(Target {
        user_id: tok.user_id,
        client_id,
        account_id: account.id,
        source_id: account.source_id,
        standard: standard.to_owned(),
        version: version.to_owned(),
    })
}

/// `POST permission-access/import/h:accountId/{standard}/{version}` → 200 `{}`.
async fn push(
    State(shared): State<Shared>,
    Path((standard, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let target = match check_push(&shared, &headers, &standard, &version) {
        Ok(t) => t,
        Err(failure) => {
            drain(body, DRAIN_LIMIT).await;
            return Err(failure);
        }
    };
    let bytes = read_body(body, MAX_FHIR_BODY).await?;
    let (resource_type, entries) = check_fhir(&bytes)?;
    if !safe_name(&target.user_id) {
        return Err(crate::common::internal_msg(
            "the user id is not a library folder name",
        ));
    }
    let id = random_id("fhir_");
    let dir = shared.library_dir().join(&target.user_id);
    tokio::fs::create_dir_all(&dir).await.map_err(internal)?;
    let path = dir.join(format!("{id}.json"));
    let partial = dir.join(format!("{id}.json.partial"));
    let written = async {
        let mut file = tokio::fs::File::create(&partial).await?;
        file.write_all(&bytes).await?;
        file.sync_all().await?;
        tokio::fs::rename(&partial, &path).await
    }
    .await;
    if let Err(e) = written {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(internal(e));
    }
    let record = ProviderPush {
        id,
        account_id: target.account_id,
        source_id: target.source_id,
        client_id: target.client_id,
        standard: target.standard,
        version: target.version,
        resource_type,
        entries,
        size: bytes.len() as u64,
        sha256: hex(&digime_crypto::sha256(&bytes)),
        received: now_ms(),
    };
    let saved = {
        let mut st = shared.lock();
        // The same visibility as before the body: an account deleted, or withdrawn
        // from this contract, while the body was coming in takes nothing.
        let account_left =
            !visible_accounts(&shared, &st, &target.user_id, Some(&record.client_id))
                .iter()
                .any(|a| a.id == record.account_id);
        if !st.users.contains_key(&target.user_id) {
            // Deleted while the body was coming in.
            Err(ApiFailure::invalid_token("access_token", false))
        } else if account_left {
            Err(ApiFailure::new(
                404,
                "AccountNotFound",
                format!("The account ({}) was not found", record.account_id),
            ))
        } else {
            st.provider_pushes
                .entry(target.user_id.clone())
                .or_default()
                .push(record);
            shared.save(&st).map_err(|e| {
                if let Some(list) = st.provider_pushes.get_mut(&target.user_id) {
                    list.pop();
                }
                internal(e)
            })
        }
    };
    if let Err(failure) = saved {
        let _ = tokio::fs::remove_file(&path).await;
        return Err(failure);
    }
    Ok((StatusCode::OK, axum::Json(json!({}))).into_response())
}

/// `GET /_sandbox/users/{user}/provider-pushes` → `{"pushes": [{"id", "accountId",
/// "sourceId", "clientId", "standard", "version", "resourceType", "entries"?, "size",
/// "sha256", "received"}]}`, in the order they came.
async fn list(State(shared): State<Shared>, Path(user): Path<String>) -> ApiResult {
    let st = shared.lock();
    if !st.users.contains_key(&user) {
        return Err(unknown_user());
    }
    let pushes = st.provider_pushes.get(&user).cloned().unwrap_or_default();
    Ok(axum::Json(json!({ "pushes": pushes })).into_response())
}

/// `GET /_sandbox/users/{user}/provider-pushes/{id}` → the resource as it was pushed.
async fn content(
    State(shared): State<Shared>,
    Path((user, id)): Path<(String, String)>,
) -> ApiResult {
    let known = {
        let st = shared.lock();
        if !st.users.contains_key(&user) {
            return Err(unknown_user());
        }
        st.provider_pushes
            .get(&user)
            .is_some_and(|l| l.iter().any(|p| p.id == id))
    };
    if !known || !safe_name(&user) || !safe_name(&id) {
        return Err(ApiFailure::new(404, "NotFound", "No such push"));
    }
    let path = shared.library_dir().join(&user).join(format!("{id}.json"));
    tokio::fs::metadata(&path).await.map_err(internal)?;
    let body = plain_body(Plain::File(path));
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/fhir+json")],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fhir_bodies_are_checked() {
        let ok = |b: &str| check_fhir(b.as_bytes()).map_err(|e| e.message);
        assert_eq!(
            ok(r#"{"resourceType":"Bundle","type":"transaction"}"#).unwrap(),
            ("Bundle".into(), Some(0))
        );
        assert_eq!(
            ok(r#"{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Observation","id":"o-1"}},{"resource":{"resourceType":"Bundle","type":"batch"}}]}"#).unwrap(),
            ("Bundle".into(), Some(2))
        );
        assert_eq!(
            ok(r#"{"resourceType":"Patient"}"#).unwrap(),
            ("Patient".into(), None)
        );
        for (bad, says) in [
            ("not json", "not JSON"),
            ("[]", "the body must be a JSON object"),
            (r#"{"type":"x"}"#, "resourceType is required"),
            (
                r#"{"resourceType":"Nope"}"#,
                "not a FHIR STU3 resource type",
            ),
            // An R4 type, not in STU3.
            (r#"{"resourceType":"MedicinalProduct"}"#, "not a FHIR STU3"),
            (r#"{"resourceType":7}"#, "resourceType must be a string"),
            (
                r#"{"resourceType":"Patient","id":"a b"}"#,
                "id must be a FHIR id",
            ),
            (r#"{"resourceType":"Bundle"}"#, "type is required"),
            (
                r#"{"resourceType":"Bundle","type":"bag"}"#,
                "not a Bundle type",
            ),
            (
                r#"{"resourceType":"Bundle","type":"batch","entry":{}}"#,
                "entry must be an array",
            ),
            (
                r#"{"resourceType":"Bundle","type":"batch","entry":[1]}"#,
                "entry[0] must be an object",
            ),
            (
                r#"{"resourceType":"Bundle","type":"batch","entry":[{}]}"#,
                "entry[0].resource is required",
            ),
            (
                r#"{"resourceType":"Bundle","type":"batch","entry":[{"resource":{"resourceType":"Foo"}}]}"#,
                "entry[0].resource.resourceType \"Foo\"",
            ),
        ] {
            let e = ok(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let mut deep = String::from(r#"{"resourceType":"Patient"}"#);
        for _ in 0..=MAX_BUNDLE_DEPTH {
            deep = format!(
                r#"{{"resourceType":"Bundle","type":"batch","entry":[{{"resource":{deep}}}]}}"#
            );
        }
        assert!(ok(&deep).unwrap_err().contains("nest"));
    }
}
