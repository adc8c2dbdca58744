//! The data-file envelope against the generated vectors of
//! `fixtures/generated/read-crypto-vectors.json` (made with the Node SDK's own code),
//! in every chunking, and round trips and tampering under proptest.

use digime_crypto::envelope::{self, Decryptor, Encryptor, Format, HEADER_LEN, MIN_LEN};
use digime_crypto::{CryptoError, PrivateKey, PublicKey};
use proptest::prelude::*;
use serde_json::Value;
use sha2::Digest;
use std::io::Read;
use std::sync::OnceLock;

struct Fixture {
    key: PrivateKey,
    public_spki: PublicKey,
    vectors: Vec<Value>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/generated/read-crypto-vectors.json"
        );
        let text = std::fs::read_to_string(path).expect("vectors present");
        let json: Value = serde_json::from_str(&text).unwrap();
        let key = PrivateKey::from_pem(json["rsaPrivateKeyPkcs1Pem"].as_str().unwrap()).unwrap();
        let public_spki =
            PublicKey::from_pem(json["rsaPublicKeySpkiPem"].as_str().unwrap()).unwrap();
        Fixture {
            key,
            public_spki,
            vectors: json["vectors"].as_array().unwrap().clone(),
        }
    })
}

fn other_key() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| PrivateKey::generate().unwrap())
}

fn vector(name: &str) -> &'static Value {
    fixture()
        .vectors
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no vector {name}"))
}

fn unhex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2));
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn file_of(v: &Value) -> Vec<u8> {
    let file = unhex(v["fileHex"].as_str().unwrap());
    assert_eq!(file.len() as u64, v["fileLength"].as_u64().unwrap());
    file
}

fn format_of(v: &Value) -> Format {
    if v["name"] == "legacy-sha512-prefixed" {
        Format::Sha512Prefixed
    } else {
        Format::Current
    }
}

/// The vector's plaintext after decompression per its `X-Metadata`.
fn decompress(v: &Value, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match v["xMetadataDecoded"]["compression"].as_str() {
        None => out.extend_from_slice(data),
        Some("gzip") => {
            assert_eq!(&data[..2], &[0x1f, 0x8b], "gzip magic");
            flate2::read::GzDecoder::new(data)
                .read_to_end(&mut out)
                .unwrap();
        }
        Some("brotli") => {
            brotli_decompressor::Decompressor::new(data, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        Some(other) => panic!("unknown compression {other}"),
    }
    out
}

/// Decrypts through a `Decryptor`, feeding pieces of the given lengths (cycled; a zero
/// length feeds an empty slice).
fn streamed(
    key: &PrivateKey,
    file: &[u8],
    format: Format,
    sizes: &[usize],
) -> Result<Vec<u8>, CryptoError> {
    let mut decryptor = Decryptor::new(key, format);
    let mut out = Vec::new();
    for piece in pieces(file, sizes) {
        decryptor.update(piece, &mut out)?;
    }
    decryptor.update(&[], &mut out)?;
    assert_eq!(decryptor.bytes_in(), file.len() as u64);
    decryptor.finish(&mut out)?;
    Ok(out)
}

/// `data` cut into pieces of the given lengths (cycled; zero gives an empty piece), the
/// last piece taking whatever is left.
fn pieces<'a>(data: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    for (i, &n) in sizes.iter().cycle().enumerate() {
        if rest.is_empty() {
            break;
        }
        let n = if i > data.len() + 16 {
            rest.len()
        } else {
            n.min(rest.len())
        };
        let (piece, tail) = rest.split_at(n);
        out.push(piece);
        rest = tail;
    }
    out
}

/// Small deterministic generator for the random splits.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Every chunking the tests try on a file of `len` bytes.
fn chunkings(len: usize) -> Vec<Vec<usize>> {
    let mut all = vec![
        vec![len.max(1)],
        vec![1],
        vec![2],
        vec![15],
        vec![16],
        vec![17],
        vec![271, len],
        vec![272, len],
        vec![273, len],
        vec![255, len],
        vec![256, len],
        vec![257, len],
        vec![len.saturating_sub(16).max(1), len],
        vec![len.saturating_sub(1).max(1), len],
        vec![0, 100, 0, 7],
    ];
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15 ^ len as u64);
    for _ in 0..20 {
        let pieces = 1 + (rng.next() % 12) as usize;
        all.push(
            (0..pieces)
                .map(|_| (rng.next() % (len as u64 + 2)) as usize)
                .collect(),
        );
    }
    all
}

