//! The server's decoder of a postbox push (`docs/protocol.md`, "Postbox era"), exactly
//! as the sandbox runs it on `permission-access/postbox/{postboxId}` of every era.
//!
//! A push carries a 32-byte AES key `K` wrapped with RSA-OAEP-SHA1 to the postbox's
//! public key (`symmetrical_key` / `symmetricalKey`, standard base64), a 16-byte IV
//! (`iv`, 32 hex digits), the file descriptor encrypted with AES-256-CBC/PKCS#7 under
//! `K` and the IV (`metadata`, standard base64), and the file encrypted the same way
//! under the same `K` and IV as the bare content of the multipart part named `file`.
//!
//! * [`PostboxDecoder`] unwraps `K`, checks the IV, decrypts and validates the
//!   descriptor at once, then decrypts the file incrementally, so a body of any size
//!   is decoded in constant memory.
//! * [`MultipartFile`] extracts the first part named `file` from a
//!   `multipart/form-data` body fed in arbitrary chunks, also in constant memory.
//! * [`decode`] does both steps of the decoder over a whole payload.
//!
//! Nothing here panics on any input: these functions see request data verbatim (the
//! `postbox_payload` fuzz target exercises them).

use base64::Engine;
use digime_crypto::PrivateKey;
use digime_crypto::cbc::CbcDecryptor;
use serde_json::Value;

/// Length of the AES-256 key.
pub const KEY_LEN: usize = 32;
/// Length of the CBC IV.
pub const IV_LEN: usize = 16;

/// Why a postbox payload does not decode. Each names the field at fault; the server
/// answers all of them with 400 `ValidationErrors` and stores nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PostboxError {
    /// The wrapped key is not base64.
    #[error("the symmetrical key is not base64")]
    KeyEncoding,
    /// RSA-OAEP-SHA1 with the postbox's private key fails: the key was wrapped to
    /// another public key (or with another padding), or is damaged.
    #[error(
        "the symmetrical key does not unwrap with this postbox's private key \
         (RSA-OAEP with SHA-1): was it encrypted to this postbox's publicKey?"
    )]
    KeyUnwrap,
    /// The unwrapped key is not 32 bytes.
    #[error("the symmetrical key unwraps to {len} bytes; AES-256 needs 32")]
    KeyLength {
        /// The length found.
        len: usize,
    },
    /// The IV is not 32 hex digits.
    #[error("the iv must be 32 hexadecimal digits (16 bytes)")]
    Iv,
    /// The metadata is not base64.
    #[error("the metadata is not base64")]
    MetadataEncoding,
    /// The metadata does not decrypt: wrong length, or bad final block or padding
    /// (wrong key or IV, or damaged).
    #[error(
        "the metadata does not decrypt with AES-256-CBC/PKCS#7 under the symmetrical key \
         and iv (wrong key or iv, or damaged)"
    )]
    MetadataDecrypt,
    /// The decrypted metadata is not a file descriptor.
    #[error("the metadata is not a valid file descriptor: {0}")]
    Descriptor(String),
    /// The file part does not decrypt.
    #[error("the file does not decrypt with AES-256-CBC/PKCS#7: {0}")]
    FileDecrypt(&'static str),
}

/// Standard base64, padding optional, surrounding whitespace ignored.
fn b64_decode(text: &str) -> Option<Vec<u8>> {
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine.decode(text.trim()).ok()
}

