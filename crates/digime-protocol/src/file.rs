//! Downloading one file: the envelope decrypted and the plaintext decompressed as the
//! bytes arrive (docs/protocol.md, "Files"), so that a 1 GiB file passes through
//! in constant memory.
//!
//! ```text
//!  ┌──────────────┐ 2xx + X-Metadata  ┌──────────────────┐ end, padding ok ┌──────┐
//!  │ GET (Authed  ├──────────────────▶│ Receive: chunks → ├────────────────▶│ Done │
//!  │ refresh-401) │                   │ decrypt → inflate │                 └──────┘
//!  └──────┬───────┘                   └───┬──────────┬───┘
//!         │ error                         │ bad data │ connection lost
//!         ▼                               ▼          ▼ (nothing written yet, or a
//!     Done(Err)                       Done(Err)   buffered read: back off, GET again)
//! ```

use crate::config::FileFormat;
use crate::error::Error;
use crate::read::Compression;
use digime_crypto::PrivateKey;
use digime_crypto::envelope::Decryptor;
use std::io::Write;

pub use crate::read::file::{Output, ReadFile};

/// Input is fed to the decompressor in slices of this size.
const INFLATE_SLICE: usize = 16 * 1024;

/// The most plaintext one step of a [`FileDecoder`] appends: a highly compressed
/// file (1 GiB of zeros is 841 bytes of brotli) comes out a step at a time, each one
/// handed to the driver's sink before the next is made.
pub const STEP: usize = 1 << 20;

type BrotliState = brotli_decompressor::BrotliState<
    brotli_decompressor::StandardAlloc,
    brotli_decompressor::StandardAlloc,
    brotli_decompressor::StandardAlloc,
>;

struct Brotli {
    state: BrotliState,
    /// The stream ended.
    done: bool,
    /// The decompressor holds output it had no room for.
    has_output: bool,
    buf: Vec<u8>,
}

enum Inflate {
    Plain,
    Gzip(Box<flate2::write::MultiGzDecoder<Vec<u8>>>),
    Brotli(Box<Brotli>),
}

/// Decrypts and decompresses a downloaded file incrementally, with caller-supplied
/// output buffers, at most [`STEP`] bytes of plaintext per call: when
/// [`FileDecoder::has_pending`] says more is ready without more input, call
/// [`FileDecoder::drain`] (and write its output) until it is not. Output is only
/// complete once [`FileDecoder::finish`] succeeds.
/// The envelope has no MAC: a truncated file, or a last block with bad padding, fails
/// at the end, but a corrupted block elsewhere decrypts to garbage without an error
/// (unless decompression trips on it). `Ok` is not a proof of integrity.
pub struct FileDecoder {
    decryptor: Option<Decryptor>,
    inflate: Inflate,
    compression: &'static str,
    /// Decrypted bytes not decompressed yet, from `pos`.
    plain: Vec<u8>,
    pos: usize,
    failed: bool,
}

impl std::fmt::Debug for FileDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileDecoder")
            .field("compression", &self.compression)
            .finish_non_exhaustive()
    }
}

impl FileDecoder {
    /// A decoder for a file encrypted to `key` in `format`, compressed as `compression`
    /// says (an unknown compression is passed through, as the official SDK does).
    pub fn new(key: &PrivateKey, format: FileFormat, compression: &Compression) -> Self {
        let (inflate, name) = match compression {
            Compression::Gzip => (
                Inflate::Gzip(Box::new(flate2::write::MultiGzDecoder::new(Vec::new()))),
                "gzip",
            ),
            Compression::Brotli => (
                Inflate::Brotli(Box::new(Brotli {
                    state: BrotliState::new(
                        Default::default(),
                        Default::default(),
                        Default::default(),
                    ),
                    done: false,
                    has_output: false,
                    buf: vec![0; 64 * 1024],
                })),
                "brotli",
            ),
            Compression::None | Compression::Unknown(_) => (Inflate::Plain, "none"),
        };
        FileDecoder {
            decryptor: Some(Decryptor::new(key, format)),
            inflate,
            compression: name,
            plain: Vec::new(),
            pos: 0,
            failed: false,
        }
    }

    fn inflate_error(&mut self, e: impl std::fmt::Display) -> Error {
        self.failed = true;
        Error::Decompression {
            compression: self.compression,
            detail: e.to_string(),
        }
    }

    fn check(&self) -> Result<(), Error> {
        if self.failed {
            return Err(Error::InvalidInput(
                "the file decoder already failed".into(),
            ));
        }
        Ok(())
    }

