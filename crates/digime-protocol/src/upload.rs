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
//! [`UploadEncoder::is_identity`] lets a driver send the reader's own bytes without
//! the copy when the upload is not transformed.
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

#[cfg(test)]
mod tests {
    use super::*;

    struct Framed;
    struct FramedEncoder;

    impl UploadTransform for Framed {
        fn body_len(&self, n: u64) -> u64 {
            n + 2
        }
        fn encoder(&self) -> Result<Box<dyn TransformEncoder>, Error> {
            Ok(Box::new(FramedEncoder))
        }
    }

    impl TransformEncoder for FramedEncoder {
        fn encode(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
            if out.is_empty() {
                out.push(b'[');
            }
            out.extend(chunk.iter().map(u8::to_ascii_uppercase));
            Ok(())
        }
        fn finish(self: Box<Self>, out: &mut Vec<u8>) -> Result<(), Error> {
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

    #[test]
    fn equality_is_identity_of_the_upload() {
        let a = Upload::transformed(Framed);
        assert_eq!(a, a.clone());
        assert_ne!(a, Upload::transformed(Framed));
        assert_eq!(Upload::plain(), Upload::plain());
        assert_ne!(a, Upload::plain());
    }
}
