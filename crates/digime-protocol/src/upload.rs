//! The caller's upload, as a request sends it.
//!
//! A push never holds the caller's file: its request carries [`Body::Upload`] with an
//! [`Upload`], and the driver streams the caller's reader through a fresh
//! [`UploadEncoder`] per send. Most uploads go out as they are (a library push); some
//! are transformed on the way (a postbox push encrypts and frames the bytes).
//! Either way the driver does the same thing, once:
//!
//! ```text
//! let n = reader.seek(End(0))?;                 // the source's length
//! headers["content-length"] = upload.body_len(n);
//! reader.seek(Start(0))?;                       // every attempt starts from byte 0
//! let mut encoder = upload.encoder()?;          // fresh per attempt
//! for chunk in reader { out.clear(); encoder.encode(chunk, &mut out)?; send(&out) }
//! out.clear(); encoder.finish(&mut out)?; send(&out)
//! ```
//!
//! [`UploadPump`] is that loop's bookkeeping, sans IO, so that every driver applies the
//! same rules: the body is exactly [`Upload::body_len`] bytes, the reader is read up to
//! the length its seek reported, and a reader that ends early, or that still has bytes
//! after that length (one read more checks it), fails the send rather than sending a
//! truncated file as a success. With [`UploadPump::is_identity`] a
//! driver sends the reader's own bytes without a copy.
//!
//! [`Body::Upload`]: crate::wire::Body::Upload

use crate::error::Error;
use std::fmt;
use std::sync::Arc;

/// A transformation of the caller's bytes into a request body, for
/// [`Upload::transformed`]. Implement it for a body that must be built from the
/// caller's bytes as they stream (an envelope, a framing).
pub trait UploadTransform: Send + Sync + 'static {
    /// The body's length for `source_len` bytes of the caller's reader.
    fn body_len(&self, source_len: u64) -> u64;
    /// A fresh encoder of the whole body, from its first byte.
    fn encoder(&self) -> Result<Box<dyn TransformEncoder>, Error>;
    /// A short description for `Debug` (never key material).
    fn describe(&self) -> String {
        "transformed".into()
    }
}

/// One pass of an [`UploadTransform`] over the caller's bytes.
pub trait TransformEncoder: Send {
    /// Appends to `out` the body bytes that `chunk`, the next bytes of the caller's
    /// reader, completes.
    fn encode(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), Error>;
    /// The reader is exhausted: appends the rest of the body to `out`.
    fn finish(self: Box<Self>, out: &mut Vec<u8>) -> Result<(), Error>;
}

/// How a request sends the caller's upload: as it is, or transformed. Cheap to clone;
/// two uploads are equal when they are the same upload.
#[derive(Clone, Default)]
pub struct Upload {
    transform: Option<Arc<dyn UploadTransform>>,
}

impl Upload {
    /// The caller's bytes, unchanged.
    pub fn plain() -> Self {
        Upload::default()
    }

    /// The caller's bytes through `transform`.
    pub fn transformed(transform: impl UploadTransform) -> Self {
        Upload {
            transform: Some(Arc::new(transform)),
        }
    }

    /// Whether the body is the caller's bytes unchanged.
    pub fn is_plain(&self) -> bool {
        self.transform.is_none()
    }

    /// The body's length for `source_len` bytes of the caller's reader: the
    /// `Content-Length` to send.
    pub fn body_len(&self, source_len: u64) -> u64 {
        match &self.transform {
            None => source_len,
            Some(t) => t.body_len(source_len),
        }
    }

    /// The bookkeeping of one send from a reader of `source_len` bytes.
    pub fn pump(&self, source_len: u64) -> Result<UploadPump, Error> {
        Ok(UploadPump {
            encoder: Some(self.encoder()?),
            content_length: self.body_len(source_len),
            left: source_len,
            source_len,
            emitted: 0,
            probed: false,
        })
    }

    /// A fresh encoder of the whole body, for one send.
    pub fn encoder(&self) -> Result<UploadEncoder, Error> {
        Ok(UploadEncoder {
            inner: match &self.transform {
                None => None,
                Some(t) => Some(t.encoder()?),
            },
        })
    }
}

impl PartialEq for Upload {
    fn eq(&self, other: &Self) -> bool {
        match (&self.transform, &other.transform) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for Upload {}

impl fmt::Debug for Upload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.transform {
            None => f.write_str("Upload(plain)"),
            Some(t) => write!(f, "Upload({})", t.describe()),
        }
    }
}

/// Turns the caller's bytes into the body of one send; see the module docs.
pub struct UploadEncoder {
    inner: Option<Box<dyn TransformEncoder>>,
}

impl UploadEncoder {
    /// Whether the body is the caller's bytes unchanged (the driver may send them
    /// without calling [`UploadEncoder::encode`]).
    pub fn is_identity(&self) -> bool {
        self.inner.is_none()
    }

