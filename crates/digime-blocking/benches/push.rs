//! Signing a request JWT, and a full push of small and larger bodies over loopback
//! against the sandbox. Compare the signing figure with `openssl speed rsa2048`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use digime_blocking::Client;
use digime_protocol::{AuthorizeOptions, Config, Contract, FileDescriptor, parse_callback};
use digime_sandbox::{ConsentMode, Sandbox, SandboxConfig};
use std::io::Cursor;
use std::time::SystemTime;

fn signing(c: &mut Criterion) {
    let config = Config::new("bench-app").unwrap();
    let contract = Contract::new(
        "bench-contract",
        digime_protocol::PrivateKey::generate().unwrap(),
    )
    .unwrap();
    c.bench_function("sign request JWT (PS512, RSA-2048)", |b| {
        b.iter(|| {
            let mut claims = serde_json::Map::new();
            claims.insert("access_token".into(), "at_0123456789".into());
            digime_protocol::wire::sign_request_jwt(&config, &contract, SystemTime::now(), claims)
                .unwrap()
        })
    });
}

fn push(c: &mut Criterion) {
    let sandbox = Sandbox::spawn(SandboxConfig {
        consent: ConsentMode::Auto,
        ..Default::default()
    })
    .unwrap();
    let info = sandbox.info();
    let config = info.client_config();
    let client = Client::new(config);
    let contract = info.demo.write.contract().unwrap();
    let auth = client
        .authorize_url(
            &contract,
            "http://localhost/cb",
            "s",
            AuthorizeOptions::default(),
        )
        .unwrap();
    let browser = ureq::Agent::config_builder()
        .max_redirects(0)
        .max_redirects_will_error(false)
        .build()
        .new_agent();
    let r = browser.get(&auth.url).call().unwrap();
    let cb = parse_callback(r.headers()["location"].to_str().unwrap()).unwrap();
    let token = client
        .exchange_code_for_token(&contract, &cb.code, &auth.code_verifier)
        .unwrap();
    let descriptor = FileDescriptor::new("application/octet-stream");

    let mut group = c.benchmark_group("push_to_library");
    for size in [1024usize, 1 << 20, 16 << 20] {
        let body = vec![0x5au8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.sample_size(if size > (1 << 20) { 10 } else { 30 });
        group.bench_with_input(BenchmarkId::from_parameter(size), &body, |b, body| {
            b.iter(|| {
                client
                    .push_to_library(&contract, &token, &descriptor, Cursor::new(body.as_slice()))
                    .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, signing, push);
criterion_main!(benches);
