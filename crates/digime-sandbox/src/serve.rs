//! Serving a file body: the plaintext is read or generated in 64 KiB chunks, compressed
//! as a stream, encrypted as a stream into the file envelope (RSA-wrapped key and IV,
//! then AES-256-CBC; a fresh key and IV per response) and sent chunk by chunk, on a
//! blocking thread and through a small bounded channel, so any size is served in
//! constant memory. A small file (at most [`SMALL`] bytes of plaintext) is encrypted
//! whole before the answer starts, so that its headers and body leave together.

use crate::demo::Generator;
use crate::state::Compression;
use axum::body::{Body, Bytes};
use digime_crypto::PublicKey;
use digime_crypto::envelope::{Encryptor, Format};
use std::io::{self, Read, Write};
use std::path::PathBuf;
use tokio::sync::mpsc;

/// Size of the chunks read and sent.
const CHUNK: usize = 64 * 1024;
/// Largest plaintext served as one buffered body rather than a stream.
pub(crate) const SMALL: u64 = CHUNK as u64;
/// Length of the envelope header: RSA block and IV.
pub(crate) const HEADER_LEN: u64 = 272;

/// Where the plaintext of a file comes from.
pub(crate) enum Plain {
    /// Small content made in memory (demo files).
    Bytes(Vec<u8>),
    /// A pushed file on disk.
    File(PathBuf),
    /// A synthetic file.
    Generated { seed: u64, size: u64 },
}

impl Plain {
    fn open(self) -> io::Result<Box<dyn Read + Send>> {
        Ok(match self {
            Plain::Bytes(b) => Box::new(io::Cursor::new(b)),
            Plain::File(p) => Box::new(std::fs::File::open(p)?),
            Plain::Generated { seed, size } => Box::new(GenRead(Generator::new(seed, size))),
        })
    }
}

struct GenRead(Generator);

impl Read for GenRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(self.0.fill(buf))
    }
}

/// How a served file is damaged on purpose (control API `settings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Damage {
    None,
    /// The pad byte of the last AES block is flipped (via the block before it, CBC), so
    /// the padding check fails for certain.
    Corrupt,
    /// Only the 272-byte header is sent.
    Truncate,
}

/// The encrypted, optionally compressed, optionally damaged body of a file whose
/// plaintext is `plain_len` bytes long: buffered whole when small, streamed otherwise.
/// An error is only returned for a small file (a stream breaks off instead).
pub(crate) async fn encrypted_body(
    key: PublicKey,
    plain: Plain,
    plain_len: u64,
    compression: Compression,
    damage: Damage,
) -> io::Result<Body> {
    let work = move |mut out: Out| {
        if damage == Damage::Truncate {
            let enc = Encryptor::new(&key, Format::Current).map_err(io::Error::other)?;
            let mut header = Vec::new();
            enc.finish(&mut header).map_err(io::Error::other)?;
            header.truncate(HEADER_LEN as usize);
            out.send(header)?;
            return Ok(out);
        }
        let enc = Encryptor::new(&key, Format::Current).map_err(io::Error::other)?;
        let sink = Sink::new(Some(enc), out, damage == Damage::Corrupt);
        pump(plain, compression, sink)
    };
    if plain_len <= SMALL {
        buffered(work).await
    } else {
        Ok(spawn_pump(work))
    }
}

/// The plaintext body of a file (control API), uncompressed and unencrypted.
pub(crate) fn plain_body(plain: Plain) -> Body {
    spawn_pump(move |out| pump(plain, Compression::None, Sink::new(None, out, false)))
}

type Tx = mpsc::Sender<io::Result<Bytes>>;

/// Where the pieces of a body go.
enum Out {
    /// To the response, as they come.
    Stream(Tx),
    /// Into one buffer, sent when complete.
    Buffer(Vec<u8>),
}

impl Out {
    fn send(&mut self, piece: Vec<u8>) -> io::Result<()> {
        match self {
            Out::Stream(tx) => tx.blocking_send(Ok(Bytes::from(piece))).map_err(|_| gone()),
            Out::Buffer(b) if b.is_empty() => {
                *b = piece;
                Ok(())
            }
            Out::Buffer(b) => {
                b.extend_from_slice(&piece);
                Ok(())
            }
        }
    }
}

