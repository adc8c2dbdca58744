//! Discovery, sample data, the portability report, provider pushes and storage through
//! the blocking driver against the strict sandbox: each call end to end, and the sad
//! paths as typed errors (a foreign key, an expired storage JWT, an unknown storage, a
//! missing file, an invalid FHIR body, a read contract pushing).

use digime_blocking::Client;
use digime_protocol::auth::{SampleData, SourceType};
use digime_protocol::discovery::{FacetQuery, SourceFilter, SourcesQuery};
use digime_protocol::error::TransportError;
use digime_protocol::flow::{Flow, Step};
use digime_protocol::{
    AuthorizeOptions, Contract, Error, ErrorCode, FhirVersion, PortabilityReportOptions,
    PrivateKey, StorageId, UserAccessToken, http, parse_callback,
};
use digime_sandbox::BackgroundSandbox;
use digime_testkit::control::{Control, quick_config, sandbox};
use serde_json::json;
use std::io::Cursor;
use std::time::{Duration, SystemTime};

const CALLBACK: &str = "http://localhost:9999/return";

struct Env {
    _sandbox: BackgroundSandbox,
    control: Control,
    client: Client,
    read: Contract,
    write: Contract,
}

fn env() -> Env {
    let (sandbox, control) = sandbox();
    let info = sandbox.info().clone();
    Env {
        client: Client::new(quick_config(&info)),
        read: info.demo.read.contract().unwrap(),
        write: info.demo.write.contract().unwrap(),
        control,
        _sandbox: sandbox,
    }
}

impl Env {
    /// Authorizes `contract`; the token and the callback's account reference.
    fn authorize(
        &self,
        contract: &Contract,
        options: AuthorizeOptions,
    ) -> (UserAccessToken, Option<String>) {
        let auth = (self.client)
            .authorize_url(contract, CALLBACK, "st-1", options)
            .unwrap();
        let callback = parse_callback(&self.control.browse(&auth.url))
            .unwrap()
            .verify_state("st-1")
            .unwrap();
        let token = (self.client)
            .exchange_code_for_token(contract, &callback.code, &auth.code_verifier)
            .unwrap();
        (token, callback.account_reference)
    }
}

/// The same contract id with another key: every signature it makes is foreign.
fn impostor(contract: &Contract) -> Contract {
    Contract::new(contract.id().as_str(), PrivateKey::generate().unwrap()).unwrap()
}

