//! What the blocking driver puts on the wire, against the shared scripted server:
//! uploads with an exact `Content-Length`, rewound and re-encoded for every attempt.

use digime_blocking::Client;
use digime_protocol::legacy::{PostboxAuth, PostboxStatus};
use digime_protocol::{Config, FileDescriptor};
use digime_testkit::fixtures::{PendingPush, expired_token};
use digime_testkit::scripted::serve;
use std::sync::{Arc, Mutex};

fn config(base: &str) -> Config {
    Config::new("app").unwrap().with_base_url(base).unwrap()
}

#[test]
fn a_pending_push_refreshes_and_streams_the_file_again_with_a_content_length() {
    let s = PendingPush::new();
    let (base, server) = serve(s.responses.clone());
    let heard = Arc::new(Mutex::new(Vec::new()));
    let h = heard.clone();
    let client = Client::new(config(&base)).on_token_refreshed(move |t| {
        h.lock()
            .unwrap()
            .push(t.access_token.value.expose().to_owned())
    });
    client.sdk().use_static_server_keys(s.keys.clone());
    let auth = PostboxAuth::TokenJwt {
        contract: s.contract.clone(),
        token: s.token.clone(),
    };
    let pushed = client
        .legacy()
        .push_to_postbox(
            &s.postbox,
            auth,
            "big.bin",
            &FileDescriptor::new("application/octet-stream"),
            std::io::Cursor::new(s.data.clone()),
        )
        .unwrap();
    assert_eq!(pushed.value.status, PostboxStatus::Delivered);
    assert_eq!(
        pushed.refreshed_token.unwrap().refresh_token.value.expose(),
        "r2"
    );
    s.check(&server.join().unwrap(), &heard.lock().unwrap());
}

#[test]
fn a_library_push_has_a_content_length_and_is_rewound_after_a_refresh() {
    let s = PendingPush::new();
    // 401, the refresh, then 201.
    let responses = vec![
        (401, String::new()),
        s.responses[1].clone(),
        (201, String::new()),
    ];
    let (base, server) = serve(responses);
    let client = Client::new(config(&base));
    client.sdk().use_static_server_keys(s.keys.clone());
    // Start the reader mid-way: the driver must seek to the start itself.
    let mut body = std::io::Cursor::new(s.data.clone());
    body.set_position(1234);
    let pushed = client
        .push_to_library(
            &s.contract,
            &expired_token(),
            &FileDescriptor::new("text/plain"),
            body,
        )
        .unwrap();
    assert_eq!(
        pushed.refreshed_token.unwrap().access_token.value.expose(),
        "new"
    );
    let got = server.join().unwrap();
    for push in [&got[0], &got[2]] {
        assert!(
            push.head
                .starts_with("POST /v1.7/permission-access/import ")
        );
        assert_eq!(
            push.header("content-length"),
            Some(s.data.len().to_string())
        );
        assert!(push.header("transfer-encoding").is_none());
        assert_eq!(push.body, s.data);
    }
}

/// Has 1,000 bytes; its seek to the end says `.0` (1 MiB: shorter than it says; 10:
/// longer).
struct Lying(u64, u64);
impl std::io::Read for Lying {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(1000usize.saturating_sub(self.1 as usize));
        buf[..n].fill(1);
        self.1 += n as u64;
        Ok(n)
    }
}
impl std::io::Seek for Lying {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        self.1 = 0;
        Ok(if to == std::io::SeekFrom::End(0) {
            self.0
        } else {
            0
        })
    }
}

#[test]
fn a_body_shorter_or_longer_than_its_length_is_a_body_source_error() {
    for says in [1 << 20, 10] {
        let (base, _server) = serve(vec![(201, String::new())]);
        let client = Client::new(config(&base));
        let err = client
            .push_to_library(
                &digime_testkit::fixtures::contract("c"),
                &digime_testkit::fixtures::token("a", 4_000_000_000, "r", 4_000_000_000),
                &FileDescriptor::new("text/plain"),
                Lying(says, 0),
            )
            .unwrap_err();
        assert!(
            matches!(&err, digime_protocol::Error::Transport(t) if t.kind == digime_protocol::TransportErrorKind::BodySource),
            "{err:?}"
        );
    }
}

/// A reader that is interrupted before every read and then gives at most 1,000 bytes.
struct Jittery(std::io::Cursor<Vec<u8>>, bool);
impl std::io::Read for Jittery {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.1 = !self.1;
        if self.1 {
            return Err(std::io::ErrorKind::Interrupted.into());
        }
        let n = buf.len().min(1000);
        self.0.read(&mut buf[..n])
    }
}
impl std::io::Seek for Jittery {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        self.0.seek(to)
    }
}

#[test]
fn interrupted_and_short_reads_of_the_body_are_read_again() {
    let s = PendingPush::new();
    let (base, server) = serve(vec![(201, String::new())]);
    let client = Client::new(config(&base));
    let body = Jittery(std::io::Cursor::new(s.data.clone()), false);
    client
        .push_to_library(
            &s.contract,
            &digime_testkit::fixtures::token("a", 4_000_000_000, "r", 4_000_000_000),
            &FileDescriptor::new("text/plain"),
            body,
        )
        .unwrap();
    let got = server.join().unwrap();
    assert_eq!(got[0].body, s.data);

    // The same through a transformed (postbox) upload.
    let (base, server) = serve(vec![s.responses[2].clone()]);
    let client = Client::new(config(&base));
    let auth = PostboxAuth::TokenJwt {
        contract: s.contract.clone(),
        token: digime_testkit::fixtures::token("a", 4_000_000_000, "r", 4_000_000_000),
    };
    let body = Jittery(std::io::Cursor::new(s.data.clone()), false);
    let pushed = client
        .legacy()
        .push_to_postbox(&s.postbox, auth, "f.bin", &FileDescriptor::new("a/b"), body)
        .unwrap();
    assert_eq!(pushed.value.status, PostboxStatus::Delivered);
    let got = server.join().unwrap();
    assert_eq!(got[0].open_push(&s.postbox_key), s.data);
}

#[test]
fn a_tls_peer_that_speaks_garbage_is_a_transport_error() {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("https://{}/v1.7/", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let mut stream = digime_testkit::scripted::accept_within(&listener).unwrap();
        let mut hello = [0u8; 64];
        let _ = stream.read(&mut hello);
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n\r\nnot tls at all");
    });
    let client = Client::new(config(&base));
    let err = client
        .contract_details(&digime_testkit::fixtures::contract("c"))
        .unwrap_err();
    assert!(
        matches!(&err, digime_protocol::Error::Transport(t) if t.kind == digime_protocol::TransportErrorKind::Other),
        "{err:?}"
    );
    server.join().unwrap();
}
