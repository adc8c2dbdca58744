//! The `read_all_files` coordinator fed arbitrary answers: file lists built from the
//! input (states, names, dates), download results (delivered, 401, other errors, in any
//! order), refreshes that succeed or fail, and a stop at any point. It must never panic,
//! never run more downloads than allowed, always end, and account for every file it
//! reported.
#![no_main]

use digime_protocol::flow::{Authed, Flow, Step};
use digime_protocol::read_all::{ReadAllStep, Task};
use digime_protocol::{
    Config, Contract, Error, FileList, PrivateKey, ReadAllEvent, ReadAllOptions, Sdk,
    SessionKey, UserAccessToken,
};
use libfuzzer_sys::fuzz_target;
use std::collections::VecDeque;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

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

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
}

fn status_401() -> Error {
    Error::UnexpectedStatus {
        status: 401,
        body: String::new(),
        retry_after: None,
    }
}

/// A file list from the input; `completed` once the input runs out.
fn list(input: &mut Input) -> Result<Authed<FileList>, Error> {
    let Some(kind) = input.byte() else {
        return Ok(Authed {
            value: FileList::parse(br#"{"status":{"state":"completed"}}"#).unwrap(),
            refreshed_token: None,
        });
    };
    match kind % 8 {
        0 => Err(status_401()),
        1 => Err(Error::InvalidInput("list failed".into())),
        _ => {
            let state = ["pending", "running", "running", "partial", "completed"]
                [kind as usize % 5];
            let n = input.byte().unwrap_or(0) % 6;
            let entries: Vec<String> = (0..n)
                .map(|_| {
                    let b = input.byte().unwrap_or(0);
                    format!(
                        r#"{{"name":"f{}","updatedDate":{}}}"#,
                        b % 7,
                        i64::from(b / 7) - 3
                    )
                })
                .collect();
            let body = format!(
                r#"{{"status":{{"state":"{state}"}},"fileList":[{}]}}"#,
                entries.join(",")
            );
            Ok(Authed {
                value: FileList::parse(body.as_bytes()).unwrap(),
                refreshed_token: None,
            })
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (sdk, contract, token) = fixtures();
    let mut input = Input(data);
    let max = 1 + (input.byte().unwrap_or(0) % 4) as usize;
    let options = ReadAllOptions {
        max_concurrency: max,
        ..Default::default()
    };
    let stop = options.stop.clone();
    let mut all = sdk.read_all_files::<String>(
        contract,
        token,
        &SessionKey::new("s").unwrap(),
        options,
    );
    let mut now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let mut running: VecDeque<(u64, String)> = VecDeque::new();
    let (mut delivered, mut failed) = (0usize, 0usize);
    for _ in 0..10_000 {
        match all.poll(now) {
            ReadAllStep::Run(Task::List(t)) => {
                // The flow is real; its answer comes from the input.
                let mut flow = t.into_flow();
                let Step::Send(_) = flow.poll(now) else {
                    panic!("a list task starts with a request")
                };
                all.list_done(list(&mut input), now);
            }
            ReadAllStep::Run(Task::File(t)) => {
                running.push_back((t.id, t.entry.name.clone()));
                assert!(running.len() <= max, "more downloads than allowed");
            }
            ReadAllStep::Run(Task::Refresh(_)) => {
                let r = match input.byte() {
                    Some(b) if b % 4 == 0 => Err(Error::InvalidInput("refresh refused".into())),
                    _ => Ok(token.clone()),
                };
                all.refresh_done(r);
            }
            ReadAllStep::Run(_) => {}
            ReadAllStep::Sleep(d) => {
                if input.byte().is_some_and(|b| b == 0xff) {
                    stop.stop();
                }
                match running.pop_front() {
                    Some((id, name)) => all.file_done(id, Ok(name)),
                    None => now += d,
                }
            }
            ReadAllStep::Wait => {
                let b = input.byte().unwrap_or(0);
                if running.is_empty() {
                    panic!("Wait with nothing running");
                }
                let (id, name) = running.remove(b as usize % running.len()).unwrap();
                let r = match b % 5 {
                    0 => Err(status_401()),
                    1 => Err(Error::InvalidInput("broken file".into())),
                    _ => Ok(name),
                };
                all.file_done(id, r);
            }
            ReadAllStep::Event(ReadAllEvent::File(_)) => delivered += 1,
            ReadAllStep::Event(ReadAllEvent::FileError { .. }) => failed += 1,
            ReadAllStep::Event(_) => {}
            ReadAllStep::Done(r) => {
                assert!(running.is_empty(), "done with downloads still running");
                if let Ok(s) = r {
                    assert_eq!((s.files_read, s.files_failed), (delivered, failed));
                }
                return;
            }
        }
    }
    panic!("read_all did not end");
});