fn api_code(result: Result<impl std::fmt::Debug, Error>) -> (u16, String) {
    match result {
        Err(Error::Api(e)) => (e.status, e.code.as_str().to_owned()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Runs a flow as if the clock were `behind` in the past: its storage JWTs have
/// expired by the time they arrive.
struct Late<F>(F, Duration);

impl<F: Flow> Flow for Late<F> {
    type Output = F::Output;
    fn poll(&mut self, now: SystemTime) -> Step<F::Output> {
        self.0.poll(now - self.1)
    }
    fn handle_response(&mut self, response: http::Response<Vec<u8>>) {
        self.0.handle_response(response)
    }
    fn handle_transport_error(&mut self, error: TransportError) {
        self.0.handle_transport_error(error)
    }
    fn handle_body(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> bool {
        self.0.handle_body(chunk, out)
    }
    fn handle_body_end(&mut self, out: &mut Vec<u8>) {
        self.0.handle_body_end(out)
    }
    fn handle_body_drain(&mut self, out: &mut Vec<u8>) -> bool {
        self.0.handle_body_drain(out)
    }
}

// ---------------------------------------------------------------------------------
// Discovery and sample data.

#[test]
fn discovery_pages_filters_and_searches_the_catalogue() {
    let env = env();
    let (client, c) = (&env.client, &env.read);
    let first = client.query_sources(c, &SourcesQuery::default()).unwrap();
    assert!(first.total >= 10, "a realistic catalogue: {}", first.total);
    // Paging: every approved pull source exactly once.
    let mut query = SourcesQuery {
        limit: Some(4),
        ..Default::default()
    };
    let mut ids = Vec::new();
    loop {
        let page = client.query_sources(c, &query).unwrap();
        assert!(page.data.len() <= 4);
        ids.extend(page.data.iter().map(|s| s.id));
        match page.next_offset() {
            Some(o) => query.offset = Some(o as u32),
            None => break,
        }
    }
    assert_eq!(ids.len() as u64, first.total);
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "no source twice across pages");
    // The demo library's services are there, with their service ids.
    let fitbit = first.data.iter().chain([].iter()).find(|s| s.id == 16);
    let all = client
        .query_sources(
            c,
            &SourcesQuery {
                limit: Some(1000),
                ..Default::default()
            },
        )
        .unwrap();
    let fitbit = fitbit
        .or_else(|| all.data.iter().find(|s| s.id == 16))
        .expect("Fitbit");
    assert_eq!(fitbit.service.as_ref().unwrap().id, Some(12));
    assert!(
        all.data.iter().all(|s| !s.is_push()),
        "pull sources by default"
    );
    // Free text, and a category filter from the facet list.
    let fit = SourcesQuery {
        query_string: Some("fitbit".into()),
        ..Default::default()
    };
    let found = client.query_sources(c, &fit).unwrap();
    assert!(found.data.iter().any(|s| s.id == 16), "{found:?}");
    let categories = client.query_categories(c, &FacetQuery::default()).unwrap();
    let health = categories
        .iter()
        .find(|k| fitbit.categories().iter().any(|f| f.id == Some(k.id)));
    let health = health.expect("Fitbit's category is listed");
    let by_category = SourcesQuery {
        limit: Some(1000),
        filter: SourceFilter {
            category_id: vec![health.id],
            ..Default::default()
        },
        ..Default::default()
    };
    let in_health = client.query_sources(c, &by_category).unwrap();
    assert!(in_health.data.iter().any(|s| s.id == 16));
    assert!(in_health.total < all.total, "the filter filters");
    assert!(
        in_health
            .data
            .iter()
            .all(|s| s.categories().iter().any(|f| f.id == Some(health.id)))
    );
    // `include` keeps only what it names; what is left out parses as absent.
    let some = SourcesQuery {
        limit: Some(1000),
        include: Some(vec![
            "name".into(),
            "service.name".into(),
            "category.name".into(),
        ]),
        ..Default::default()
    };
    let some = client.query_sources(c, &some).unwrap();
    let slim = some.data.iter().find(|s| s.id == 16).expect("Fitbit");
    assert_eq!(slim.name.as_deref(), Some("Fitbit"));
    let service = slim.service.as_ref().expect("service.name");
    assert_eq!(
        (service.id, service.name.as_deref()),
        (None, Some("Fitbit"))
    );
    assert_eq!(slim.categories()[0].name, health.name);
    assert_eq!(slim.categories()[0].id, None);
    assert!(slim.published_status.is_none() && slim.resource.is_none());
    // Unpublished sources only when asked for.
    let pending = SourcesQuery {
        limit: Some(1000),
        filter: SourceFilter {
            published_status: Some(vec![digime_protocol::discovery::PublishedStatus::Pending]),
            ..Default::default()
        },
        ..Default::default()
    };
    let pending = client.query_sources(c, &pending).unwrap();
    assert!(pending.total > 0);
    assert!(pending.data.iter().all(|s| !ids.contains(&s.id)));
    // The facets.
    let countries = client.query_countries(c, &FacetQuery::default()).unwrap();
    assert!(
        countries.iter().any(|k| k.code.as_deref() == Some("NL")),
        "{countries:?}"
    );
    let one = FacetQuery {
        id: Some(vec![countries[0].id]),
        ..Default::default()
    };
    assert_eq!(client.query_countries(c, &one).unwrap().len(), 1);
    assert!(
        !client
            .query_platforms(c, &FacetQuery::default())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn discovery_refuses_a_foreign_key_and_an_unknown_source() {
    let env = env();
    let (status, code) = api_code(
        env.client
            .query_sources(&impostor(&env.read), &SourcesQuery::default()),
    );
    assert_eq!((status, code.as_str()), (406, "ValidationErrors"));
    let sets = env.client.service_sample_data_sets(&env.read, 16).unwrap();
    assert!(sets.contains_key("default"), "{sets:?}");
    let (status, code) = api_code(env.client.service_sample_data_sets(&env.read, 987_654));
    assert_eq!((status, code.as_str()), (404, "SourceNotFound"));
}

#[test]
fn a_sample_data_set_onboards_a_sample_account() {
    let env = env();
    let options = AuthorizeOptions {
        service_id: Some(16),
        sample_data: Some(SampleData {
            data_set: "default".into(),
            auto_onboard: true,
        }),
        ..Default::default()
    };
    let (token, _) = env.authorize(&env.read, options);
    let accounts = env.client.read_accounts(&env.read, &token).unwrap().value;
    let sample = accounts.iter().find(|a| a.sample == Some(true));
    let sample = sample.unwrap_or_else(|| panic!("no sample account in {accounts:?}"));
    assert_eq!(sample.source_id, 16);
}

// ---------------------------------------------------------------------------------
// The portability report and provider pushes.

#[test]
fn the_portability_report_is_built_from_the_library_and_streams_to_a_writer() {
    let env = env();
    let (token, _) = env.authorize(&env.read, AuthorizeOptions::default());
    let report = (env.client)
        .portability_report(&env.read, &token, &PortabilityReportOptions::default())
        .unwrap()
        .value;
    assert!(
        report.starts_with("<?xml"),
        "{}",
        &report[..report.len().min(200)]
    );
    // The health data of the library: the Fitbit account, with its objects.
    assert!(
        report.contains("serviceTypeName=\"Fitbit\""),
        "{report:.400}"
    );
    assert!(report.contains("<entry "), "{report:.400}");
    let mut streamed = Vec::new();
    (env.client)
        .portability_report_to(
            &env.read,
            &token,
            &PortabilityReportOptions::default(),
            &mut streamed,
        )
        .unwrap();
    assert!(streamed.len() > 100);
    // A window before any data: a smaller, still valid report.
    let early = PortabilityReportOptions {
        from: Some(SystemTime::UNIX_EPOCH),
        to: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(86_400)),
        ..Default::default()
    };
    let empty = (env.client)
        .portability_report(&env.read, &token, &early)
        .unwrap()
        .value;
    assert!(empty.starts_with("<?xml") && empty.len() < report.len());
    assert!(!empty.contains("<entry "), "{empty}");
    // An expired access token is refreshed on the way.
    env.control.expire_access_tokens(token.user_id().unwrap());
    let again = (env.client)
        .portability_report(&env.read, &token, &early)
        .unwrap();
    assert!(again.refreshed_token.is_some());
}

#[test]
fn a_provider_push_goes_to_the_push_account_and_bad_fhir_is_refused() {
    let env = env();
    let push_sources = SourcesQuery {
        filter: SourceFilter {
            source_type: Some(vec![SourceType::Push]),
            ..Default::default()
        },
        ..Default::default()
    };
    let provider = env.client.query_sources(&env.write, &push_sources).unwrap();
    let provider = provider.data.first().expect("a push source").clone();
    assert!(provider.is_push());
    let options = AuthorizeOptions {
        source_type: SourceType::Push,
        service_id: Some(provider.id),
        ..Default::default()
    };
    let (token, reference) = env.authorize(&env.write, options);
    let reference = reference.expect("the callback names the push account");
    let accounts = env.client.read_accounts(&env.write, &token).unwrap().value;
    let account = accounts
        .iter()
        .find(|a| a.reference == reference)
        .expect("the push account");
    let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Observation", "status": "final",
                      "code": {"text": "Body weight"}, "valueQuantity": {"value": 71.5, "unit": "kg"}}}
    ]});
    let pushed = (env.client)
        .push_to_provider(&env.write, &token, &account.id, FhirVersion::Stu3, &bundle)
        .unwrap();
    assert!(pushed.refreshed_token.is_none());
    let user = token.user_id().unwrap();
    let stored = env.control.provider_pushes(user);
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["resource"], bundle);

    // Not FHIR, a pull account, a read contract: each refused, nothing stored.
    let not_fhir = json!({"resourceType": "Spreadsheet"});
    let (status, code) = api_code((env.client).push_to_provider(
        &env.write,
        &token,
        &account.id,
        FhirVersion::V3_0_2,
        &not_fhir,
    ));
    assert_eq!((status, code.as_str()), (400, "ValidationErrors"));
    let pull = accounts
        .iter()
        .find(|a| a.id != account.id)
        .expect("a pull account");
    let (status, code) = api_code((env.client).push_to_provider(
        &env.write,
        &token,
        &pull.id,
        FhirVersion::Stu3,
        &bundle,
    ));
    assert_eq!((status, code.as_str()), (404, "AccountNotFound"));
    let (read_token, _) = {
        let auth = AuthorizeOptions {
            user_access_token: Some(token.clone()),
            ..Default::default()
        };
        env.authorize(&env.read, auth)
    };
    let refused = (env.client).push_to_provider(
        &env.read,
        &read_token,
        &account.id,
        FhirVersion::Stu3,
        &bundle,
    );
    assert!(
        matches!(&refused, Err(Error::Api(e)) if e.code == ErrorCode::InsufficientScope),
        "{refused:?}"
    );
    assert_eq!(env.control.provider_pushes(user).len(), 1);
}

