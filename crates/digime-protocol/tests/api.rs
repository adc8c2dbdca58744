//! Discovery, sample data, the portability report, provider pushes and storage
//! against the scripted server: what goes on the wire, which answers retry or
//! refresh, and what each answer becomes.

mod support;

use digime_crypto::{PrivateKey, envelope, jws};
use digime_protocol::discovery::{FacetQuery, SourceFilter, SourcesQuery};
use digime_protocol::{
    AuthorizeOptions, Contract, Error, ErrorCode, FhirVersion, PortabilityReportOptions, StorageId,
    TransportErrorKind,
};
use serde_json::{Value, json};
use std::time::Duration;
use support::{Answer, Seen, World};

fn body_of(seen: &Seen) -> Value {
    serde_json::from_slice(seen.body.as_deref().expect("a JSON body")).unwrap()
}

fn header<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
    seen.headers.get(name).and_then(|v| v.to_str().ok())
}

fn storage() -> StorageId {
    StorageId::new("st_1").unwrap()
}

/// The JOSE header and the claims of a request's bearer JWT.
fn bearer(seen: &Seen) -> (Value, Value) {
    let jwt = header(seen, "authorization")
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap();
    let compact = jws::Compact::parse(jwt).unwrap();
    let header = serde_json::from_slice(&compact.header().unwrap()).unwrap();
    let claims = serde_json::from_slice(&compact.payload().unwrap()).unwrap();
    (header, claims)
}

// ---------------------------------------------------------------------------------
// Discovery and sample data.

#[test]
fn query_sources_sends_the_defaults_signed_by_the_contract_and_retries_a_503() {
    let w = World::new();
    let mut s = w.script();
    s.then(Answer::status(503)).then(Answer::json(
        r#"{"data":[{"id":16,"name":"Fitbit","service":{"id":12}}],"limit":100,"offset":0,"total":1}"#,
    ));
    let flow = w
        .sdk
        .query_sources(&w.contract, &SourcesQuery::default())
        .unwrap();
    let page = s.run(flow).unwrap();
    assert_eq!(page.data[0].service.as_ref().unwrap().id, Some(12));
    assert_eq!(page.next_offset(), None);
    assert_eq!(
        s.endpoints(),
        ["POST discovery/sources", "POST discovery/sources"]
    );
    assert_eq!(s.sleeps.len(), 1, "a discovery POST is retried");
    assert!(s.sleeps[0] >= Duration::from_secs(1));
    let (first, second) = (&s.requests[0], &s.requests[1]);
    assert_eq!(
        body_of(second),
        json!({"query":{"filter":{"type":{"id":[1]},"publishedStatus":["approved"]}}})
    );
    assert_eq!(header(second, "content-type"), Some("application/json"));
    assert_eq!(header(second, "accept"), Some("application/json"));
    let claims = second.claims.as_ref().unwrap();
    assert!(!claims.contains_key("access_token"), "a client-only bearer");
    assert_eq!(claims["client_id"], "app_contract");
    assert_ne!(
        first.claim("nonce"),
        second.claim("nonce"),
        "each retry is signed afresh"
    );
}

#[test]
fn a_filter_of_push_sources_replaces_the_default_type() {
    let w = World::new();
    let mut s = w.script();
    s.then(Answer::json(
        r#"{"data":[],"limit":5,"offset":5,"total":3}"#,
    ));
    let query = SourcesQuery {
        limit: Some(5),
        offset: Some(5),
        filter: SourceFilter {
            source_type: Some(vec![digime_protocol::auth::SourceType::Push]),
            ..Default::default()
        },
        ..Default::default()
    };
    let page = s
        .run(w.sdk.query_sources(&w.contract, &query).unwrap())
        .unwrap();
    assert!(page.data.is_empty());
    let body = body_of(s.last());
    assert_eq!(body["query"]["filter"]["type"], json!({"id":[2]}));
    assert_eq!(
        (body["limit"].clone(), body["offset"].clone()),
        (json!(5), json!(5))
    );
}