    /// Whether more plaintext is ready without more input ([`FileDecoder::drain`]).
    pub fn has_pending(&self) -> bool {
        !self.failed
            && (self.pos < self.plain.len()
                || matches!(&self.inflate, Inflate::Brotli(b) if b.has_output))
    }

    /// Decompresses what is pending, appending at most [`STEP`] bytes to `out`.
    fn pump(&mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        let start = out.len();
        let result = match &mut self.inflate {
            Inflate::Plain => {
                out.extend_from_slice(&self.plain[self.pos..]);
                self.pos = self.plain.len();
                Ok(())
            }
            Inflate::Gzip(d) => loop {
                if self.pos >= self.plain.len() || out.len() - start >= STEP {
                    break Ok(());
                }
                let end = self.plain.len().min(self.pos + INFLATE_SLICE);
                match d.write(&self.plain[self.pos..end]) {
                    // A stream that takes no more input has ended: what follows is
                    // not gzip.
                    Ok(0) => break Err("data after the end of the gzip stream".to_string()),
                    Ok(n) => self.pos += n,
                    Err(e) => break Err(e.to_string()),
                }
                out.append(d.get_mut());
            },
            Inflate::Brotli(b) => loop {
                let room = STEP.saturating_sub(out.len() - start);
                if room == 0 || (self.pos >= self.plain.len() && !b.has_output) {
                    break Ok(());
                }
                if b.done {
                    break Err("data after the end of the brotli stream".to_string());
                }
                let mut available_in = self.plain.len() - self.pos;
                let mut input_offset = self.pos;
                let mut available_out = room.min(b.buf.len());
                let mut output_offset = 0;
                let mut total_out = 0;
                let result = brotli_decompressor::BrotliDecompressStream(
                    &mut available_in,
                    &mut input_offset,
                    &self.plain,
                    &mut available_out,
                    &mut output_offset,
                    &mut b.buf,
                    &mut total_out,
                    &mut b.state,
                );
                self.pos = input_offset;
                out.extend_from_slice(&b.buf[..output_offset]);
                match result {
                    brotli_decompressor::BrotliResult::NeedsMoreOutput => b.has_output = true,
                    brotli_decompressor::BrotliResult::NeedsMoreInput => b.has_output = false,
                    brotli_decompressor::BrotliResult::ResultSuccess => {
                        b.has_output = false;
                        b.done = true;
                        if self.pos < self.plain.len() {
                            break Err("data after the end of the brotli stream".to_string());
                        }
                    }
                    brotli_decompressor::BrotliResult::ResultFailure => {
                        break Err("corrupt brotli stream".to_string());
                    }
                }
            },
        };
        // Keep the unread input small and at the front.
        if self.pos >= self.plain.len() {
            self.plain.clear();
            self.pos = 0;
        } else if self.pos > 64 * 1024 {
            self.plain.drain(..self.pos);
            self.pos = 0;
        }
        result.map_err(|e| self.inflate_error(e))
    }

    /// Feeds ciphertext; appends to `out` at most [`STEP`] bytes of the plaintext
    /// that is ready (see [`FileDecoder::has_pending`] for the rest).
    pub fn update(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        self.check()?;
        let Some(decryptor) = self.decryptor.as_mut() else {
            return Err(Error::InvalidInput("the file's input already ended".into()));
        };
        if let Err(e) = decryptor.update(input, &mut self.plain) {
            self.failed = true;
            return Err(Error::Decryption(e));
        }
        self.pump(out)
    }

    /// Appends to `out` at most [`STEP`] more bytes of the plaintext that is ready.
    pub fn drain(&mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        self.check()?;
        self.pump(out)
    }

    /// Ends the input: checks the length and padding (and the hash of the older
    /// layout) and appends at most [`STEP`] bytes of what is then ready; drain the rest
    /// before [`FileDecoder::finish`].
    pub fn end_input(&mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        self.check()?;
        if let Some(decryptor) = self.decryptor.take()
            && let Err(e) = decryptor.finish(&mut self.plain)
        {
            self.failed = true;
            return Err(Error::Decryption(e));
        }
        self.pump(out)
    }