// ---------------------------------------------------------------------------------
// Storage.

#[test]
fn storage_round_trip_through_the_users_storage() {
    let env = env();
    let (client, c) = (&env.client, &env.write);
    let storage = client.create_provisional_storage(c).unwrap();
    let options = AuthorizeOptions {
        storage_id: Some(storage.id.clone()),
        ..Default::default()
    };
    let (token, _) = env.authorize(c, options);
    assert_eq!(client.user_storage(c, &token).unwrap().value.id, storage.id);

    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let files: [(&str, &str, &[u8]); 4] = [
        ("/docs", "a.json", br#"{"a":1}"#),
        ("/docs/2026", "b.txt", b"bee"),
        ("/", "empty.bin", b""),
        ("/big", "big.bin", &big),
    ];
    for (folder, name, bytes) in files {
        client
            .upload_storage_file(c, &storage.id, folder, name, Cursor::new(bytes))
            .unwrap();
    }
    let all = client
        .list_storage_files(c, &storage.id, "/", true)
        .unwrap();
    let mut paths: Vec<String> = all
        .files
        .iter()
        .map(|f| format!("{}{}", f.path, f.name))
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/big/big.bin",
            "/docs/2026/b.txt",
            "/docs/a.json",
            "/empty.bin"
        ]
    );
    assert_eq!(all.total, 4);
    let docs = client
        .list_storage_files(c, &storage.id, "docs", false)
        .unwrap();
    assert_eq!(
        docs.files
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>(),
        ["a.json"]
    );
    // Only ciphertext is stored: the cloud holds the envelope, never the bytes.
    let held = env.control.cloud_file(storage.id.as_str(), "/big/big.bin");
    assert_eq!(
        held.len() as u64,
        digime_crypto::envelope::encrypted_len(
            big.len() as u64,
            digime_crypto::envelope::Format::Current
        )
    );
    assert!(!held.windows(64).any(|w| w == &big[..64]));
    for (folder, name, bytes) in files {
        let mut back = Vec::new();
        let path = format!("{}/{name}", folder.trim_end_matches('/'));
        client
            .download_storage_file(c, &storage.id, &path, &mut back)
            .unwrap();
        assert_eq!(back, bytes, "{path}");
    }
    // Replacing a file, then deleting a folder and the root.
    client
        .upload_storage_file(c, &storage.id, "/docs", "a.json", Cursor::new(b"{}"))
        .unwrap();
    let mut back = Vec::new();
    client
        .download_storage_file(c, &storage.id, "/docs/a.json", &mut back)
        .unwrap();
    assert_eq!(back, b"{}");
    client
        .delete_storage_files(c, &storage.id, "/docs/")
        .unwrap();
    let left = client
        .list_storage_files(c, &storage.id, "/", true)
        .unwrap();
    assert_eq!(left.total, 2);
    client.delete_storage_files(c, &storage.id, "/").unwrap();
    assert_eq!(
        client
            .list_storage_files(c, &storage.id, "/", true)
            .unwrap()
            .total,
        0
    );
}