#[test]
fn facet_queries_send_no_body_when_empty_and_parse_their_lists() {
    let w = World::new();
    let mut s = w.script();
    s.then(Answer::json(
        r#"{"data":[{"id":1,"code":"GB","name":"United Kingdom"}]}"#,
    ))
    .then(Answer::json(
        r#"{"data":[{"id":2,"name":"ios","reference":"ios"}]}"#,
    ))
    .then(Answer::json(r#"{"data":[{"id":4,"name":"Health"}]}"#));
    // A malformed answer to a query (a POST that only reads) is asked for again.
    for _ in 0..3 {
        s.then(Answer::json(r#"{"data":{"id":4}}"#));
    }
    let empty = FacetQuery::default();
    let countries = s
        .run(w.sdk.query_countries(&w.contract, &empty).unwrap())
        .unwrap();
    assert_eq!(countries[0].code.as_deref(), Some("GB"));
    assert_eq!(s.last().path, "discovery/countries");
    assert!(s.last().body.is_none(), "no body at all");
    assert_eq!(header(s.last(), "content-type"), Some("application/json"));
    let ids = FacetQuery {
        id: Some(vec![2]),
        ..Default::default()
    };
    let platforms = s
        .run(w.sdk.query_platforms(&w.contract, &ids).unwrap())
        .unwrap();
    assert_eq!(platforms[0].reference.as_deref(), Some("ios"));
    assert_eq!(body_of(s.last()), json!({"query":{"filter":{"id":[2]}}}));
    let categories = s
        .run(w.sdk.query_categories(&w.contract, &empty).unwrap())
        .unwrap();
    assert_eq!(categories[0].name.as_deref(), Some("Health"));
    assert_eq!(s.last().path, "discovery/categories");
    let bad = s.run(w.sdk.query_categories(&w.contract, &empty).unwrap());
    assert!(matches!(bad, Err(Error::Decode { .. })), "{bad:?}");
    s.assert_consumed();
}

#[test]
fn sample_data_sets_are_read_by_source_id_and_an_unknown_source_is_an_api_error() {
    let w = World::new();
    let mut s = w.script();
    s.then(Answer::json(
        r#"{"default":{"name":"default","description":"A year"}}"#,
    ))
    .then(Answer::api_error(404, "SourceNotFound"));
    let sets = s
        .run(w.sdk.service_sample_data_sets(&w.contract, 16))
        .unwrap();
    assert_eq!(sets["default"].description, "A year");
    assert_eq!(s.last().method, "GET");
    assert_eq!(s.last().path, "permission-access/sample/datasets/16");
    assert!(
        !s.last()
            .claims
            .as_ref()
            .unwrap()
            .contains_key("access_token")
    );
    match s.run(w.sdk.service_sample_data_sets(&w.contract, 99)) {
        Err(Error::Api(e)) => assert_eq!((e.status, e.code.as_str()), (404, "SourceNotFound")),
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------
// The portability report and provider pushes.

#[test]
fn a_report_refreshes_once_then_streams_to_the_sink() {
    let w = World::new();
    let mut s = w.script();
    let report = format!(
        "<?xml version=\"1.0\"?><report>{}</report>",
        "x".repeat(5000)
    );
    s.then(Answer::api_error(401, "InvalidToken"))
        .then(w.keys.token_answer("a2", "r2"))
        .then(Answer::status(200).body(report.as_str()).streamed(700));
    let flow = (w.sdk)
        .portability_report(&w.contract, &w.token, &PortabilityReportOptions::default())
        .unwrap();
    let done = s.run(flow).unwrap();
    assert_eq!(
        done.refreshed_token.unwrap().access_token.value.expose(),
        "a2"
    );
    assert_eq!(s.output, report.as_bytes());
    assert_eq!(
        s.trace,
        [
            "GET export/medmij/report",
            "POST oauth/token",
            "event TokenRefreshed a2",
            "GET export/medmij/report",
        ]
    );
    let sent = s.last();
    assert_eq!(sent.query, "format=xml&from=undefined&to=undefined");
    assert_eq!(sent.claim("access_token"), "a2");
    assert_eq!(header(sent, "accept"), Some("application/octet-stream"));
}

#[test]
fn a_report_that_breaks_off_is_an_error_and_an_error_status_streams_nothing() {
    let w = World::new();
    let mut s = w.script();
    s.then(
        Answer::status(200)
            .body("<report>partial</report>")
            .streamed(4)
            .cut_after(8),
    )
    .then(Answer::api_error(404, "ServiceTypeNotFound"));
    let options = PortabilityReportOptions::default();
    let flow = (w.sdk)
        .portability_report(&w.contract, &w.token, &options)
        .unwrap();
    match s.run(flow) {
        Err(Error::Transport(t)) => assert_eq!(t.kind, TransportErrorKind::Reset),
        other => panic!("{other:?}"),
    }
    s.output.clear();
    let flow = (w.sdk)
        .portability_report(&w.contract, &w.token, &options)
        .unwrap();
    assert!(matches!(s.run(flow), Err(Error::Api(e)) if e.code.as_str() == "ServiceTypeNotFound"));
    assert!(s.output.is_empty());
}

#[test]
fn a_report_read_into_memory_is_bounded() {
    let w = World::new();
    let mut s = w.script();
    s.then(Answer::status(200).body(vec![b'x'; 5000]).streamed(700));
    let options = PortabilityReportOptions::default();
    let flow = (w.sdk)
        .portability_report(&w.contract, &w.token, &options)
        .unwrap();
    match s.run(flow.with_output_limit(4096)) {
        Err(Error::Transport(t)) => assert_eq!(t.kind, TransportErrorKind::ResponseTooLarge),
        other => panic!("{other:?}"),
    }
    assert!(s.output.len() <= 4096 + 700, "reading stopped at the limit");
}

#[test]
fn a_provider_push_names_the_account_in_a_header_and_refreshes_only_on_invalid_token() {
    let w = World::new();
    let mut s = w.script();
    let bundle = json!({"resourceType":"Bundle","type":"transaction"});
    s.then(Answer::api_error(401, "InvalidToken"))
        .then(w.keys.token_answer("a2", "r2"))
        .then(Answer::json("{}"))
        .then(Answer::api_error(401, "InsufficientScope"))
        .then(Answer::status(201).body("created!"));
    let push = |v| {
        (w.sdk)
            .push_to_provider(&w.contract, &w.token, "acc-fhir-9", v, &bundle)
            .unwrap()
    };
    let done = s.run(push(FhirVersion::Stu3)).unwrap();
    assert!(done.refreshed_token.is_some());
    let sent = s.last();
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.path, "permission-access/import/h:accountId/fhir/stu3");
    assert_eq!(header(sent, "accountid"), Some("acc-fhir-9"));
    assert_eq!(header(sent, "content-type"), Some("application/json"));
    assert_eq!(body_of(sent), bundle);
    // Another 401 code is the server's answer, not a reason to refresh. (The call
    // starts with the token the first one's refresh issued: `r1` is spent.)
    let refused = s.run(push(FhirVersion::V3_0_2)).unwrap_err();
    assert_eq!(
        refused.api().map(|e| &e.code),
        Some(&ErrorCode::InsufficientScope)
    );
    assert_eq!(s.last().claim("access_token"), "a2");
    assert_eq!(
        s.endpoints()
            .iter()
            .filter(|e| e.ends_with("oauth/token"))
            .count(),
        1
    );
    assert_eq!(
        s.last().path,
        "permission-access/import/h:accountId/fhir/3.0.2"
    );
    // A 2xx that is not JSON is not a success the SDK can vouch for.
    let not_json = s.run(push(FhirVersion::Stu3)).unwrap_err();
    assert!(
        matches!(&not_json, Error::AfterRefresh { error, .. } if matches!(**error, Error::Decode { .. })),
        "{not_json:?}"
    );
    s.assert_consumed();
}

// ---------------------------------------------------------------------------------
// Storage.

#[test]
fn provisional_storage_is_a_bodiless_post_repeated_only_unprocessed_and_the_users_refreshes() {
    let w = World::new();
    let mut s = w.script();
    s.then(Answer::status(500))
        .then(Answer::status(503))
        .then(Answer::status(201).body(r#"{"id":"st_1","kid":"contract_app_0"}"#))
        .then(Answer::api_error(401, "InvalidToken"))
        .then(w.keys.token_answer("a2", "r2"))
        .then(Answer::json(r#"{"id":"st_u","kid":"k"}"#));
    let failed = s
        .run(w.sdk.create_provisional_storage(&w.contract))
        .unwrap_err();
    assert!(failed.outcome_unknown(), "{failed:?}");
    assert!(!failed.is_retryable());
    assert!(
        matches!(failed.cause(), Error::UnexpectedStatus { status: 500, .. }),
        "{failed:?}"
    );
    assert_eq!(
        s.requests.len(),
        1,
        "a POST that may have made a storage is not repeated"
    );
    // A 503 was not processed: repeated, freshly signed.
    let made = s
        .run(w.sdk.create_provisional_storage(&w.contract))
        .unwrap();
    assert_eq!(
        (made.id.as_str(), made.kid.as_str()),
        ("st_1", "contract_app_0")
    );
    assert_eq!(s.requests.len(), 3);
    assert_ne!(s.requests[1].claim("nonce"), s.requests[2].claim("nonce"));
    let sent = s.last();
    assert_eq!(
        (sent.method.as_str(), sent.path.as_str()),
        ("POST", "storage")
    );
    assert!(sent.body.is_none());
    assert!(!sent.claims.as_ref().unwrap().contains_key("access_token"));
    let mine = s.run(w.sdk.user_storage(&w.contract, &w.token)).unwrap();
    assert_eq!(mine.value.id.as_str(), "st_u");
    assert!(
        mine.refreshed_token.is_some(),
        "unlike the official SDK, the token is returned"
    );
    assert_eq!(s.last().claim("access_token"), "a2");
}

#[test]
fn cloud_calls_carry_the_storage_jwt_and_go_to_the_cloud_base() {
    let w = World::new();
    let mut s = w.script();
    s.then(Answer::status(502)).then(Answer::json(
        r#"{"files":[{"id":"f1","name":"x.json","originalName":"x.json",
            "originalPath":"/apps/app/a/b/","path":"/apps/app/a/b/"}],"total":1}"#,
    ));
    let flow = (w.sdk)
        .list_storage_files(&w.contract, &storage(), "a/b", true)
        .unwrap();
    let list = s.run(flow).unwrap();
    assert_eq!((list.files[0].path.as_str(), list.total), ("/a/b/", 1));
    assert_eq!(s.requests.len(), 2, "a list is retried as a GET");
    let sent = s.last();
    assert_eq!(
        sent.path,
        "https://cloud.digi.me/v1/clouds/st_1/files/apps/app/a/b/?recursive=true"
    );
    let (head, claims) = bearer(sent);
    assert_eq!(
        head,
        json!({"alg":"PS512","typ":"at+jwt","kid":"contract_app_0"})
    );
    let now = s
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(
        claims,
        json!({"sub":"app","iss":"contract","aud":"cloud","iat":now,"exp":now + 60})
    );
    let iat = |r: &Seen| bearer(r).1["iat"].as_u64().unwrap();
    assert!(
        iat(&s.requests[1]) > iat(&s.requests[0]),
        "the retry carries a storage JWT of its own time"
    );

    s.then(Answer::status(500))
        .then(Answer::json(r#"{"deleted":2}"#));
    let flow = (w.sdk)
        .delete_storage_files(&w.contract, &storage(), "a/")
        .unwrap();
    assert!(s.run(flow).is_err(), "a deletion is never repeated");
    let flow = (w.sdk)
        .delete_storage_files(&w.contract, &storage(), "a/")
        .unwrap();
    s.run(flow).unwrap();
    assert_eq!(s.last().method, "DELETE");
    assert_eq!(
        s.last().path,
        "https://cloud.digi.me/v1/clouds/st_1/files/apps/app/a/"
    );
    assert!(s.last().headers.get("accept").is_none());
    assert!(
        w.sdk
            .delete_storage_files(&w.contract, &storage(), "")
            .is_err()
    );
    assert!(
        w.sdk
            .list_storage_files(&w.contract, &storage(), "a b", false)
            .is_err()
    );
}

#[test]
fn an_upload_is_the_envelope_of_the_callers_bytes_for_the_contracts_own_key() {
    let w = World::new();
    let mut s = w.script();
    s.then(Answer::status(201));
    let flow = (w.sdk)
        .upload_storage_file(&w.contract, &storage(), "/docs", "x.json")
        .unwrap();
    s.run(flow).unwrap();
    let sent = s.last();
    assert_eq!(
        sent.path,
        "https://cloud.digi.me/v1/clouds/st_1/files/apps/app/docs/x.json"
    );
    assert_eq!(
        header(sent, "content-type"),
        Some("application/octet-stream")
    );
    let upload = sent
        .upload
        .clone()
        .expect("the caller's bytes are the body");
    let plaintext = b"hello storage, at some length: 0123456789abcdef";
    let n = plaintext.len() as u64;
    let mut pump = upload.pump(n).unwrap();
    assert_eq!(
        pump.content_length(),
        envelope::encrypted_len(n, envelope::Format::Current)
    );
    let mut body = Vec::new();
    pump.feed(plaintext, &mut body).unwrap();
    pump.feed(&[], &mut body).unwrap();
    assert!(pump.is_done());
    assert_eq!(body.len() as u64, pump.content_length());
    // Only the contract's private key opens it (the official SDK's layout: RSA-OAEP
    // block, IV, AES-256-CBC).
    let opened = envelope::decrypt(w.contract.key(), &body, envelope::Format::Current).unwrap();
    assert_eq!(opened, plaintext);
    let other = PrivateKey::generate().unwrap();
    assert!(envelope::decrypt(&other, &body, envelope::Format::Current).is_err());
    // A POST is repeated only when it was not processed, its body from the start.
    s.then(Answer::status(503))
        .then(Answer::transport(TransportErrorKind::Reset));
    let flow = (w.sdk)
        .upload_storage_file(&w.contract, &storage(), "/", "x.json")
        .unwrap();
    let lost = s.run(flow).unwrap_err();
    assert!(lost.outcome_unknown(), "{lost:?}");
    assert_eq!(s.requests.len(), 3);
}

/// The official SDK's storage upload vector (`read-crypto-vectors.json`).
fn official_upload() -> (Contract, Vec<u8>, String) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/generated/read-crypto-vectors.json"
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let key = v["rsaPrivateKeyPkcs1Pem"].as_str().unwrap();
    let vector = v["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "storage-upload-blob")
        .unwrap();
    let hex = vector["fileHex"].as_str().unwrap();
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let plaintext = vector["expectedPlaintextUtf8"].as_str().unwrap().to_owned();
    (
        Contract::from_pem("contract", key).unwrap(),
        bytes,
        plaintext,
    )
}

#[test]
fn a_file_the_official_sdk_uploaded_downloads_decrypted() {
    let w = World::new();
    let (contract, file, plaintext) = official_upload();
    let mut s = w.script();
    s.then(Answer::status(200).body(file.clone()).streamed(17));
    let flow = (w.sdk)
        .download_storage_file(&contract, &storage(), "docs/x.json")
        .unwrap();
    s.run(flow).unwrap();
    assert_eq!(s.output, plaintext.as_bytes());
    let sent = s.last();
    assert_eq!(
        sent.path,
        "https://cloud.digi.me/v1/clouds/st_1/files/apps/app/docs/x.json"
    );
    assert_eq!(header(sent, "accept"), Some("application/octet-stream"));
    let (head, _) = bearer(sent);
    assert_eq!(head["kid"], "contract_app_0");
    // The vector's wrapped key is the RSA-OAEP-SHA1 of a 32-byte key, as ours are.
    let dek = contract.key().decrypt_oaep_sha1(&file[..256]).unwrap();
    assert_eq!(dek.len(), 32);
}

#[test]
fn a_download_checks_the_status_and_the_envelope() {
    let w = World::new();
    let (contract, file, _) = official_upload();
    let mut s = w.script();
    // A 404 is an error, never an empty file (the official SDK's quirk); no retry.
    s.then(Answer::api_error(404, "FileNotFound"));
    let flow = (w.sdk)
        .download_storage_file(&contract, &storage(), "/x")
        .unwrap();
    assert!(matches!(s.run(flow), Err(Error::Api(e)) if e.code.as_str() == "FileNotFound"));
    assert_eq!(s.requests.len(), 1);
    // A body cut short of its padding is a decryption error at the end.
    s.then(
        Answer::status(200)
            .body(file[..file.len() - 16].to_vec())
            .streamed(64),
    );
    let flow = (w.sdk)
        .download_storage_file(&contract, &storage(), "/x")
        .unwrap();
    assert!(matches!(s.run(flow), Err(Error::Decryption(_))));
    // Another key cannot open it.
    s.then(Answer::status(200).body(file.clone()).streamed(64));
    let flow = (w.sdk)
        .download_storage_file(&w.contract, &storage(), "/x")
        .unwrap();
    assert!(matches!(s.run(flow), Err(Error::Decryption(_))));
    // A connection lost midway is a transport error, not a retry.
    s.then(Answer::status(200).body(file).streamed(64).cut_after(100));
    let flow = (w.sdk)
        .download_storage_file(&contract, &storage(), "/x")
        .unwrap();
    assert!(matches!(s.run(flow), Err(Error::Transport(_))));
    s.assert_consumed();
    assert!(
        w.sdk
            .download_storage_file(&contract, &storage(), "/folder/")
            .is_err()
    );
}

#[test]
fn authorize_with_a_storage_makes_its_reference_for_the_url() {
    let w = World::new();
    let mut s = w.script();
    let code = w
        .keys
        .sign("k1", &json!({"preauthorization_code": "PRE_1"}));
    s.then(Answer::status(201).body(json!({"token": code})))
        .then(Answer::json(r#"{"id":"ref_st"}"#));
    let options = AuthorizeOptions {
        storage_id: Some(storage()),
        ..Default::default()
    };
    let flow = (w.sdk)
        .authorize_url(&w.contract, "https://app.example/cb", "st-1", options)
        .unwrap();
    let url = s.run(flow).unwrap();
    assert_eq!(s.endpoints(), ["POST oauth/authorize", "POST reference"]);
    assert_eq!(body_of(s.last()), json!({"type":"cloudId","value":"st_1"}));
    assert!(url.url.contains("&storageRef=ref_st"), "{}", url.url);
    // No reference, no URL: a storage the user would never get is an error.
    s.then(
        Answer::status(201)
            .body(json!({"token": w.keys.sign("k1", &json!({"preauthorization_code": "PRE_2"}))})),
    )
    .then(Answer::api_error(404, "StorageNotFound"));
    let options = AuthorizeOptions {
        storage_id: Some(storage()),
        ..Default::default()
    };
    let flow = (w.sdk)
        .authorize_url(&w.contract, "https://app.example/cb", "st-1", options)
        .unwrap();
    assert!(matches!(s.run(flow), Err(Error::Api(e)) if e.code.as_str() == "StorageNotFound"));
}
