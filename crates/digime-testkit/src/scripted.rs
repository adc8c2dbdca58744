//! A one-request-per-connection HTTP/1.1 server that answers a script of responses in
//! order and returns what it received.

use digime_crypto::{PrivateKey, cbc, jws};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One request as the scripted server received it.
#[derive(Debug, Clone)]
pub struct Captured {
    /// The request line and the header lines, as sent (CRLF kept).
    pub head: String,
    /// The body, de-chunked if it was chunked.
    pub body: Vec<u8>,
}

impl Captured {
    /// The value of a header (case-insensitive name), trimmed.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }

    /// The claims of the bearer JWT (not verified).
    pub fn claims(&self) -> serde_json::Value {
        let auth = self
            .header("authorization")
            .expect("an authorization header");
        let jwt = auth.strip_prefix("Bearer ").expect("a bearer token");
        let payload = jws::Compact::parse(jwt)
            .and_then(|c| c.payload())
            .expect("a compact JWS");
        serde_json::from_slice(&payload).expect("JSON claims")
    }

    /// Decrypts a postbox push as a server would: the key from the JWT's
    /// `symmetrical_key` (RSA-OAEP under `postbox_key`), the IV from its `iv`, the
    /// ciphertext from the single part of the multipart body.
    pub fn open_push(&self, postbox_key: &PrivateKey) -> Vec<u8> {
        let c = self.claims();
        let std_b64 = |s: &str| {
            let url: String = s
                .trim_end_matches('=')
                .chars()
                .map(|c| match c {
                    '+' => '-',
                    '/' => '_',
                    c => c,
                })
                .collect();
            digime_crypto::b64url_decode(&url).expect("base64")
        };
        let key = postbox_key
            .decrypt_oaep_sha1(&std_b64(c["symmetrical_key"].as_str().expect("a key")))
            .expect("the postbox key opens the file key");
        let iv_hex = c["iv"].as_str().expect("an iv");
        let iv: Vec<u8> = (0..16)
            .map(|i| u8::from_str_radix(&iv_hex[2 * i..2 * i + 2], 16).expect("hex"))
            .collect();
        let ct = self.header("content-type").expect("a content type");
        let boundary = ct
            .strip_prefix("multipart/form-data; boundary=")
            .expect("multipart");
        let close = format!("\r\n--{boundary}--\r\n");
        assert!(
            self.body
                .starts_with(format!("--{boundary}\r\n").as_bytes())
        );
        assert!(self.body.ends_with(close.as_bytes()));
        let start = self
            .body
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("part headers")
            + 4;
        let c_file = &self.body[start..self.body.len() - close.len()];
        cbc::decrypt(
            &key[..].try_into().expect("a 32-byte key"),
            &iv[..].try_into().expect("a 16-byte iv"),
            c_file,
        )
        .expect("the file decrypts")
    }
}

/// Reads one request (head and body, sized or chunked) from `reader`; `None` when the
/// peer closed the connection before a request.
pub fn read_request(reader: &mut impl BufRead) -> std::io::Result<Option<Captured>> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let mut c = Captured {
        head,
        body: Vec::new(),
    };
    if let Some(len) = c.header("content-length") {
        let len: usize = len.parse().map_err(std::io::Error::other)?;
        c.body.resize(len, 0);
        reader.read_exact(&mut c.body)?;
    } else if c.header("transfer-encoding").as_deref() == Some("chunked") {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim(), 16).map_err(std::io::Error::other)?;
            let mut chunk = vec![0u8; n + 2];
            reader.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            c.body.extend_from_slice(&chunk[..n]);
        }
    }
    Ok(Some(c))
}

/// How long the scripted server waits for a connection or a byte before it gives up:
/// a client that regresses fails its test instead of hanging it.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Accepts one connection within [`DEADLINE`], with reads bounded by it too.
pub fn accept_within(listener: &TcpListener) -> std::io::Result<TcpStream> {
    listener.set_nonblocking(true)?;
    let start = Instant::now();
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                stream.set_read_timeout(Some(DEADLINE))?;
                return Ok(stream);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && start.elapsed() < DEADLINE => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Serves `responses` (status, JSON body) in order, one connection each, on
/// `127.0.0.1:0`. Returns the API base (`http://ADDR/v1.7/`) and a handle that yields
/// the requests received once the script is done.
pub fn serve(responses: Vec<(u16, String)>) -> (String, JoinHandle<Vec<Captured>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}/v1.7/", listener.local_addr().expect("addr"));
    let handle = std::thread::spawn(move || {
        let mut got = Vec::new();
        for (status, answer) in responses {
            let mut stream = accept_within(&listener).expect("a connection in time");
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let c = read_request(&mut reader)
                .expect("a readable request")
                .expect("a request");
            write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            )
            .expect("answer");
            got.push(c);
        }
        got
    });
    (base, handle)
}

