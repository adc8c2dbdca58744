//! The data-file envelope: `digime_crypto::envelope::Decryptor` on arbitrary bytes cut
//! into arbitrary pieces, checked against whole-buffer `envelope::decrypt`.
//!
//! Input layout: byte 0 picks the format (bit 0), whether a valid header from the test
//! vectors is put in front of the rest (bit 1, so the AES, padding and SHA-512 paths are
//! reached, which random RSA blocks never unwrap to), and whether the rest is instead
//! encrypted and decrypted again as a round trip (bit 2); bits 3-4 give the number (1-4)
//! of piece-length bytes that follow, each scaled by bits 5-7.
#![no_main]

use digime_crypto::PrivateKey;
use digime_crypto::envelope::{self, Decryptor, Format, HEADER_LEN};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const VECTORS: &str = include_str!("../../fixtures/generated/read-crypto-vectors.json");

struct Fixture {
    key: PrivateKey,
    /// Valid headers (RSA block and IV): current format, then SHA-512-prefixed.
    headers: [Vec<u8>; 2],
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let json: serde_json::Value = serde_json::from_str(VECTORS).expect("vectors parse");
        let pem = json["rsaPrivateKeyPkcs1Pem"].as_str().expect("key present");
        let header = |name: &str| -> Vec<u8> {
            let v = json["vectors"]
                .as_array()
                .expect("vectors")
                .iter()
                .find(|v| v["name"] == name)
                .expect("vector present");
            let hex = v["fileHex"].as_str().expect("fileHex");
            (0..HEADER_LEN * 2)
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                .collect()
        };
        Fixture {
            key: PrivateKey::from_pem(pem).expect("test key parses"),
            headers: [header("mapped-uncompressed"), header("legacy-sha512-prefixed")],
        }
    })
}

fn streamed(
    key: &PrivateKey,
    file: &[u8],
    format: Format,
    sizes: &[usize],
) -> Result<Vec<u8>, digime_crypto::CryptoError> {
    let mut decryptor = Decryptor::new(key, format);
    let mut out = Vec::new();
    let mut rest = file;
    let mut result = Ok(());
    for (i, &n) in sizes.iter().cycle().enumerate() {
        if rest.is_empty() || result.is_err() {
            break;
        }
        // Zero-length pieces are fed too, but never forever.
        let n = if i > 64 { rest.len() } else { n.min(rest.len()) };
        let (piece, tail) = rest.split_at(n);
        result = decryptor.update(piece, &mut out);
        rest = tail;
    }
    if let Err(e) = result {
        // An error sticks: later calls fail too, and never panic.
        assert!(decryptor.update(&[1, 2, 3], &mut out).is_err());
        assert!(decryptor.update(&[], &mut out).is_err());
        assert!(decryptor.finish(&mut out).is_err());
        return Err(e);
    }
    assert_eq!(decryptor.bytes_in(), file.len() as u64);
    decryptor.finish(&mut out).map(|()| out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let format = if control & 1 == 0 {
        Format::Current
    } else {
        Format::Sha512Prefixed
    };
    let count = 1 + ((control >> 3) & 3) as usize;
    if rest.len() < count {
        return;
    }
    let (size_bytes, body) = rest.split_at(count);
    let scale = [1usize, 1, 3, 16, 17, 64, 272, 4096][(control >> 5) as usize];
    let sizes: Vec<usize> = size_bytes.iter().map(|&b| b as usize * scale).collect();
    let f = fixture();

    if control & 4 != 0 {
        // Round trip of the body as plaintext.
        let file = envelope::encrypt(&f.key.public_key(), body, format).expect("encrypts");
        assert_eq!(
            file.len() as u64,
            envelope::encrypted_len(body.len() as u64, format)
        );
        let out = streamed(&f.key, &file, format, &sizes).expect("own file decrypts");
        assert_eq!(out, body);
        return;
    }

    let file = if control & 2 != 0 {
        let header = &f.headers[(control & 1) as usize];
        [header.as_slice(), body].concat()
    } else {
        body.to_vec()
    };
    let whole = envelope::decrypt(&f.key, &file, format);
    let stream = streamed(&f.key, &file, format, &sizes);
    match (&whole, &stream) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(_), Err(_)) => {}
        _ => panic!("whole buffer {whole:?} but streamed {stream:?}"),
    }
    if let Ok(plain) = &whole {
        assert!(format.is_valid_len(file.len() as u64));
        assert!(plain.len() < file.len() - HEADER_LEN);
    }
    if !format.is_valid_len(file.len() as u64) {
        assert_eq!(
            whole,
            Err(digime_crypto::CryptoError::InvalidFileSize {
                len: file.len() as u64
            })
        );
    }
});