fn hex_iv(text: &str) -> Option<[u8; IV_LEN]> {
    let text = text.trim().as_bytes();
    if text.len() != 2 * IV_LEN {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut iv = [0u8; IV_LEN];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        iv[i] = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(iv)
}

/// Checks a file descriptor: an object with a string `mimeType`,
/// an array `accounts` of objects with a string `accountId`, and optional `reference`
/// and `tags` arrays of strings. Other members are allowed (the SDK signs them too).
pub fn check_descriptor(d: &Value) -> Result<(), String> {
    let m = d.as_object().ok_or("it must be a JSON object")?;
    if !m.get("mimeType").is_some_and(Value::is_string) {
        return Err("mimeType must be a string".into());
    }
    let accounts = m
        .get("accounts")
        .and_then(Value::as_array)
        .ok_or("accounts must be an array")?;
    if !accounts
        .iter()
        .all(|a| a.get("accountId").is_some_and(Value::is_string))
    {
        return Err("every accounts[] entry must have a string accountId".into());
    }
    for list in ["reference", "tags"] {
        if m.get(list)
            .is_some_and(|v| !v.as_array().is_some_and(|a| a.iter().all(Value::is_string)))
        {
            return Err(format!("{list} must be an array of strings"));
        }
    }
    Ok(())
}

enum State {
    Body(CbcDecryptor),
    Failed(PostboxError),
}

/// Decodes one postbox payload: the envelope fields first ([`PostboxDecoder::new`]),
/// then the file ciphertext in pieces of any size.
///
/// ```
/// # fn demo(key: &digime_crypto::PrivateKey, sk: &str, iv: &str, meta: &str, body: &[u8])
/// # -> Result<(), digime_sandbox::postbox::PostboxError> {
/// use digime_sandbox::postbox::PostboxDecoder;
/// let mut decoder = PostboxDecoder::new(key, sk, iv, meta)?;
/// let mut plain = Vec::new();
/// for piece in body.chunks(4096) {
///     decoder.update(piece, &mut plain)?;
/// }
/// let descriptor = decoder.finish(&mut plain)?;
/// # Ok(()) }
/// ```
pub struct PostboxDecoder {
    state: State,
    descriptor: Value,
    bytes_in: u64,
}

impl std::fmt::Debug for PostboxDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostboxDecoder")
            .field("descriptor", &self.descriptor)
            .field("bytes_in", &self.bytes_in)
            .finish_non_exhaustive()
    }
}

impl PostboxDecoder {
    /// Unwraps the key with the postbox's private key, checks the IV, decrypts and
    /// validates the metadata. The strings are the claim or header values as sent.
    pub fn new(
        key: &PrivateKey,
        symmetrical_key: &str,
        iv: &str,
        metadata: &str,
    ) -> Result<Self, PostboxError> {
        let wrapped = b64_decode(symmetrical_key).ok_or(PostboxError::KeyEncoding)?;
        let unwrapped = key
            .decrypt_oaep_sha1(&wrapped)
            .map_err(|_| PostboxError::KeyUnwrap)?;
        let k: [u8; KEY_LEN] = unwrapped[..]
            .try_into()
            .map_err(|_| PostboxError::KeyLength {
                len: unwrapped.len(),
            })?;
        let iv = hex_iv(iv).ok_or(PostboxError::Iv)?;
        let meta_cipher = b64_decode(metadata).ok_or(PostboxError::MetadataEncoding)?;
        let meta = digime_crypto::cbc::decrypt(&k, &iv, &meta_cipher)
            .map_err(|_| PostboxError::MetadataDecrypt)?;
        let descriptor: Value = serde_json::from_slice(&meta)
            .map_err(|e| PostboxError::Descriptor(format!("not JSON ({e})")))?;
        check_descriptor(&descriptor).map_err(PostboxError::Descriptor)?;
        let file = CbcDecryptor::new(&k, &iv)
            .map_err(|_| PostboxError::FileDecrypt("the cipher could not be set up"))?;
        Ok(PostboxDecoder {
            state: State::Body(file),
            descriptor,
            bytes_in: 0,
        })
    }

    /// The validated descriptor (the decrypted metadata).
    pub fn descriptor(&self) -> &Value {
        &self.descriptor
    }