    /// Appends to `out` the body bytes that `chunk` (the next bytes of the caller's
    /// reader) completes.
    pub fn encode(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        match &mut self.inner {
            None => {
                out.extend_from_slice(chunk);
                Ok(())
            }
            Some(e) => e.encode(chunk, out),
        }
    }

    /// The reader is exhausted: appends the rest of the body to `out`.
    pub fn finish(self, out: &mut Vec<u8>) -> Result<(), Error> {
        match self.inner {
            None => Ok(()),
            Some(e) => e.finish(out),
        }
    }
}

impl fmt::Debug for UploadEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UploadEncoder")
            .field("identity", &self.is_identity())
            .finish_non_exhaustive()
    }
}

/// One send of an [`Upload`], sans IO (see the module docs): the driver asks how many
/// bytes of the caller's reader to read next ([`UploadPump::want`]), reads at most that
/// many, and hands them over ([`UploadPump::plain`] or [`UploadPump::feed`]), until
/// [`UploadPump::is_done`].
#[derive(Debug)]
pub struct UploadPump {
    /// `None` once the body is complete.
    encoder: Option<UploadEncoder>,
    content_length: u64,
    /// Bytes of the caller's reader still to read, of `source_len`.
    left: u64,
    source_len: u64,
    /// Body bytes produced so far; never more than `content_length`, and exactly it
    /// once the body is complete.
    emitted: u64,
    /// Whether the reader was read once more after its length, to see that it ended.
    probed: bool,
}

impl UploadPump {
    /// The `Content-Length` of the body.
    pub fn content_length(&self) -> u64 {
        self.content_length
    }

    /// Whether the body is the reader's bytes unchanged: the driver may send what it
    /// reads as it is, reporting each read with [`UploadPump::plain`].
    pub fn is_identity(&self) -> bool {
        self.encoder.as_ref().is_none_or(UploadEncoder::is_identity)
    }

    /// How many bytes to read next from the caller's reader, at most `max` (`max` is
    /// at least 1). Once the reader has given all its bytes this is 1, for the read that
    /// must find its end; then 0 ([`UploadPump::feed`] an empty chunk to finish a
    /// transformed body).
    pub fn want(&self, max: usize) -> usize {
        match self.left {
            0 if self.probed => 0,
            0 => 1,
            left => usize::try_from(left).map_or(max, |left| left.min(max)),
        }
    }

    /// Whether the reader has given all its bytes and the read that must find its end
    /// is due. A driver whose HTTP library stops reading the body at its
    /// `Content-Length` makes that read before handing out the last bytes.
    pub fn end_check_due(&self) -> bool {
        self.left == 0 && !self.probed
    }

    /// Whether the whole body has been produced.
    pub fn is_done(&self) -> bool {
        self.encoder.is_none() || (self.left == 0 && self.probed && self.is_identity())
    }

    /// Reports `n` bytes read, after asking for [`UploadPump::want`] bytes, that go
    /// out as they are. A read of 0 bytes while bytes are still owed is an error.
    pub fn plain(&mut self, n: usize) -> Result<(), Error> {
        self.take(n)?;
        self.emit(n as u64)
    }

