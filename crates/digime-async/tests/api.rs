//! Discovery, sample data, the portability report, provider pushes and storage
//! through the async driver against the strict sandbox: each call end to end, with
//! the blocking driver's outcomes.

use digime_async::Client;
use digime_protocol::auth::{SampleData, SourceType};
use digime_protocol::discovery::{FacetQuery, SourceFilter, SourcesQuery};
use digime_protocol::{
    AuthorizeOptions, Contract, Error, FhirVersion, PortabilityReportOptions, PrivateKey,
    StorageId, UserAccessToken, parse_callback,
};
use digime_sandbox::{ConsentMode, RunningSandbox, Sandbox, SandboxConfig};
use digime_testkit::control::{AsyncControl, quick_config};
use serde_json::json;
use std::io::Cursor;

const CALLBACK: &str = "http://127.0.0.1:9/cb";

struct Env {
    _sandbox: RunningSandbox,
    control: AsyncControl,
    client: Client,
    read: Contract,
    write: Contract,
}

async fn env() -> Env {
    let sandbox = Sandbox::start(SandboxConfig {
        consent: ConsentMode::Auto,
        ..Default::default()
    })
    .await
    .unwrap();
    let info = sandbox.info().clone();
    Env {
        control: AsyncControl::new(&info),
        client: Client::new(quick_config(&info)),
        read: info.demo.read.contract().unwrap(),
        write: info.demo.write.contract().unwrap(),
        _sandbox: sandbox,
    }
}

impl Env {
    async fn authorize(
        &self,
        contract: &Contract,
        options: AuthorizeOptions,
    ) -> (UserAccessToken, Option<String>) {
        let auth = (self.client)
            .authorize_url(contract, CALLBACK, "st", options)
            .await
            .unwrap();
        let cb = parse_callback(&self.control.browse(&auth.url).await)
            .unwrap()
            .verify_state("st")
            .unwrap();
        let token = (self.client)
            .exchange_code_for_token(contract, &cb.code, &auth.code_verifier)
            .await
            .unwrap();
        (token, cb.account_reference)
    }
}

fn api_code<T: std::fmt::Debug>(result: Result<T, Error>) -> (u16, String) {
    match result {
        Err(Error::Api(e)) => (e.status, e.code.as_str().to_owned()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_and_sample_data() {
    let env = env().await;
    let (client, c) = (&env.client, &env.read);
    let page = client
        .query_sources(c, &SourcesQuery::default())
        .await
        .unwrap();
    assert!(
        page.data
            .iter()
            .any(|s| s.id == 16 && s.service.as_ref().unwrap().id == Some(12))
    );
    let two = SourcesQuery {
        limit: Some(2),
        offset: Some(1),
        ..Default::default()
    };
    let next = client.query_sources(c, &two).await.unwrap();
    assert_eq!(
        (next.data.len(), next.offset, next.total),
        (2, 1, page.total)
    );
    assert_eq!(next.data[0].id, page.data[1].id);
    assert!(
        !client
            .query_countries(c, &FacetQuery::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        !client
            .query_platforms(c, &FacetQuery::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        !client
            .query_categories(c, &FacetQuery::default())
            .await
            .unwrap()
            .is_empty()
    );
    let sets = client.service_sample_data_sets(c, 16).await.unwrap();
    assert!(sets.contains_key("default"));
    let impostor = Contract::new(c.id().as_str(), PrivateKey::generate().unwrap()).unwrap();
    let (status, _) = api_code(
        client
            .query_categories(&impostor, &FacetQuery::default())
            .await,
    );
    assert_eq!(status, 406);

    let options = AuthorizeOptions {
        service_id: Some(16),
        sample_data: Some(SampleData {
            data_set: "default".into(),
            auto_onboard: true,
        }),
        ..Default::default()
    };
    let (token, _) = env.authorize(c, options).await;
    let accounts = client.read_accounts(c, &token).await.unwrap().value;
    assert!(
        accounts
            .iter()
            .any(|a| a.sample == Some(true) && a.source_id == 16)
    );
    let mut report = Vec::new();
    (client)
        .portability_report_to(c, &token, &PortabilityReportOptions::default(), &mut report)
        .await
        .unwrap();
    assert!(report.starts_with(b"<?xml"));
    let text = client
        .portability_report(c, &token, &PortabilityReportOptions::default())
        .await
        .unwrap();
    assert_eq!(text.value.as_bytes(), report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_push_and_storage() {
    let env = env().await;
    let (client, c) = (&env.client, &env.write);
    let push_sources = SourcesQuery {
        filter: SourceFilter {
            source_type: Some(vec![SourceType::Push]),
            ..Default::default()
        },
        ..Default::default()
    };
    let provider = client.query_sources(c, &push_sources).await.unwrap().data[0].clone();
    let storage = client.create_provisional_storage(c).await.unwrap();
    let options = AuthorizeOptions {
        source_type: SourceType::Push,
        service_id: Some(provider.id),
        storage_id: Some(storage.id.clone()),
        ..Default::default()
    };
    let (token, reference) = env.authorize(c, options).await;
    let accounts = client.read_accounts(c, &token).await.unwrap().value;
    let account = accounts
        .iter()
        .find(|a| Some(&a.reference) == reference.as_ref())
        .expect("the push account");
    let patient = json!({"resourceType": "Patient", "name": [{"family": "Jansen"}]});
    (client)
        .push_to_provider(c, &token, &account.id, FhirVersion::V3_0_2, &patient)
        .await
        .unwrap();
    let stored = env.control.provider_pushes(token.user_id().unwrap()).await;
    assert_eq!(stored.len(), 1);
    let (status, _) = api_code(
        client
            .push_to_provider(
                c,
                &token,
                &account.id,
                FhirVersion::Stu3,
                &json!({"resourceType": 7}),
            )
            .await,
    );
    assert_eq!(status, 400);

    assert_eq!(
        client.user_storage(c, &token).await.unwrap().value.id,
        storage.id
    );
    let body: Vec<u8> = (0..1_000_003u32).map(|i| (i % 241) as u8).collect();
    (client)
        .upload_storage_file(c, &storage.id, "/a/b", "x.bin", Cursor::new(body.clone()))
        .await
        .unwrap();
    let list = client
        .list_storage_files(c, &storage.id, "/a", true)
        .await
        .unwrap();
    assert_eq!((list.total, list.files[0].path.as_str()), (1, "/a/b/"));
    let mut back = Vec::new();
    (client)
        .download_storage_file(c, &storage.id, "/a/b/x.bin", &mut back)
        .await
        .unwrap();
    assert_eq!(back, body);
    client
        .delete_storage_files(c, &storage.id, "/a/b/x.bin")
        .await
        .unwrap();
    let mut sink = Vec::new();
    let (status, code) = api_code(
        client
            .download_storage_file(c, &storage.id, "/a/b/x.bin", &mut sink)
            .await,
    );
    assert_eq!((status, code.as_str()), (404, "FileNotFound"));
    let unknown = StorageId::new("st_nope").unwrap();
    let (status, _) = api_code(client.list_storage_files(c, &unknown, "/", true).await);
    assert_eq!(status, 404);
}