    /// How many ciphertext bytes of the file were fed.
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in
    }

    /// Feeds the next piece of the file ciphertext (possibly empty) and appends the
    /// plaintext it completes to `out`. After an error every call fails.
    pub fn update(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), PostboxError> {
        self.bytes_in = self.bytes_in.saturating_add(input.len() as u64);
        match &mut self.state {
            State::Failed(e) => Err(e.clone()),
            State::Body(dec) => match dec.update(input, out) {
                Ok(()) => Ok(()),
                Err(_) => {
                    let e = PostboxError::FileDecrypt("the cipher failed");
                    self.state = State::Failed(e.clone());
                    Err(e)
                }
            },
        }
    }

    /// Ends the file: checks its length (a non-zero multiple of 16) and its final
    /// block and padding, appends the last plaintext to `out`, and returns the
    /// descriptor. On an error, discard everything decoded so far.
    pub fn finish(self, out: &mut Vec<u8>) -> Result<Value, PostboxError> {
        let dec = match self.state {
            State::Failed(e) => return Err(e),
            State::Body(dec) => dec,
        };
        if self.bytes_in == 0 || !self.bytes_in.is_multiple_of(16) {
            return Err(PostboxError::FileDecrypt(
                "its length is not a non-zero multiple of 16 bytes",
            ));
        }
        dec.finish(out).map_err(|_| {
            PostboxError::FileDecrypt(
                "bad final block or padding (wrong key or iv, or damaged or truncated)",
            )
        })?;
        Ok(self.descriptor)
    }
}

/// A decoded payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The validated descriptor.
    pub descriptor: Value,
    /// The file's plaintext.
    pub file: Vec<u8>,
}

/// Decodes a whole payload whose file ciphertext comes in `chunks`.
pub fn decode<'a>(
    key: &PrivateKey,
    symmetrical_key: &str,
    iv: &str,
    metadata: &str,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Decoded, PostboxError> {
    let mut decoder = PostboxDecoder::new(key, symmetrical_key, iv, metadata)?;
    let mut file = Vec::new();
    for chunk in chunks {
        decoder.update(chunk, &mut file)?;
    }
    let descriptor = decoder.finish(&mut file)?;
    Ok(Decoded { descriptor, file })
}

// ---------------------------------------------------------------------------
// multipart/form-data

/// Why a multipart body is refused (400 `ValidationErrors`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MultipartError {
    /// The `Content-Type` is not `multipart/form-data` with a valid boundary.
    #[error("the content-type must be multipart/form-data with a valid boundary")]
    ContentType,
    /// The boundary never occurs in the body.
    #[error("the body does not contain the multipart boundary")]
    NoBoundary,
    /// Part headers too long or malformed.
    #[error("malformed multipart part headers")]
    PartHeaders,
    /// No part is named `file`.
    #[error("the body has no part named \"file\"")]
    NoFilePart,
    /// The body ends inside a part (no closing boundary after the file).
    #[error("the multipart body ends before the end of the file part")]
    Truncated,
}

/// Longest part header block.
const MAX_PART_HEADERS: usize = 16 * 1024;
/// Longest run between a boundary and the end of its line.
const MAX_BOUNDARY_LINE: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Mp {
    /// Before the first boundary.
    Preamble,
    /// Just after a boundary: `--` (close) or the end of the line.
    AfterBoundary,
    /// Reading part headers.
    Headers,
    /// Inside a part body; `true` for the file part.
    Body(bool),
    /// The closing boundary came before any file part.
    Closed,
    /// The file part is complete; the rest is ignored.
    Done,
    /// Refused; every later call repeats the error.
    Failed(MultipartError),
}

/// Extracts the first part named `file` from a `multipart/form-data` body fed in
/// pieces of any size, keeping at most one boundary's worth of bytes (plus one part
/// header block, at most 16 KiB) in memory. Lenient as the sandbox's parser should
/// be: any valid boundary (RFC 2046: 1 to 70 characters), a preamble, header names in
/// any case, quoted or bare `name` parameters, other parts before the file part, and
/// anything after the file part's closing boundary are all accepted.
#[derive(Debug, Clone)]
pub struct MultipartFile {
    /// `CRLF -- boundary`.
    delimiter: Vec<u8>,
    buf: Vec<u8>,
    state: Mp,
    seen_boundary: bool,
}

/// A `multipart/form-data` boundary as RFC 2046 allows it.
fn valid_boundary(b: &str) -> bool {
    (1..=70).contains(&b.len())
        && !b.ends_with(' ')
        && b.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&c))
}