    /// Reports the bytes just read (empty once [`UploadPump::want`] is 0, or when the
    /// reader ended) and appends to `out` the body bytes they make; the last call
    /// appends the end of the body. A body that would not be exactly
    /// [`UploadPump::content_length`] bytes long is an error (a transform that breaks
    /// its own length).
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        self.take(chunk.len())?;
        let before = out.len();
        let result = match self.encoder.as_mut() {
            None => Ok(()),
            Some(_) if chunk.is_empty() => self.encoder.take().map_or(Ok(()), |e| e.finish(out)),
            Some(encoder) => encoder.encode(chunk, out),
        };
        result?;
        self.emit((out.len() - before) as u64)?;
        if self.encoder.is_none() && self.emitted != self.content_length {
            return Err(body_source(format!(
                "the upload's transform made {} bytes of a body of {}",
                self.emitted, self.content_length
            )));
        }
        Ok(())
    }

    fn emit(&mut self, n: u64) -> Result<(), Error> {
        self.emitted += n;
        if self.emitted > self.content_length {
            return Err(body_source(format!(
                "the upload's transform made more than the {} bytes of its length",
                self.content_length
            )));
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<(), Error> {
        if self.left == 0 {
            // The read after the last byte: it must find the end.
            let first = !std::mem::replace(&mut self.probed, true);
            return match n {
                0 => Ok(()),
                _ if first => Err(body_source(format!(
                    "the body is longer than the {} bytes its seek reported",
                    self.source_len
                ))),
                _ => Err(Error::Misuse(
                    "more bytes read than the pump asked for".into(),
                )),
            };
        }
        if n == 0 {
            return Err(body_source(format!(
                "the body ended {} bytes short of the length its seek reported",
                self.left
            )));
        }
        if n as u64 > self.left {
            return Err(Error::Misuse(
                "more bytes read than the pump asked for".into(),
            ));
        }
        self.left -= n as u64;
        Ok(())
    }
}

fn body_source(message: String) -> Error {
    Error::Transport(crate::error::TransportError::body_source(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Framed;
    struct FramedEncoder {
        started: bool,
    }

    impl FramedEncoder {
        fn start(&mut self, out: &mut Vec<u8>) {
            if !std::mem::replace(&mut self.started, true) {
                out.push(b'[');
            }
        }
    }

    impl UploadTransform for Framed {
        fn body_len(&self, n: u64) -> u64 {
            n + 2
        }
        fn encoder(&self) -> Result<Box<dyn TransformEncoder>, Error> {
            Ok(Box::new(FramedEncoder { started: false }))
        }
    }

    impl TransformEncoder for FramedEncoder {
        fn encode(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
            self.start(out);
            out.extend(chunk.iter().map(u8::to_ascii_uppercase));
            Ok(())
        }
        fn finish(mut self: Box<Self>, out: &mut Vec<u8>) -> Result<(), Error> {
            self.start(out);
            out.push(b']');
            Ok(())
        }
    }

    fn run(upload: &Upload, chunks: &[&[u8]]) -> Vec<u8> {
        let mut encoder = upload.encoder().unwrap();
        let mut out = Vec::new();
        for c in chunks {
            encoder.encode(c, &mut out).unwrap();
        }
        encoder.finish(&mut out).unwrap();
        out
    }

    #[test]
    fn plain_is_identity_and_transformed_goes_through_the_transform() {
        let plain = Upload::plain();
        assert!(plain.is_plain() && plain.encoder().unwrap().is_identity());
        assert_eq!(plain.body_len(5), 5);
        assert_eq!(run(&plain, &[b"ab", b"c"]), b"abc");

        let framed = Upload::transformed(Framed);
        assert!(!framed.is_plain() && !framed.encoder().unwrap().is_identity());
        assert_eq!(framed.body_len(3), 5);
        assert_eq!(run(&framed, &[b"ab", b"c"]), b"[ABC]");
        assert_eq!(format!("{framed:?}"), "Upload(transformed)");
    }

    /// Drives a pump as a driver does, from `source` read in pieces of `piece`.
    fn pump(upload: &Upload, source: &[u8], claimed: u64, piece: usize) -> Result<Vec<u8>, Error> {
        let mut pump = upload.pump(claimed)?;
        let (mut body, mut at) = (Vec::new(), 0);
        while !pump.is_done() {
            let n = pump.want(piece).min(source.len() - at);
            let chunk = &source[at..at + n];
            at += n;
            if pump.is_identity() {
                pump.plain(n)?;
                body.extend_from_slice(chunk);
            } else {
                pump.feed(chunk, &mut body)?;
            }
        }
        assert_eq!(body.len() as u64, pump.content_length());
        Ok(body)
    }

    #[test]
    fn a_pump_reads_exactly_the_seek_length_and_refuses_a_short_reader() {
        let data = b"hello world";
        for piece in [1, 3, 64] {
            assert_eq!(pump(&Upload::plain(), data, 11, piece).unwrap(), data);
            let framed = pump(&Upload::transformed(Framed), data, 11, piece).unwrap();
            assert_eq!(framed, b"[HELLO WORLD]");
            for upload in [Upload::plain(), Upload::transformed(Framed)] {
                match pump(&upload, data, 20, piece) {
                    Err(Error::Transport(t)) => {
                        assert_eq!(t.kind, crate::error::TransportErrorKind::BodySource);
                        assert!(t.to_string().contains("9 bytes short"), "{t}");
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
        assert_eq!(
            pump(&Upload::transformed(Framed), b"", 0, 8).unwrap(),
            b"[]"
        );
        assert!(pump(&Upload::plain(), b"", 0, 8).unwrap().is_empty());
        let mut p = Upload::plain().pump(2).unwrap();
        assert!(matches!(p.plain(3), Err(Error::Misuse(_))));
    }

    /// Claims one byte more (or less) than it makes.
    struct Liar(i64);

    impl UploadTransform for Liar {
        fn body_len(&self, n: u64) -> u64 {
            (n as i64 + 2 + self.0) as u64
        }
        fn encoder(&self) -> Result<Box<dyn TransformEncoder>, Error> {
            Ok(Box::new(FramedEncoder { started: false }))
        }
    }

    #[test]
    fn a_transform_that_breaks_its_own_length_fails_the_send() {
        for (lie, what) in [
            (1, "made 13 bytes of a body of 14"),
            (-1, "more than the 12"),
        ] {
            match pump(&Upload::transformed(Liar(lie)), b"hello world", 11, 4) {
                Err(Error::Transport(t)) => assert!(t.to_string().contains(what), "{t}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn equality_is_identity_of_the_upload() {
        let a = Upload::transformed(Framed);
        assert_eq!(a, a.clone());
        assert_ne!(a, Upload::transformed(Framed));
        assert_eq!(Upload::plain(), Upload::plain());
        assert_ne!(a, Upload::plain());
    }
}
