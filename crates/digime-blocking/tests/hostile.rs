//! Hostile answers through the blocking driver: a decompression bomb streams to the
//! sink a bounded step at a time, and a buffered read of it stops at the cap.

use digime_blocking::Client;
use digime_protocol::file::STEP;
use digime_protocol::{Config, Error, SessionKey, TransportErrorKind};
use digime_testkit::fixtures::{contract, token};
use digime_testkit::scripted::{accept_within, read_request};
use std::io::{BufReader, Write};
use std::net::TcpListener;

/// Serves `count` answers of the file download: the envelope of a 64 MiB brotli bomb.
fn serve_bomb(contract: &digime_protocol::Contract, count: usize) -> String {
    let bomb = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/generated/bomb-64mib.br"
    ))
    .unwrap();
    let file = digime_crypto::envelope::encrypt(
        &contract.key().public_key(),
        &bomb,
        digime_crypto::envelope::Format::Current,
    )
    .unwrap();
    let meta = serde_json::json!({"metadata": {"mimetype": "application/octet-stream",
        "accounts": []}, "compression": "brotli"});
    let meta = digime_crypto::b64url_encode(meta.to_string().as_bytes());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/v1.7/", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for _ in 0..count {
            let mut stream = accept_within(&listener).unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            read_request(&mut reader).unwrap();
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\nx-metadata: {meta}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                file.len()
            );
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(&file).unwrap();
        }
    });
    base
}

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