/// Parameters of a header value such as `form-data; name="file"` or
/// `multipart/form-data; boundary=xyz`: `(type, [(lower-cased name, value)])`.
fn header_params(value: &str) -> (String, Vec<(String, String)>) {
    let mut rest = value;
    let end = rest.find(';').unwrap_or(rest.len());
    let kind = rest[..end].trim().to_ascii_lowercase();
    rest = &rest[end..];
    let mut params = Vec::new();
    while let Some(r) = rest.strip_prefix(';') {
        let r = r.trim_start();
        let eq = r.find(['=', ';']).unwrap_or(r.len());
        let name = r[..eq].trim().to_ascii_lowercase();
        let mut after = &r[eq..];
        let mut val = String::new();
        if let Some(v) = after.strip_prefix('=') {
            let v = v.trim_start();
            if let Some(q) = v.strip_prefix('"') {
                // A quoted string; a backslash escapes the next character.
                let mut chars = q.char_indices();
                let mut end = q.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, n)) = chars.next() {
                                val.push(n);
                            }
                        }
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => val.push(c),
                    }
                }
                after = &q[end.min(q.len())..];
                // Skip anything up to the next parameter.
                let next = after.find(';').unwrap_or(after.len());
                after = &after[next..];
            } else {
                let end = v.find(';').unwrap_or(v.len());
                val = v[..end].trim().to_owned();
                after = &v[end..];
            }
        }
        params.push((name, val));
        rest = after;
    }
    (kind, params)
}

/// The first occurrence of `needle` (non-empty) in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, _) = needle.split_first()?;
    let last_start = hay.len().checked_sub(needle.len())?;
    let mut start = 0;
    while start <= last_start {
        let i = start + hay[start..=last_start].iter().position(|&b| b == first)?;
        if hay[i..].starts_with(needle) {
            return Some(i);
        }
        start = i + 1;
    }
    None
}

impl MultipartFile {
    /// A parser for the boundary of a `Content-Type` header value.
    pub fn from_content_type(content_type: &str) -> Result<Self, MultipartError> {
        let (kind, params) = header_params(content_type);
        if kind != "multipart/form-data" {
            return Err(MultipartError::ContentType);
        }
        let boundary = params
            .iter()
            .find(|(n, _)| n == "boundary")
            .map(|(_, v)| v.as_str())
            .ok_or(MultipartError::ContentType)?;
        Self::new(boundary)
    }

    /// A parser for `boundary`.
    pub fn new(boundary: &str) -> Result<Self, MultipartError> {
        if !valid_boundary(boundary) {
            return Err(MultipartError::ContentType);
        }
        let mut delimiter = b"\r\n--".to_vec();
        delimiter.extend_from_slice(boundary.as_bytes());
        Ok(MultipartFile {
            delimiter,
            // The first boundary may start the body: pretend a line ended before it.
            buf: b"\r\n".to_vec(),
            state: Mp::Preamble,
            seen_boundary: false,
        })
    }

    /// Whether the file part is complete (the rest of the body is ignored).
    pub fn is_done(&self) -> bool {
        self.state == Mp::Done
    }