    /// Ends the input if [`FileDecoder::end_input`] was not called, decompresses all
    /// that is left into `out` (in one go: a caller that streams drains it first), and
    /// checks that the compressed stream is complete.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        self.end_input(out)?;
        while self.has_pending() {
            self.pump(out)?;
        }
        let bad = |e: &dyn std::fmt::Display| Error::Decompression {
            compression: self.compression,
            detail: e.to_string(),
        };
        match self.inflate {
            Inflate::Plain => {}
            Inflate::Gzip(d) => {
                let rest = d.finish().map_err(|e| bad(&e))?;
                out.extend_from_slice(&rest);
            }
            Inflate::Brotli(b) => {
                if !b.done {
                    return Err(bad(&"the brotli stream is incomplete"));
                }
            }
        }
        Ok(())
    }
}

/// Decodes a whole downloaded file at once.
pub fn decode_file(
    key: &PrivateKey,
    format: FileFormat,
    compression: &Compression,
    file: &[u8],
) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(file.len());
    let mut d = FileDecoder::new(key, format, compression);
    d.update(file, &mut out)?;
    d.finish(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{TransportError, TransportErrorKind};
    use crate::flow::{Flow, Step};
    use crate::read::{FileMetadata, XMetadata};
    use crate::{Config, Contract, KeySet, Sdk, SessionKey, UserAccessToken};
    use digime_crypto::envelope;
    use http::Response;
    use proptest::prelude::*;
    use std::sync::OnceLock;
    use std::time::{Duration, SystemTime};

    fn key() -> &'static PrivateKey {
        static KEY: OnceLock<PrivateKey> = OnceLock::new();
        KEY.get_or_init(|| PrivateKey::generate().unwrap())
    }

    fn compress(kind: &Compression, data: &[u8]) -> Vec<u8> {
        match kind {
            Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Compression::Brotli => {
                let mut out = Vec::new();
                let params = brotli::enc::BrotliEncoderParams {
                    quality: 5,
                    ..Default::default()
                };
                brotli::BrotliCompress(&mut &data[..], &mut out, &params).unwrap();
                out
            }
            _ => data.to_vec(),
        }
    }

    fn decode_in_chunks(file: &[u8], kind: &Compression, chunk: usize) -> Result<Vec<u8>, Error> {
        let mut d = FileDecoder::new(key(), FileFormat::Current, kind);
        let mut out = Vec::new();
        for c in file.chunks(chunk.max(1)) {
            d.update(c, &mut out)?;
        }
        d.finish(&mut out)?;
        Ok(out)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn every_size_and_chunking_round_trips(
            data in proptest::collection::vec(any::<u8>(), 0..20_000),
            chunk in 1usize..5000,
            kind in 0usize..3,
        ) {
            let kind = [Compression::None, Compression::Gzip, Compression::Brotli][kind].clone();
            let file = envelope::encrypt(&key().public_key(), &compress(&kind, &data), envelope::Format::Current).unwrap();
            prop_assert_eq!(decode_in_chunks(&file, &kind, chunk).unwrap(), data);
        }
    }

    #[test]
    fn broken_files_are_typed_errors() {
        let data = b"hello, library".repeat(100);
        for kind in [Compression::Gzip, Compression::Brotli] {
            let compressed = compress(&kind, &data);
            // Cut the compressed stream short, then encrypt it properly: only the
            // decompressor can tell.
            let cut = envelope::encrypt(
                &key().public_key(),
                &compressed[..compressed.len() / 2],
                envelope::Format::Current,
            )
            .unwrap();
            assert!(
                matches!(
                    decode_in_chunks(&cut, &kind, 100),
                    Err(Error::Decompression { .. })
                ),
                "{kind:?}"
            );
            // Not compressed at all.
            let plain =
                envelope::encrypt(&key().public_key(), &data, envelope::Format::Current).unwrap();
            assert!(decode_in_chunks(&plain, &kind, 7).is_err(), "{kind:?}");
        }
        let file =
            envelope::encrypt(&key().public_key(), &data, envelope::Format::Current).unwrap();
        // Truncated by one block, and to less than a header.
        for len in [file.len() - 16, 100, 0] {
            assert!(matches!(
                decode_in_chunks(&file[..len], &Compression::None, 64),
                Err(Error::Decryption(_))
            ));
        }
        // Another key.
        let other = PrivateKey::generate().unwrap();
        let mut d = FileDecoder::new(&other, FileFormat::Current, &Compression::None);
        assert!(matches!(
            d.update(&file, &mut Vec::new()),
            Err(Error::Decryption(_))
        ));
        // An unknown compression passes the data through.
        let unknown = Compression::Unknown("zstd".into());
        assert_eq!(decode_in_chunks(&file, &unknown, 33).unwrap(), data);
        // The legacy layout.
        let legacy =
            envelope::encrypt(&key().public_key(), &data, envelope::Format::Sha512Prefixed)
                .unwrap();
        assert_eq!(
            decode_file(
                key(),
                FileFormat::Sha512Prefixed,
                &Compression::None,
                &legacy
            )
            .unwrap(),
            data
        );
        assert!(
            decode_file(key(), FileFormat::Current, &Compression::None, &legacy).unwrap() != data
        );
    }

    fn file_response(file: &[u8]) -> (Response<Vec<u8>>, Vec<u8>) {
        let x = XMetadata {
            metadata: FileMetadata::Raw(
                serde_json::from_str(r#"{"mimetype":"text/plain","accounts":[]}"#).unwrap(),
            ),
            compression: Compression::None,
        };
        let head = Response::builder()
            .status(200)
            .header("x-metadata", x.encode())
            .header("last-modified", "Tue, 15 Nov 1994 12:45:26 GMT")
            .body(Vec::new())
            .unwrap();
        (head, file.to_vec())
    }

    fn setup(output: Output) -> (Sdk, ReadFile, Vec<u8>, Vec<u8>) {
        let mut config = Config::new("app").unwrap();
        config.retry.base_delay = Duration::from_millis(1);
        let sdk = Sdk::new(config);
        sdk.use_static_server_keys(KeySet::from_keys([]));
        let contract = Contract::new("c", key().clone()).unwrap();
        let token: UserAccessToken = serde_json::from_str(
            r#"{"accessToken":{"value":"a","expiry":1},"refreshToken":{"value":"r","expiry":2}}"#,
        )
        .unwrap();
        let data = b"0123456789abcdef".repeat(1000);
        let file =
            envelope::encrypt(&key().public_key(), &data, envelope::Format::Current).unwrap();
        let flow = sdk
            .read_file(
                &contract,
                &token,
                &SessionKey::new("s").unwrap(),
                "f.txt",
                output,
            )
            .unwrap();
        (sdk, flow, data, file)
    }

    #[test]
    fn a_body_cut_off_is_fetched_again_when_buffered() {
        let (_, mut flow, data, file) = setup(Output::Buffer);
        let now = SystemTime::now();
        let Step::Send(req) = flow.poll(now) else {
            panic!()
        };
        assert!(
            req.extensions()
                .get::<crate::read::StreamResponse>()
                .is_some()
        );
        assert_eq!(req.headers()["accept"], "application/octet-stream");
        let (head, body) = file_response(&file);
        flow.handle_response(head.clone());
        assert!(matches!(flow.poll(now), Step::Receive));
        assert_eq!(
            flow.head().unwrap().last_modified.as_deref(),
            Some("Tue, 15 Nov 1994 12:45:26 GMT")
        );
        let mut out = Vec::new();
        assert!(flow.handle_body(&body[..5000], &mut out));
        assert!(out.is_empty(), "buffered output stays in the flow");
        flow.handle_transport_error(TransportError::new(TransportErrorKind::Reset, "cut"));
        assert!(matches!(flow.poll(now), Step::Sleep(_)));
        let Step::Send(_) = flow.poll(now) else {
            panic!()
        };
        flow.handle_response(head);
        assert!(matches!(flow.poll(now), Step::Receive));
        for c in body.chunks(999) {
            assert!(flow.handle_body(c, &mut out));
        }
        flow.handle_body_end(&mut out);
        let Step::Done(Ok(done)) = flow.poll(now) else {
            panic!()
        };
        assert_eq!(done.value.data, data);
    }

    #[test]
    fn a_body_that_ends_short_is_fetched_again_when_nothing_was_handed_out() {
        // Inside the 272-byte header; on a block boundary of the ciphertext (the last
        // block is then not padded), held back in memory.
        for (output, cut) in [
            (Output::Buffer, 200),
            (Output::Stream, 200),
            (Output::Buffer, 272 + 1600),
        ] {
            let (_, mut flow, data, file) = setup(output);
            let now = SystemTime::now();
            let Step::Send(_) = flow.poll(now) else {
                panic!()
            };
            let (head, body) = file_response(&file);
            flow.handle_response(head.clone());
            assert!(matches!(flow.poll(now), Step::Receive));
            let mut out = Vec::new();
            assert!(flow.handle_body(&body[..cut], &mut out));
            flow.handle_body_end(&mut out);
            assert!(out.is_empty());
            assert!(matches!(flow.poll(now), Step::Sleep(_)), "{output:?}");
            let Step::Send(_) = flow.poll(now) else {
                panic!()
            };
            flow.handle_response(head);
            assert!(matches!(flow.poll(now), Step::Receive));
            assert!(flow.handle_body(&body, &mut out));
            flow.handle_body_end(&mut out);
            let Step::Done(Ok(done)) = flow.poll(now) else {
                panic!()
            };
            let got = if output == Output::Buffer {
                done.value.data
            } else {
                out
            };
            assert_eq!(got, data);
        }
    }

    #[test]
    fn a_streamed_body_that_ends_short_after_output_is_an_error() {
        let (_, mut flow, _, file) = setup(Output::Stream);
        let now = SystemTime::now();
        let Step::Send(_) = flow.poll(now) else {
            panic!()
        };
        let (head, body) = file_response(&file);
        flow.handle_response(head);
        assert!(matches!(flow.poll(now), Step::Receive));
        let mut out = Vec::new();
        // Not a multiple of 16 past the header: the envelope is cut.
        assert!(flow.handle_body(&body[..5003], &mut out));
        assert!(!out.is_empty());
        flow.handle_body_end(&mut out);
        match flow.poll(now) {
            Step::Done(Err(Error::Decryption(digime_crypto::CryptoError::InvalidFileSize {
                len,
            }))) => {
                assert_eq!(len, 5003)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_streamed_body_cut_off_after_output_is_an_error_not_a_retry() {
        let (_, mut flow, _, file) = setup(Output::Stream);
        let now = SystemTime::now();
        let Step::Send(_) = flow.poll(now) else {
            panic!()
        };
        let (head, body) = file_response(&file);
        flow.handle_response(head);
        assert!(matches!(flow.poll(now), Step::Receive));
        let mut out = Vec::new();
        assert!(flow.handle_body(&body[..5000], &mut out));
        assert!(!out.is_empty(), "streamed output goes to the driver");
        flow.handle_transport_error(TransportError::new(TransportErrorKind::Reset, "cut"));
        assert!(matches!(
            flow.poll(now),
            Step::Done(Err(Error::Transport(_)))
        ));
    }

    #[test]
    fn a_sink_failing_on_the_last_write_fails_the_download() {
        let (_, mut flow, _, file) = setup(Output::Stream);
        let now = SystemTime::now();
        let Step::Send(_) = flow.poll(now) else {
            panic!()
        };
        let (head, body) = file_response(&file);
        flow.handle_response(head);
        assert!(matches!(flow.poll(now), Step::Receive));
        let mut out = Vec::new();
        assert!(flow.handle_body(&body, &mut out));
        flow.handle_body_end(&mut out);
        flow.handle_transport_error(TransportError::sink(&std::io::Error::other("disk full")));
        match flow.poll(now) {
            Step::Done(Err(Error::Transport(t))) => assert_eq!(t.kind, TransportErrorKind::Sink),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_download_without_x_metadata_is_refused_before_the_body() {
        let (_, mut flow, _, _) = setup(Output::Buffer);
        let now = SystemTime::now();
        let Step::Send(_) = flow.poll(now) else {
            panic!()
        };
        // Asked again as the policy allows (a proxy may have mangled the answer), then
        // refused, without a body ever being asked for.
        flow.handle_response(Response::builder().status(200).body(Vec::new()).unwrap());
        for _ in 0..2 {
            assert!(matches!(flow.poll(now), Step::Sleep(_)));
            let Step::Send(_) = flow.poll(now) else {
                panic!()
            };
            flow.handle_response(Response::builder().status(200).body(Vec::new()).unwrap());
        }
        assert!(matches!(
            flow.poll(now),
            Step::Done(Err(Error::Decode {
                context: "X-Metadata",
                ..
            }))
        ));
    }

    #[test]
    fn any_401_on_a_download_refreshes() {
        let (_, mut flow, _, _) = setup(Output::Buffer);
        let now = SystemTime::now();
        let Step::Send(_) = flow.poll(now) else {
            panic!()
        };
        flow.handle_response(
            Response::builder()
                .status(401)
                .body(br#"{"error":{"code":"InvalidClient","message":"x"}}"#.to_vec())
                .unwrap(),
        );
        let Step::Send(refresh) = flow.poll(now) else {
            panic!()
        };
        assert!(refresh.uri().path().ends_with("oauth/token"));
    }
}
