//! The read-session call (`POST permission-access/trigger`) fed an arbitrary answer:
//! status, `Retry-After` and body from the input. It must end (no loop, no panic) with
//! a session or a typed error, and never ask for a second request except a refresh.
#![no_main]

use digime_protocol::flow::{Flow, Step};
use digime_protocol::{Config, Contract, PrivateKey, PullOptions, Sdk, UserAccessToken};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use std::time::SystemTime;

fn fixtures() -> &'static (Sdk, Contract, UserAccessToken) {
    static F: OnceLock<(Sdk, Contract, UserAccessToken)> = OnceLock::new();
    F.get_or_init(|| {
        let sdk = Sdk::new(Config::new("app").unwrap());
        let contract = Contract::new("c", PrivateKey::generate().unwrap()).unwrap();
        let token = serde_json::from_str(
            r#"{"accessToken":{"value":"a","expiry":1},"refreshToken":{"value":"r","expiry":2}}"#,
        )
        .unwrap();
        (sdk, contract, token)
    })
}

fuzz_target!(|data: &[u8]| {
    let (sdk, contract, token) = fixtures();
    let Some((&status_byte, body)) = data.split_first() else {
        return;
    };
    let statuses = [200u16, 201, 202, 204, 400, 401, 403, 404, 406, 429, 500, 503];
    let status = statuses[status_byte as usize % statuses.len()];
    let mut flow = sdk.read_session(contract, token, &PullOptions::default());
    let now = SystemTime::now();
    let mut sends = 0;
    for _ in 0..16 {
        match flow.poll(now) {
            Step::Send(_) => {
                sends += 1;
                let mut b = http::Response::builder().status(status);
                if status_byte & 0x80 != 0 {
                    b = b.header("retry-after", "1");
                }
                flow.handle_response(b.body(body.to_vec()).unwrap());
            }
            Step::Done(r) => {
                if let Ok(s) = r {
                    assert!(!s.value.key.as_str().is_empty());
                }
                return;
            }
            Step::Sleep(_) | Step::Event(_) => {}
            Step::Receive => panic!("a session call never streams"),
        }
        assert!(sends <= 3, "trigger is a POST: at most the call, a refresh, the call");
    }
    panic!("the flow did not end");
});