#[test]
fn storage_sad_paths_are_typed_errors() {
    let env = env();
    let (client, c) = (&env.client, &env.write);
    let storage = client.create_provisional_storage(c).unwrap();
    client
        .upload_storage_file(c, &storage.id, "/", "x.txt", Cursor::new(b"x"))
        .unwrap();
    // A missing file: a 404, and nothing written to the sink.
    let mut sink = Vec::new();
    let (status, code) =
        api_code(client.download_storage_file(c, &storage.id, "/nope.txt", &mut sink));
    assert_eq!((status, code.as_str()), (404, "FileNotFound"));
    assert!(sink.is_empty());
    // An unknown storage.
    let unknown = StorageId::new("st_unknown").unwrap();
    let (status, code) = api_code(client.list_storage_files(c, &unknown, "/", false));
    assert_eq!((status, code.as_str()), (404, "StorageNotFound"));
    // A foreign key: the signature does not verify.
    let (status, code) = api_code(client.list_storage_files(&impostor(c), &storage.id, "/", false));
    assert_eq!((status, code.as_str()), (406, "ValidationErrors"));
    // An expired storage JWT.
    let flow = client
        .sdk()
        .list_storage_files(c, &storage.id, "/", false)
        .unwrap();
    let (status, code) = api_code(client.run(Late(flow, Duration::from_secs(120)), None));
    assert_eq!((status, code.as_str()), (401, "InvalidToken"));
    // Another contract's key cannot read what this one stored.
    let mut sink = Vec::new();
    let other = client.download_storage_file(&env.read, &storage.id, "/x.txt", &mut sink);
    assert!(other.is_err(), "{other:?}");
    // Bad paths never leave the process.
    assert!(matches!(
        client.list_storage_files(c, &storage.id, "a b", true),
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        client.delete_storage_files(c, &storage.id, ""),
        Err(Error::InvalidInput(_))
    ));
    let requests = env.control.requests_to("");
    assert!(matches!(
        client.upload_storage_file(c, &storage.id, "/../up", "x", Cursor::new(b"x")),
        Err(Error::InvalidInput(_))
    ));
    assert_eq!(env.control.requests_to(""), requests, "nothing was sent");
}