#[test]
fn public_keys_of_the_fixture_agree() {
    let f = fixture();
    assert_eq!(f.key.public_key(), f.public_spki);
    assert_eq!(f.key.bits(), 2048);
}

#[test]
fn every_decryptable_vector_decrypts_in_every_chunking() {
    let f = fixture();
    let mut seen = 0;
    for v in &f.vectors {
        let Some(expected) = v["expectedPlaintextUtf8"].as_str() else {
            continue;
        };
        seen += 1;
        let name = v["name"].as_str().unwrap();
        let file = file_of(v);
        let format = format_of(v);

        // Header: the IV is raw, the RSA block unwraps to the DEK.
        let iv = &file[envelope::RSA_BLOCK_LEN..HEADER_LEN];
        assert_eq!(iv, unhex(v["expectedIvHex"].as_str().unwrap()), "{name}");
        let dek = f
            .key
            .decrypt_oaep_sha1(&file[..envelope::RSA_BLOCK_LEN])
            .unwrap();
        assert_eq!(
            &dek[..],
            unhex(v["expectedDataEncryptionKeyHex"].as_str().unwrap()),
            "{name}"
        );

        let whole = envelope::decrypt(&f.key, &file, format).unwrap();
        assert_eq!(decompress(v, &whole), expected.as_bytes(), "{name}");

        for sizes in chunkings(file.len()) {
            let out = streamed(&f.key, &file, format, &sizes)
                .unwrap_or_else(|e| panic!("{name} with {sizes:?}: {e}"));
            assert_eq!(out, whole, "{name} with {sizes:?}");
        }

        // The key unwraps with the wrong private key fail, whole and streamed.
        assert_eq!(
            envelope::decrypt(other_key(), &file, format),
            Err(CryptoError::KeyUnwrap),
            "{name}"
        );
        for sizes in [vec![1], vec![272], vec![file.len()]] {
            assert_eq!(
                streamed(other_key(), &file, format, &sizes),
                Err(CryptoError::KeyUnwrap)
            );
        }
    }
    assert_eq!(seen, 6);
}

#[test]
fn the_update_calls_never_emit_the_padding_block() {
    let f = fixture();
    for v in &f.vectors {
        if v["expectedPlaintextUtf8"].is_null() {
            continue;
        }
        let file = file_of(v);
        let format = format_of(v);
        let body = file.len() - HEADER_LEN;
        let held_back = match format {
            Format::Sha512Prefixed => 16 + 64,
            _ => 16,
        };
        for step in [1, 16, 272, file.len()] {
            let mut decryptor = Decryptor::new(&f.key, format);
            let mut out = Vec::new();
            for piece in file.chunks(step) {
                decryptor.update(piece, &mut out).unwrap();
            }
            assert_eq!(out.len(), body - held_back);
            let before = out.clone();
            decryptor.finish(&mut out).unwrap();
            assert_eq!(&out[..before.len()], &before[..]);
            assert_eq!(out, envelope::decrypt(&f.key, &file, format).unwrap());
        }
    }
}

#[test]
fn the_legacy_vector_checks_its_hash() {
    let f = fixture();
    let v = vector("legacy-sha512-prefixed");
    let file = file_of(v);
    assert_eq!(file.len(), envelope::LEGACY_MIN_LEN);

    // Read as the current format, the digest is still there.
    let raw = envelope::decrypt(&f.key, &file, Format::Current).unwrap();
    let (digest, data) = raw.split_at(64);
    assert_eq!(data, b"{\"legacy\":true}");
    assert_eq!(digest, &sha2::Sha512::digest(data)[..]);

    // Flip a bit of the data (plaintext block 1 via ciphertext block 0): the padding
    // survives, the hash does not.
    let mut bad = file.clone();
    bad[HEADER_LEN + 3] ^= 0x01;
    assert_eq!(
        envelope::decrypt(&f.key, &bad, Format::Sha512Prefixed),
        Err(CryptoError::HashMismatch)
    );
    assert_eq!(
        CryptoError::HashMismatch.to_string(),
        "hash is not valid",
        "the Node SDK's message"
    );
    for sizes in [vec![1], vec![300], vec![bad.len()]] {
        assert_eq!(
            streamed(&f.key, &bad, Format::Sha512Prefixed, &sizes),
            Err(CryptoError::HashMismatch)
        );
    }

    // Current-format files are too short for the legacy rule.
    let current = file_of(vector("mapped-gzip"));
    assert_eq!(
        envelope::decrypt(&f.key, &current, Format::Sha512Prefixed),
        Err(CryptoError::InvalidFileSize { len: 336 })
    );
    assert_eq!(
        streamed(&f.key, &current, Format::Sha512Prefixed, &[7]),
        Err(CryptoError::InvalidFileSize { len: 336 })
    );
}