type Work = dyn FnOnce(Out) -> io::Result<Out> + Send + 'static;

/// Runs `work` on a blocking thread into one buffer: the whole body.
async fn buffered(work: impl FnOnce(Out) -> io::Result<Out> + Send + 'static) -> io::Result<Body> {
    let out = tokio::task::spawn_blocking(move || work(Out::Buffer(Vec::new())))
        .await
        .map_err(io::Error::other)??;
    match out {
        Out::Buffer(b) => Ok(Body::from(b)),
        Out::Stream(_) => Err(io::Error::other("a buffered body was streamed")),
    }
}

fn spawn_pump(work: impl FnOnce(Out) -> io::Result<Out> + Send + 'static) -> Body {
    let work: Box<Work> = Box::new(work);
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let errors = tx.clone();
        if let Err(e) = work(Out::Stream(tx)) {
            // An error mid-body aborts the response (the client sees a broken transfer).
            let _ = errors.blocking_send(Err(e));
        }
    });
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the client went away")
}

fn pump(plain: Plain, compression: Compression, sink: Sink) -> io::Result<Out> {
    let reader = plain.open()?;
    let sink = match compression {
        Compression::None => {
            let mut sink = sink;
            copy(reader, &mut sink)?;
            sink
        }
        Compression::Gzip => {
            let mut gz = flate2::write::GzEncoder::new(sink, flate2::Compression::fast());
            copy(reader, &mut gz)?;
            gz.finish()?
        }
        Compression::Brotli => {
            let mut br = brotli::CompressorWriter::new(sink, CHUNK, 4, 22);
            copy(reader, &mut br)?;
            // `into_inner` finishes the stream but swallows errors; the sink keeps them.
            br.into_inner()
        }
    };
    sink.finish()
}

fn copy(mut reader: Box<dyn Read + Send>, to: &mut impl Write) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => to.write_all(&buf[..n])?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Encrypts what it is given (or passes it through) and sends it in chunks.
struct Sink {
    enc: Option<Encryptor>,
    encrypt: bool,
    out: Vec<u8>,
    out_to: Out,
    /// Bytes kept back until the end (the last two blocks, when corrupting).
    hold: usize,
    corrupt: bool,
    error: Option<io::Error>,
}

impl Sink {
    fn new(enc: Option<Encryptor>, out_to: Out, corrupt: bool) -> Self {
        Sink {
            encrypt: enc.is_some(),
            enc,
            out: Vec::with_capacity(CHUNK + 1024),
            out_to,
            hold: if corrupt { 32 } else { 0 },
            corrupt,
            error: None,
        }
    }

    fn send_ready(&mut self) -> io::Result<()> {
        if self.out.len() < CHUNK + self.hold {
            return Ok(());
        }
        let keep = self.out.split_off(self.out.len() - self.hold);
        let chunk = std::mem::replace(&mut self.out, keep);
        self.out_to.send(chunk)
    }

    fn finish(mut self) -> io::Result<Out> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if let Some(enc) = self.enc.take() {
            enc.finish(&mut self.out).map_err(io::Error::other)?;
        }
        if self.corrupt && self.out.len() >= 32 {
            // CBC: flipping a bit of the block before the last flips the same bit of the
            // last plaintext block, whose final byte is the pad length (1..=16).
            let at = self.out.len() - 17;
            self.out[at] ^= 0x80;
        }
        if !self.out.is_empty() {
            let rest = std::mem::take(&mut self.out);
            self.out_to.send(rest)?;
        }
        Ok(self.out_to)
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(e) = &self.error {
            return Err(io::Error::new(e.kind(), e.to_string()));
        }
        let step = match (&mut self.enc, self.encrypt) {
            (Some(enc), true) => enc.update(buf, &mut self.out).map_err(io::Error::other),
            (None, false) => {
                self.out.extend_from_slice(buf);
                Ok(())
            }
            _ => Err(io::Error::other("the encryptor is already finished")),
        }
        .and_then(|()| self.send_ready());
        match step {
            Ok(()) => Ok(buf.len()),
            Err(e) => {
                let copy = io::Error::new(e.kind(), e.to_string());
                self.error = Some(e);
                Err(copy)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
