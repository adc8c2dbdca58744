//! Hostile answers through the async driver: a decompression bomb streams to the
//! sink a bounded step at a time, and a buffered read of it stops at the cap.

use digime_async::Client;
use digime_protocol::file::STEP;
use digime_protocol::{Config, Error, SessionKey, TransportErrorKind};
use digime_testkit::fixtures::{contract, token};
use digime_testkit::scripted::serve_bomb;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Counts what it is given, and the largest write.
#[derive(Default)]
struct Counting {
    total: usize,
    largest: usize,
}

impl tokio::io::AsyncWrite for Counting {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.total += buf.len();
        self.largest = self.largest.max(buf.len());
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn a_brotli_bomb_streams_in_bounded_steps_and_a_buffered_read_stops_at_the_cap() {
    let c = contract("c");
    let base = serve_bomb(&c, 2);
    let mut config = Config::new("app").unwrap().with_base_url(&base).unwrap();
    config.max_buffered_file_bytes = 16 << 20;
    let client = Client::new(config);
    let t = token("a", 4_000_000_000, "r", 4_000_000_000);
    let session = SessionKey::new("s").unwrap();

    let mut sink = Counting::default();
    client
        .read_file_to(&c, &t, &session, "bomb.bin", &mut sink)
        .await
        .unwrap();
    assert_eq!(sink.total, 64 << 20);
    assert!(
        sink.largest <= STEP + 64 * 1024,
        "a write of {} bytes",
        sink.largest
    );

    match client.read_file(&c, &t, &session, "bomb.bin").await {
        Err(Error::Transport(e)) => assert_eq!(e.kind, TransportErrorKind::ResponseTooLarge),
        other => panic!("{:?}", other.map(|f| f.value.data.len())),
    }
}