#[test]
fn invalid_lengths_are_refused_before_any_crypto() {
    let f = fixture();
    let v = vector("invalid-length");
    let file = file_of(v);
    let expected = CryptoError::InvalidFileSize { len: 293 };
    assert_eq!(expected.to_string(), "file size not valid: 293");
    assert!(
        v["expectedError"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .ends_with(&expected.to_string())
    );
    for format in [Format::Current, Format::Sha512Prefixed] {
        // Even the wrong key says "size": no RSA happens first.
        assert_eq!(
            envelope::decrypt(other_key(), &file, format),
            Err(expected.clone())
        );
        assert_eq!(
            envelope::decrypt(&f.key, &file, format),
            Err(expected.clone())
        );
        for sizes in chunkings(file.len()) {
            assert_eq!(
                streamed(&f.key, &file, format, &sizes),
                Err(expected.clone())
            );
        }
    }

    let quirk = file_of(vector("storage-empty-input-quirk"));
    assert_eq!(quirk.len(), 16);
    assert_eq!(
        envelope::decrypt(&f.key, &quirk, Format::Current),
        Err(CryptoError::InvalidFileSize { len: 16 })
    );
    for sizes in chunkings(16) {
        assert_eq!(
            streamed(&f.key, &quirk, Format::Current, &sizes),
            Err(CryptoError::InvalidFileSize { len: 16 })
        );
    }

    // Short streams are errors, not empty successes (unlike Node), down to nothing.
    for len in [0usize, 1, 271, 272, 273, 287] {
        let data = vec![0u8; len];
        assert_eq!(
            envelope::decrypt(&f.key, &data, Format::Current),
            Err(CryptoError::InvalidFileSize { len: len as u64 })
        );
        if len < HEADER_LEN {
            // (From 272 bytes on, the all-zero RSA block fails to unwrap first.)
            let mut d = Decryptor::new(&f.key, Format::Current);
            let mut out = Vec::new();
            d.update(&data, &mut out).unwrap();
            assert_eq!(
                d.finish(&mut out),
                Err(CryptoError::InvalidFileSize { len: len as u64 })
            );
            assert!(out.is_empty());
        }
    }
    let mut out = Vec::new();
    assert_eq!(
        Decryptor::new(&f.key, Format::Current).finish(&mut out),
        Err(CryptoError::InvalidFileSize { len: 0 })
    );
}

#[test]
fn the_storage_upload_blob_decrypts() {
    let f = fixture();
    let file = file_of(vector("storage-upload-blob"));
    assert_eq!(
        envelope::decrypt(&f.key, &file, Format::Current).unwrap(),
        b"hello storage"
    );
}

#[test]
fn errors_stick() {
    let f = fixture();
    let file = file_of(vector("mapped-uncompressed"));
    let mut d = Decryptor::new(other_key(), Format::Current);
    let mut out = Vec::new();
    assert_eq!(d.update(&file, &mut out), Err(CryptoError::KeyUnwrap));
    assert_eq!(d.update(&[], &mut out), Err(CryptoError::KeyUnwrap));
    assert_eq!(d.update(&file, &mut out), Err(CryptoError::KeyUnwrap));
    assert_eq!(d.finish(&mut out), Err(CryptoError::KeyUnwrap));
    assert!(out.is_empty());

    // A body byte that breaks the padding.
    let mut bad = file.clone();
    let last = bad.len() - 17;
    bad[last] ^= 0x80;
    let mut d = Decryptor::new(&f.key, Format::Current);
    d.update(&bad, &mut out).unwrap();
    assert_eq!(d.finish(&mut out), Err(CryptoError::BadPadding));

    // An extra byte after a complete file.
    let mut d = Decryptor::new(&f.key, Format::Current);
    out.clear();
    d.update(&file, &mut out).unwrap();
    d.update(&[0], &mut out).unwrap();
    assert_eq!(
        d.finish(&mut out),
        Err(CryptoError::InvalidFileSize {
            len: file.len() as u64 + 1
        })
    );
}

#[test]
fn output_is_appended_to_what_the_caller_has() {
    let f = fixture();
    let file = file_of(vector("mapped-uncompressed"));
    let mut out = b"prefix:".to_vec();
    let mut d = Decryptor::new(&f.key, Format::Current);
    d.update(&file, &mut out).unwrap();
    d.finish(&mut out).unwrap();
    assert_eq!(out, b"prefix:[{\"id\":\"post-1\",\"text\":\"hello\"}]");

    let mut out = b"head".to_vec();
    let mut e = Encryptor::new(&f.public_spki, Format::Current).unwrap();
    e.update(b"abc", &mut out).unwrap();
    e.finish(&mut out).unwrap();
    assert_eq!(&out[..4], b"head");
    assert_eq!(
        envelope::decrypt(&f.key, &out[4..], Format::Current).unwrap(),
        b"abc"
    );
}

#[test]
fn an_empty_input_still_makes_a_valid_file() {
    let f = fixture();
    for format in [Format::Current, Format::Sha512Prefixed] {
        // No update at all (the Node quirk case), and one empty update.
        let e = Encryptor::new(&f.public_spki, format).unwrap();
        let mut out = Vec::new();
        e.finish(&mut out).unwrap();
        assert_eq!(out.len() as u64, envelope::encrypted_len(0, format));
        assert_eq!(out.len(), format.min_len());
        assert_eq!(envelope::decrypt(&f.key, &out, format).unwrap(), b"");

        let mut e = Encryptor::new(&f.public_spki, format).unwrap();
        let mut out = Vec::new();
        e.update(&[], &mut out).unwrap();
        assert_eq!(out.len(), HEADER_LEN);
        e.finish(&mut out).unwrap();
        assert_eq!(envelope::decrypt(&f.key, &out, format).unwrap(), b"");

        let whole = envelope::encrypt(&f.public_spki, b"", format).unwrap();
        assert_eq!(whole.len(), format.min_len());
        assert_eq!(envelope::decrypt(&f.key, &whole, format).unwrap(), b"");
    }
    assert_eq!(MIN_LEN, 288);
}

#[test]
fn encryption_is_fresh_every_time_and_needs_a_2048_bit_key() {
    let f = fixture();
    let a = envelope::encrypt(&f.public_spki, b"same", Format::Current).unwrap();
    let b = envelope::encrypt(&f.public_spki, b"same", Format::Current).unwrap();
    assert_ne!(a[..HEADER_LEN], b[..HEADER_LEN]);
    assert_ne!(a[HEADER_LEN..], b[HEADER_LEN..]);

    // A (made-up) 4096-bit modulus: the 512-byte block does not fit the header.
    let mut n = vec![0xc5u8; 512];
    n[511] |= 1;
    let big = PublicKey::from_components(&n, &[1, 0, 1]).unwrap();
    assert_eq!(big.bits(), 4096);
    assert!(matches!(
        Encryptor::new(&big, Format::Current),
        Err(CryptoError::KeyRejected(_))
    ));
    assert!(matches!(
        envelope::encrypt(&big, b"x", Format::Current),
        Err(CryptoError::KeyRejected(_))
    ));
}

fn tiny_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(
        prop_oneof![0usize..20, 1usize..400, Just(272usize), 1usize..6000],
        1..8,
    )
}