/// Serves `count` answers of a file download, one connection each, on `127.0.0.1:0`:
/// the envelope (for `contract`) of a 64 MiB brotli bomb (`fixtures/generated`, 54
/// bytes that inflate to 64 MiB of zeros), whole. Returns the API base.
pub fn serve_bomb(contract: &digime_protocol::Contract, count: usize) -> String {
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

/// What [`serve_hostile`] answers every request with. Each answer's head says `200`
/// and carries a file download's `x-metadata`, so the same server stands for a JSON
/// call and a download.
#[derive(Debug, Clone, Copy)]
pub enum Hostile {
    /// Header lines without end.
    EndlessHeaders,
    /// One header whose value never ends.
    HugeHeader,
    /// A chunked body without end.
    EndlessChunked,
    /// The head a byte at a time, one every this long.
    TrickleHead(Duration),
    /// A whole head (no length), then the body a byte at a time, one every this long.
    TrickleBody(Duration),
}

/// A server of [`Hostile`] answers; see [`serve_hostile`].
#[derive(Debug)]
pub struct HostileServer {
    /// The API base (`http://ADDR/v1.7/`).
    pub base: String,
    written: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl HostileServer {
    /// Bytes the server managed to write, over all its connections: how much the
    /// client took before it gave up.
    pub fn written(&self) -> u64 {
        self.written.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Serves `kind` to every connection on `127.0.0.1:0`, each on a thread of its own
/// that writes until the client goes away (or [`DEADLINE`] passes: a client that
/// never gives up fails its test instead of hanging it).
pub fn serve_hostile(kind: Hostile) -> HostileServer {
    use std::sync::atomic::{AtomicU64, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}/v1.7/", listener.local_addr().expect("addr"));
    let written = std::sync::Arc::new(AtomicU64::new(0));
    let count = written.clone();
    let meta = serde_json::json!({"metadata": {"mimetype": "application/json", "accounts": []}});
    let meta = digime_crypto::b64url_encode(meta.to_string().as_bytes());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let (count, meta) = (count.clone(), meta.clone());
            std::thread::spawn(move || {
                let start = Instant::now();
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                if !matches!(read_request(&mut reader), Ok(Some(_))) {
                    return;
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-metadata: {meta}\r\n"
                );
                let mut send = |bytes: &[u8]| {
                    let ok = start.elapsed() < DEADLINE && stream.write_all(bytes).is_ok();
                    if ok {
                        count.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    }
                    ok
                };
                let line = [b'a'; 1024];
                match kind {
                    Hostile::EndlessHeaders => {
                        if send(head.as_bytes()) {
                            for i in 0.. {
                                if !send(format!("x-h{i}: {}\r\n", "v".repeat(100)).as_bytes()) {
                                    break;
                                }
                            }
                        }
                    }
                    Hostile::HugeHeader => {
                        if send(head.as_bytes()) && send(b"x-huge: ") {
                            while send(&line) {}
                        }
                    }
                    Hostile::EndlessChunked => {
                        if send(head.as_bytes()) && send(b"transfer-encoding: chunked\r\n\r\n") {
                            let mut chunk = b"400\r\n".to_vec();
                            chunk.extend_from_slice(&[b' '; 1024]);
                            chunk.extend_from_slice(b"\r\n");
                            while send(&chunk) {}
                        }
                    }
                    Hostile::TrickleHead(every) => {
                        for b in head.bytes().chain(std::iter::repeat(b'x')) {
                            if !send(&[b]) {
                                break;
                            }
                            std::thread::sleep(every);
                        }
                    }
                    Hostile::TrickleBody(every) => {
                        if send(format!("{head}connection: close\r\n\r\n[").as_bytes()) {
                            while send(b" ") {
                                std::thread::sleep(every);
                            }
                        }
                    }
                }
            });
        }
    });
    HostileServer { base, written }
}
