//! The sandbox's postbox decoder (`digime_sandbox::postbox`), as the server runs it on
//! request data: `PostboxDecoder` over arbitrary envelope strings and file bytes cut
//! into arbitrary pieces, and `MultipartFile` over arbitrary bodies. Nothing may panic.
//!
//! Input layout: byte 0 picks the mode (low two bits), byte 1 holds flags; then
//! length-prefixed fields (one length byte, scaled) and the rest as the file or body.
//!
//! * Mode 0: arbitrary `symmetrical_key`, `iv` and `metadata` strings with the real
//!   postbox key (mostly refused early: base64, RSA length).
//! * Mode 1: a real 32-byte key wrapped once to the postbox key (so RSA-OAEP succeeds),
//!   an IV from the input, metadata plaintext from the input encrypted under them (or,
//!   by a flag, raw bytes as ciphertext; by another, a fixed valid descriptor), and the
//!   file encrypted (or raw): reaches the AES, padding, JSON and descriptor paths. When
//!   everything is well formed the decoded file must equal the plaintext, in any
//!   chunking.
//! * Mode 2: `MultipartFile` with an arbitrary content type over an arbitrary body.
//! * Mode 3: mode 1's envelope around a multipart body framing the ciphertext with an
//!   arbitrary boundary, fed through both in arbitrary pieces, as the server does.
#![no_main]

use digime_crypto::{PrivateKey, cbc};
use digime_sandbox::postbox::{self, MultipartFile, PostboxDecoder, PostboxError};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const K: [u8; 32] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
    26, 27, 28, 29, 30, 31,
];

struct Fixture {
    key: PrivateKey,
    /// `K` wrapped to the key, base64.
    wrapped: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let key = PrivateKey::generate().expect("key generation");
        let wrapped = key.public_key().encrypt_oaep_sha1(&K).expect("OAEP wrap");
        Fixture {
            wrapped: b64(&wrapped),
            key,
        }
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    /// A field of up to 255·`scale` bytes.
    fn field(&mut self, scale: usize) -> &'a [u8] {
        let n = (self.byte() as usize * scale).min(self.0.len());
        let (f, rest) = self.0.split_at(n);
        self.0 = rest;
        f
    }
    fn text(&mut self, scale: usize) -> String {
        String::from_utf8_lossy(self.field(scale)).into_owned()
    }
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
}

/// Piece lengths (1..=256·8) from a few bytes.
fn pieces(r: &mut Reader) -> Vec<usize> {
    let n = 1 + (r.byte() % 4) as usize;
    (0..n).map(|_| 1 + r.byte() as usize * 8).collect()
}

fn split<'a>(data: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    for &n in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (a, b) = rest.split_at(n.min(rest.len()));
        out.push(a);
        rest = b;
    }
    out
}

/// Standard base64 with padding (the fuzz crate has no base64 dependency).
fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decodes; checks the streamed result against the whole-buffer one.
fn decode(
    sk: &str,
    iv: &str,
    meta: &str,
    file: &[u8],
    sizes: &[usize],
) -> Result<Vec<u8>, PostboxError> {
    let key = &fixture().key;
    let streamed = postbox::decode(key, sk, iv, meta, split(file, sizes));
    let whole = postbox::decode(key, sk, iv, meta, [file]);
    assert_eq!(streamed, whole, "chunking changed the result");
    streamed.map(|d| d.file)
}