fn feed_encryptor(public: &PublicKey, plain: &[u8], format: Format, sizes: &[usize]) -> Vec<u8> {
    let mut e = Encryptor::new(public, format).unwrap();
    let mut out = Vec::new();
    for piece in pieces(plain, sizes) {
        e.update(piece, &mut out).unwrap();
    }
    e.finish(&mut out).unwrap();
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn round_trips_in_any_chunking(
        plain in prop::collection::vec(any::<u8>(), 0..=5000),
        legacy in any::<bool>(),
        enc_sizes in tiny_sizes(),
        dec_sizes in tiny_sizes(),
    ) {
        let f = fixture();
        let format = if legacy { Format::Sha512Prefixed } else { Format::Current };
        let file = feed_encryptor(&f.public_spki, &plain, format, &enc_sizes);
        prop_assert_eq!(file.len() as u64, envelope::encrypted_len(plain.len() as u64, format));
        prop_assert!(format.is_valid_len(file.len() as u64));
        prop_assert_eq!(&streamed(&f.key, &file, format, &dec_sizes).unwrap(), &plain);
        prop_assert_eq!(&envelope::decrypt(&f.key, &file, format).unwrap(), &plain);

        let whole = envelope::encrypt(&f.key.public_key(), &plain, format).unwrap();
        prop_assert_eq!(whole.len(), file.len());
        prop_assert_eq!(&streamed(&f.key, &whole, format, &dec_sizes).unwrap(), &plain);
    }

    #[test]
    fn tampering_never_gives_back_the_plaintext(
        plain in prop::collection::vec(any::<u8>(), 0..=600),
        legacy in any::<bool>(),
        flip_at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
        dec_sizes in tiny_sizes(),
    ) {
        let f = fixture();
        let format = if legacy { Format::Sha512Prefixed } else { Format::Current };
        let file = envelope::encrypt(&f.public_spki, &plain, format).unwrap();

        // A byte of the last block: the padding check catches it, or (rarely) a
        // different, shorter plaintext comes out; never the original.
        let mut bad = file.clone();
        let i = file.len() - 16 + flip_at.index(16);
        bad[i] ^= flip;
        let whole = envelope::decrypt(&f.key, &bad, format);
        prop_assert_ne!(whole.as_ref().ok(), Some(&plain));
        prop_assert_eq!(&streamed(&f.key, &bad, format, &dec_sizes), &whole);

        // Any byte of the body: for the legacy format the hash catches it always.
        let mut bad = file.clone();
        let i = HEADER_LEN + flip_at.index(file.len() - HEADER_LEN);
        bad[i] ^= flip;
        let whole = envelope::decrypt(&f.key, &bad, format);
        prop_assert_ne!(whole.as_ref().ok(), Some(&plain));
        if legacy {
            prop_assert!(matches!(whole, Err(CryptoError::HashMismatch | CryptoError::BadPadding)));
        }
        prop_assert_eq!(&streamed(&f.key, &bad, format, &dec_sizes), &whole);

        // Any byte of the RSA block: OAEP refuses it.
        let mut bad = file.clone();
        bad[flip_at.index(envelope::RSA_BLOCK_LEN)] ^= flip;
        prop_assert_eq!(envelope::decrypt(&f.key, &bad, format), Err(CryptoError::KeyUnwrap));

        // Truncated by a block: too short, bad padding, or a shorter plaintext.
        let short = &file[..file.len() - 16];
        let whole = envelope::decrypt(&f.key, short, format);
        prop_assert_ne!(whole.as_ref().ok(), Some(&plain));
        if short.len() < format.min_len() {
            prop_assert_eq!(&whole, &Err(CryptoError::InvalidFileSize { len: short.len() as u64 }));
        }
        prop_assert_eq!(&streamed(&f.key, short, format, &dec_sizes), &whole);

        // Truncated by a byte: the size rule.
        let short = &file[..file.len() - 1];
        prop_assert_eq!(
            streamed(&f.key, short, format, &dec_sizes),
            Err(CryptoError::InvalidFileSize { len: short.len() as u64 })
        );
    }
}

#[test]
fn wrong_key_is_key_unwrap_for_fresh_files() {
    let f = fixture();
    for format in [Format::Current, Format::Sha512Prefixed] {
        let file = envelope::encrypt(&f.public_spki, &[1u8; 1000], format).unwrap();
        assert_eq!(
            envelope::decrypt(other_key(), &file, format),
            Err(CryptoError::KeyUnwrap)
        );
        assert_eq!(
            streamed(other_key(), &file, format, &[3]),
            Err(CryptoError::KeyUnwrap)
        );
    }
}