    /// Feeds the next piece of the body and appends the file part's bytes it
    /// completes to `file`.
    pub fn feed(&mut self, input: &[u8], file: &mut Vec<u8>) -> Result<(), MultipartError> {
        match &self.state {
            Mp::Done | Mp::Closed => return Ok(()),
            Mp::Failed(e) => return Err(e.clone()),
            _ => {}
        }
        self.buf.extend_from_slice(input);
        loop {
            match self.state {
                Mp::Failed(ref e) => return Err(e.clone()),
                Mp::Done | Mp::Closed => {
                    self.buf = Vec::new();
                    return Ok(());
                }
                Mp::Preamble | Mp::Body(_) => {
                    let is_file = self.state == Mp::Body(true);
                    match find(&self.buf, &self.delimiter) {
                        Some(at) => {
                            if is_file {
                                file.extend_from_slice(&self.buf[..at]);
                                self.state = Mp::Done;
                                continue;
                            }
                            self.buf.drain(..at + self.delimiter.len());
                            self.seen_boundary = true;
                            self.state = Mp::AfterBoundary;
                        }
                        None => {
                            // Keep what could be the start of a delimiter.
                            let keep = self.delimiter.len() - 1;
                            if self.buf.len() > keep {
                                let emit = self.buf.len() - keep;
                                if is_file {
                                    file.extend_from_slice(&self.buf[..emit]);
                                }
                                self.buf.drain(..emit);
                            }
                            return Ok(());
                        }
                    }
                }
                Mp::AfterBoundary => {
                    if self.buf.len() < 2 {
                        return Ok(());
                    }
                    if self.buf.starts_with(b"--") {
                        self.state = Mp::Closed;
                        continue;
                    }
                    match find(&self.buf, b"\r\n") {
                        // Transport padding (spaces, tabs) may follow the boundary.
                        Some(at) if self.buf[..at].iter().all(|b| matches!(b, b' ' | b'\t')) => {
                            self.buf.drain(..at + 2);
                            self.state = Mp::Headers;
                        }
                        Some(_) => return Err(self.fail(MultipartError::PartHeaders)),
                        None if self.buf.len() > MAX_BOUNDARY_LINE => {
                            return Err(self.fail(MultipartError::PartHeaders));
                        }
                        None => return Ok(()),
                    }
                }
                Mp::Headers => {
                    let end = if self.buf.starts_with(b"\r\n") {
                        Some((0, 2))
                    } else {
                        find(&self.buf, b"\r\n\r\n").map(|at| (at, at + 4))
                    };
                    let Some((at, skip)) = end else {
                        if self.buf.len() > MAX_PART_HEADERS {
                            return Err(self.fail(MultipartError::PartHeaders));
                        }
                        return Ok(());
                    };
                    if at > MAX_PART_HEADERS {
                        return Err(self.fail(MultipartError::PartHeaders));
                    }
                    let is_file = Self::names_file(&self.buf[..at]);
                    // The part body ends at the next delimiter (whose CRLF is not content).
                    self.buf.drain(..skip);
                    self.state = Mp::Body(is_file);
                }
            }
        }
    }

    /// Whether a part header block has `Content-Disposition: form-data; name="file"`.
    fn names_file(block: &[u8]) -> bool {
        let text = String::from_utf8_lossy(block);
        text.split("\r\n").any(|line| {
            let Some((name, value)) = line.split_once(':') else {
                return false;
            };
            if !name.trim().eq_ignore_ascii_case("content-disposition") {
                return false;
            }
            let (_, params) = header_params(value);
            params
                .iter()
                .find(|(n, _)| n == "name")
                .is_some_and(|(_, v)| v == "file")
        })
    }

    fn fail(&mut self, e: MultipartError) -> MultipartError {
        self.buf = Vec::new();
        self.state = Mp::Failed(e.clone());
        e
    }

