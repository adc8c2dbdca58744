//! What the async driver puts on the wire, against the shared scripted server (the
//! same checks as the blocking driver's `tests/wire.rs`).

use digime_async::Client;
use digime_protocol::legacy::{PostboxAuth, PostboxStatus};
use digime_protocol::{Config, FileDescriptor};
use digime_testkit::fixtures::{PendingPush, expired_token};
use digime_testkit::scripted::{Captured, serve};
use std::sync::{Arc, Mutex};

fn config(base: &str) -> Config {
    Config::new("app").unwrap().with_base_url(base).unwrap()
}

async fn join(server: std::thread::JoinHandle<Vec<Captured>>) -> Vec<Captured> {
    tokio::task::spawn_blocking(move || server.join().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_push_refreshes_and_streams_the_file_again_with_a_content_length() {
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
        .await
        .unwrap();
    assert_eq!(pushed.value.status, PostboxStatus::Delivered);
    assert_eq!(
        pushed.refreshed_token.unwrap().refresh_token.value.expose(),
        "r2"
    );
    s.check(&join(server).await, &heard.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_library_push_has_a_content_length_and_is_rewound_after_a_refresh() {
    let s = PendingPush::new();
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
        .await
        .unwrap();
    assert_eq!(
        pushed.refreshed_token.unwrap().access_token.value.expose(),
        "new"
    );
    let got = join(server).await;
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
impl tokio::io::AsyncRead for Lying {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let n = buf
            .remaining()
            .min(1000usize.saturating_sub(self.1 as usize));
        buf.put_slice(&vec![1u8; n]);
        self.1 += n as u64;
        std::task::Poll::Ready(Ok(()))
    }
}
impl tokio::io::AsyncSeek for Lying {
    fn start_seek(
        mut self: std::pin::Pin<&mut Self>,
        to: std::io::SeekFrom,
    ) -> std::io::Result<()> {
        self.1 = if to == std::io::SeekFrom::End(0) {
            u64::MAX
        } else {
            0
        };
        Ok(())
    }
    fn poll_complete(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<u64>> {
        let at = match std::mem::take(&mut self.1) {
            u64::MAX => self.0,
            at => at,
        };
        std::task::Poll::Ready(Ok(at))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_shorter_or_longer_than_its_length_is_a_body_source_error() {
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
            .await
            .unwrap_err();
        assert!(
            matches!(&err, digime_protocol::Error::Transport(t) if t.kind == digime_protocol::TransportErrorKind::BodySource),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn a_tls_peer_that_speaks_garbage_is_a_transport_error() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("https://{}/v1.7/", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let accept = listener.accept();
        let (mut stream, _) = tokio::time::timeout(digime_testkit::scripted::DEADLINE, accept)
            .await
            .expect("a connection in time")
            .unwrap();
        let mut hello = [0u8; 64];
        let _ = stream.read(&mut hello).await;
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\n\r\nnot tls at all")
            .await;
    });
    let client = Client::new(config(&base));
    let err = client
        .contract_details(&digime_testkit::fixtures::contract("c"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, digime_protocol::Error::Transport(t) if t.kind == digime_protocol::TransportErrorKind::Other),
        "{err:?}"
    );
    server.await.unwrap();
}
