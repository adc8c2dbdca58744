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

/// Input is decompressed in slices of this size, so that one network chunk of highly
/// compressed data expands by a bounded amount before the driver writes it out.
const INFLATE_SLICE: usize = 16 * 1024;

enum Inflate {
    Plain,
    Gzip(Box<flate2::write::MultiGzDecoder<Vec<u8>>>),
    Brotli(Box<brotli_decompressor::DecompressorWriter<Vec<u8>>>),
}

/// Decrypts and decompresses a downloaded file incrementally, with caller-supplied
/// output buffers. Output is only complete once [`FileDecoder::finish`] succeeds.
/// The envelope has no MAC: a truncated file, or a last block with bad padding, fails
/// at the end, but a corrupted block elsewhere decrypts to garbage without an error
/// (unless decompression trips on it). `Ok` is not a proof of integrity.
pub struct FileDecoder {
    decryptor: Decryptor,
    inflate: Inflate,
    compression: &'static str,
    plain: Vec<u8>,
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
                Inflate::Brotli(Box::new(brotli_decompressor::DecompressorWriter::new(
                    Vec::new(),
                    64 * 1024,
                ))),
                "brotli",
            ),
            Compression::None | Compression::Unknown(_) => (Inflate::Plain, "none"),
        };
        FileDecoder {
            decryptor: Decryptor::new(key, format),
            inflate,
            compression: name,
            plain: Vec::new(),
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

    fn inflate(&mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        let plain = std::mem::take(&mut self.plain);
        let result = match &mut self.inflate {
            Inflate::Plain => {
                out.extend_from_slice(&plain);
                Ok(())
            }
            Inflate::Gzip(d) => plain.chunks(INFLATE_SLICE).try_for_each(|s| {
                d.write_all(s)?;
                out.append(d.get_mut());
                Ok::<_, std::io::Error>(())
            }),
            Inflate::Brotli(d) => plain.chunks(INFLATE_SLICE).try_for_each(|s| {
                d.write_all(s)?;
                out.append(d.get_mut());
                Ok::<_, std::io::Error>(())
            }),
        };
        self.plain = plain;
        self.plain.clear();
        result.map_err(|e| self.inflate_error(e))
    }

    /// Feeds ciphertext; appends whatever plaintext is ready to `out`.
    pub fn update(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        if self.failed {
            return Err(Error::InvalidInput(
                "the file decoder already failed".into(),
            ));
        }
        if let Err(e) = self.decryptor.update(input, &mut self.plain) {
            self.failed = true;
            return Err(Error::Decryption(e));
        }
        self.inflate(out)
    }

    /// Ends the input: checks the length and padding (and the hash of the older
    /// layout), and that the compressed stream is complete; appends the rest to `out`.
    pub fn finish(self, out: &mut Vec<u8>) -> Result<(), Error> {
        if self.failed {
            return Err(Error::InvalidInput(
                "the file decoder already failed".into(),
            ));
        }
        let mut tail = Vec::new();
        let FileDecoder {
            decryptor,
            inflate,
            compression,
            ..
        } = self;
        decryptor.finish(&mut tail).map_err(Error::Decryption)?;
        let bad = |e: &dyn std::fmt::Display| Error::Decompression {
            compression,
            detail: e.to_string(),
        };
        match inflate {
            Inflate::Plain => out.extend_from_slice(&tail),
            Inflate::Gzip(mut d) => {
                for s in tail.chunks(INFLATE_SLICE) {
                    d.write_all(s).map_err(|e| bad(&e))?;
                    out.append(d.get_mut());
                }
                let rest = d.finish().map_err(|e| bad(&e))?;
                out.extend_from_slice(&rest);
            }
            Inflate::Brotli(mut d) => {
                for s in tail.chunks(INFLATE_SLICE) {
                    d.write_all(s).map_err(|e| bad(&e))?;
                    out.append(d.get_mut());
                }
                d.close().map_err(|e| bad(&e))?;
                match d.into_inner() {
                    Ok(rest) => out.extend_from_slice(&rest),
                    Err(_) => return Err(bad(&"the brotli stream is incomplete")),
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
        flow.handle_response(Response::builder().status(200).body(Vec::new()).unwrap());
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
