//! Hostile answers through the blocking driver: a decompression bomb streams to the
//! sink a bounded step at a time, and a buffered read of it stops at the cap; endless
//! heads and bodies stop at a cap, trickled ones at a deadline.

use digime_blocking::Client;
use digime_protocol::file::STEP;
use digime_protocol::{Config, Error, RetryPolicy, SessionKey, TransportErrorKind};
use digime_testkit::fixtures::{contract, token};
use digime_testkit::scripted::{DEADLINE, Hostile, HostileServer, serve_bomb, serve_hostile};
use std::io::Write;
use std::time::{Duration, Instant};

/// Counts what it is given, and the largest write.
#[derive(Default)]
struct Counting {
    total: usize,
    largest: usize,
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.total += buf.len();
        self.largest = self.largest.max(buf.len());
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_brotli_bomb_streams_in_bounded_steps_and_a_buffered_read_stops_at_the_cap() {
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
        .unwrap();
    assert_eq!(sink.total, 64 << 20);
    assert!(
        sink.largest <= STEP + 64 * 1024,
        "a write of {} bytes",
        sink.largest
    );

    match client.read_file(&c, &t, &session, "bomb.bin") {
        Err(Error::Transport(e)) => assert_eq!(e.kind, TransportErrorKind::ResponseTooLarge),
        other => panic!("{:?}", other.map(|f| f.value.data.len())),
    }
}

/// A client on `server` with an idle timeout of 300 ms and no retries: each hostile
/// answer is seen once.
fn hostile_client(server: &HostileServer) -> Client {
    let config = Config::new("app")
        .unwrap()
        .with_base_url(&server.base)
        .unwrap();
    Client::new(config.with_retry(RetryPolicy::never())).with_idle_timeout(IDLE)
}

const IDLE: Duration = Duration::from_millis(300);

/// Far more than any cap, far less than what an unbounded client would take.
const TAKEN_AT_MOST: u64 = 16 << 20;

#[test]
fn endless_or_huge_headers_and_an_endless_small_answer_stop_at_a_cap() {
    let c = contract("c");
    let t = token("a", 4_000_000_000, "r", 4_000_000_000);
    for kind in [
        Hostile::EndlessHeaders,
        Hostile::HugeHeader,
        Hostile::EndlessChunked,
    ] {
        let server = serve_hostile(kind);
        let client = hostile_client(&server);
        match client.read_accounts(&c, &t) {
            Err(Error::Transport(e)) => {
                assert_eq!(
                    e.kind,
                    TransportErrorKind::ResponseTooLarge,
                    "{kind:?}: {e}"
                )
            }
            other => panic!("{kind:?}: {other:?}"),
        }
        assert!(
            server.written() < TAKEN_AT_MOST,
            "{kind:?}: {}",
            server.written()
        );
    }
}

#[test]
fn a_trickled_head_small_answer_or_download_times_out() {
    let c = contract("c");
    let t = token("a", 4_000_000_000, "r", 4_000_000_000);
    let session = SessionKey::new("s").unwrap();
    // A byte every 100 ms never trips the 300 ms idle timeout: the deadlines do.
    let every = Duration::from_millis(100);
    for kind in [Hostile::TrickleHead(every), Hostile::TrickleBody(every)] {
        let server = serve_hostile(kind);
        let client = hostile_client(&server);
        let started = Instant::now();
        match client.read_accounts(&c, &t) {
            Err(Error::Transport(e)) => assert_eq!(e.kind, TransportErrorKind::Timeout, "{e}"),
            other => panic!("{kind:?}: {other:?}"),
        }
        // Bounded: without the deadlines, the call would last as long as the server.
        assert!(
            started.elapsed() < DEADLINE / 2,
            "{kind:?}: {:?}",
            started.elapsed()
        );
    }
    let server = serve_hostile(Hostile::TrickleBody(every));
    let client = hostile_client(&server);
    let mut sink = Counting::default();
    match client.read_file_to(&c, &t, &session, "f.json", &mut sink) {
        Err(Error::Transport(e)) => {
            assert_eq!(e.kind, TransportErrorKind::Timeout, "{e}");
            assert!(e.message.contains("bytes a second"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}