    /// Ends the body: the file part must be complete.
    pub fn finish(self) -> Result<(), MultipartError> {
        match self.state {
            Mp::Done => Ok(()),
            Mp::Failed(e) => Err(e),
            Mp::Preamble if !self.seen_boundary => Err(MultipartError::NoBoundary),
            Mp::Closed | Mp::Preamble => Err(MultipartError::NoFilePart),
            Mp::Body(false) => Err(MultipartError::NoFilePart),
            Mp::Body(true) | Mp::AfterBoundary | Mp::Headers => Err(MultipartError::Truncated),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn body(boundary: &str, parts: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (headers, content) in parts {
            out.extend_from_slice(format!("--{boundary}\r\n{headers}\r\n\r\n").as_bytes());
            out.extend_from_slice(content);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        out
    }

    fn run(ct: &str, body: &[u8], chunk: usize) -> Result<Vec<u8>, MultipartError> {
        let mut p = MultipartFile::from_content_type(ct)?;
        let mut file = Vec::new();
        for piece in body.chunks(chunk.max(1)) {
            p.feed(piece, &mut file)?;
        }
        p.finish()?;
        Ok(file)
    }

    #[test]
    fn node_layout() {
        let b = "--------------------------941175817833237358633249";
        let content = b"\x42\x62\xc1\xdc\x1b\x90\x42\xdb\x32\x50\xff\x18\x1b\xe6\xb4\x36";
        let raw = body(
            b,
            &[(
                "Content-Disposition: form-data; name=\"file\"; filename=\"receipt-42.json\"\r\nContent-Type: application/json",
                content,
            )],
        );
        assert_eq!(raw.len(), 235);
        for chunk in [1, 2, 3, 7, 54, 100, 1000] {
            let ct = format!("multipart/form-data; boundary={b}");
            assert_eq!(run(&ct, &raw, chunk).unwrap(), content);
        }
    }

    #[test]
    fn lenient_forms() {
        // iOS: bare name, a part content type, header names in odd case, quoted
        // boundary, a preamble, another part first.
        let raw = body(
            "xYz'()+_,-./:=?",
            &[
                (
                    "content-disposition: form-data; name=\"other\"",
                    b"ignored\r\n--x",
                ),
                (
                    "CONTENT-DISPOSITION: form-data; name=file; filename=file\r\ncontent-type: multipart/form-data",
                    b"payload",
                ),
                ("Content-Disposition: form-data; name=\"file\"", b"second"),
            ],
        );
        let mut with_preamble = b"preamble\r\n".to_vec();
        with_preamble.extend_from_slice(&raw);
        let ct = "Multipart/Form-Data; Boundary=\"xYz'()+_,-./:=?\"";
        assert_eq!(run(ct, &with_preamble, 5).unwrap(), b"payload");
        // The rest of the body after the file part is not looked at.
        let mut cut = raw.clone();
        cut.truncate(raw.len() - 10);
        assert_eq!(run(ct, &cut, 64).unwrap(), b"payload");
    }

    #[test]
    fn refusals() {
        let ct = "multipart/form-data; boundary=abc";
        assert_eq!(
            run("application/json", b"", 1),
            Err(MultipartError::ContentType)
        );
        assert_eq!(
            run("multipart/form-data", b"", 1),
            Err(MultipartError::ContentType)
        );
        assert_eq!(
            run(
                &format!("multipart/form-data; boundary={}", "a".repeat(71)),
                b"",
                1
            ),
            Err(MultipartError::ContentType)
        );
        assert_eq!(run(ct, b"garbage", 3), Err(MultipartError::NoBoundary));
        assert_eq!(run(ct, b"", 3), Err(MultipartError::NoBoundary));
        assert_eq!(
            run(
                ct,
                &body(
                    "abc",
                    &[("Content-Disposition: form-data; name=\"x\"", b"1")]
                ),
                3
            ),
            Err(MultipartError::NoFilePart)
        );
        assert_eq!(run(ct, b"--abc--\r\n", 3), Err(MultipartError::NoFilePart));
        assert_eq!(
            run(
                ct,
                b"--abc\r\nContent-Disposition: form-data; name=file\r\n\r\npartial",
                3
            ),
            Err(MultipartError::Truncated)
        );
        assert_eq!(
            run(ct, b"--abc junk\r\n", 3),
            Err(MultipartError::PartHeaders)
        );
        let long = format!("--abc\r\nX: {}", "y".repeat(MAX_PART_HEADERS + 10));
        assert_eq!(
            run(ct, long.as_bytes(), 1000),
            Err(MultipartError::PartHeaders)
        );
    }

    proptest! {
        #[test]
        fn any_content_any_chunking(
            content in proptest::collection::vec(any::<u8>(), 0..3000),
            boundary in "[A-Za-z0-9'()+_,./:=?-]{1,70}",
            chunk in 1usize..300,
        ) {
            // A content that holds the delimiter cannot be framed; skip it.
            let mut delim = b"\r\n--".to_vec();
            delim.extend_from_slice(boundary.as_bytes());
            prop_assume!(find(&content, &delim).is_none());
            let raw = body(&boundary, &[("Content-Disposition: form-data; name=\"file\"", &content)]);
            let ct = format!("multipart/form-data; boundary=\"{boundary}\"");
            prop_assert_eq!(run(&ct, &raw, chunk).unwrap(), content);
        }

        #[test]
        fn never_panics(
            raw in proptest::collection::vec(any::<u8>(), 0..2000),
            chunk in 1usize..100,
        ) {
            let _ = run("multipart/form-data; boundary=ab", &raw, chunk);
        }
    }
}