/// Mode 1's envelope: `(iv text, metadata text, file ciphertext, expected plaintext)`.
fn envelope(r: &mut Reader, flags: u8) -> (String, String, Vec<u8>, Option<Vec<u8>>) {
    let mut iv = [0u8; 16];
    for b in &mut iv {
        *b = r.byte();
    }
    // Flag bit 3: a valid descriptor, so that the file paths are reached at once.
    let meta_plain: &[u8] = if flags & 8 != 0 {
        br#"{"mimeType":"application/json","accounts":[{"accountId":"a"}],"tags":["t"]}"#
    } else {
        r.field(4)
    };
    let file_plain = r.field(64);
    let mut good = true;
    let iv_text = if flags & 1 == 0 {
        hex(&iv)
    } else {
        good = false;
        String::from_utf8_lossy(&iv).into_owned()
    };
    let meta_cipher = if flags & 2 == 0 {
        cbc::encrypt(&K, &iv, meta_plain).expect("encrypt")
    } else {
        good = false;
        meta_plain.to_vec()
    };
    let file_cipher = if flags & 4 == 0 {
        cbc::encrypt(&K, &iv, file_plain).expect("encrypt")
    } else {
        good = false;
        file_plain.to_vec()
    };
    let valid_meta = serde_json::from_slice::<serde_json::Value>(meta_plain)
        .ok()
        .is_some_and(|d| postbox::check_descriptor(&d).is_ok());
    let expected = (good && valid_meta).then(|| file_plain.to_vec());
    (iv_text, b64(&meta_cipher), file_cipher, expected)
}

fuzz_target!(|data: &[u8]| {
    let mut r = Reader(data);
    let mode = r.byte() & 3;
    let flags = r.byte();
    match mode {
        0 => {
            let sk = r.text(2);
            let iv = r.text(1);
            let meta = r.text(4);
            let sizes = pieces(&mut r);
            let _ = decode(&sk, &iv, &meta, r.rest(), &sizes);
        }
        1 => {
            let (iv, meta, file, expected) = envelope(&mut r, flags);
            let sizes = pieces(&mut r);
            let got = decode(&fixture().wrapped, &iv, &meta, &file, &sizes);
            if let Some(plain) = expected {
                assert_eq!(
                    got.as_ref(),
                    Ok(&plain),
                    "a well-formed payload must decode"
                );
            }
        }
        2 => {
            let ct = r.text(1);
            let sizes = pieces(&mut r);
            if let Ok(mut parser) = MultipartFile::from_content_type(&ct) {
                let mut file = Vec::new();
                let mut ok = true;
                for piece in split(r.rest(), &sizes) {
                    if parser.feed(piece, &mut file).is_err() {
                        ok = false;
                        break;
                    }
                }
                if ok {
                    let _ = parser.finish();
                }
            }
        }
        _ => {
            let (iv, meta, file, expected) = envelope(&mut r, flags);
            let boundary: String = r
                .text(1)
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || "'()+_,-./:=?".contains(*c))
                .take(70)
                .collect();
            let boundary = if boundary.is_empty() {
                "b".to_owned()
            } else {
                boundary
            };
            let mut body = format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\n"
            )
            .into_bytes();
            body.extend_from_slice(&file);
            body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
            let sizes = pieces(&mut r);
            let Ok(mut parser) = MultipartFile::from_content_type(&format!(
                "multipart/form-data; boundary=\"{boundary}\""
            )) else {
                panic!("a valid boundary was refused: {boundary:?}");
            };
            let Ok(mut decoder) =
                PostboxDecoder::new(&fixture().key, &fixture().wrapped, &iv, &meta)
            else {
                assert!(expected.is_none(), "a well-formed envelope was refused");
                return;
            };
            let mut part = Vec::new();
            let mut plain = Vec::new();
            let mut result = Ok(());
            for piece in split(&body, &sizes) {
                part.clear();
                if let Err(e) = parser.feed(piece, &mut part) {
                    result = Err(e.to_string());
                    break;
                }
                if let Err(e) = decoder.update(&part, &mut plain) {
                    result = Err(e.to_string());
                    break;
                }
            }
            let result = result
                .and_then(|()| parser.finish().map_err(|e| e.to_string()))
                .and_then(|()| decoder.finish(&mut plain).map_err(|e| e.to_string()));
            // A ciphertext that happens to hold the delimiter cannot be framed.
            let mut delimiter = b"\r\n--".to_vec();
            delimiter.extend_from_slice(boundary.as_bytes());
            let framable = !file.windows(delimiter.len()).any(|w| w == delimiter);
            if let (Some(expected), true) = (expected, framable) {
                assert!(result.is_ok(), "a well-formed push must decode: {result:?}");
                assert_eq!(plain, expected);
            }
        }
    }
});
