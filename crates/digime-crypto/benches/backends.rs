//! The two backends side by side, in one run: PS512 signing and verification, the
//! RSA-OAEP key unwrap and wrap, and bulk AES-256-CBC and SHA-512, at the sizes the SDK
//! uses them (2048-bit keys, 64 KiB pieces of a 16 MiB file).
//!
//! ```text
//! cargo bench -p digime-crypto --features rustcrypto --bench backends
//! ```
//!
//! Each operation is timed in alternating rounds, one backend then the other, and
//! each side's median is kept, so that a noisy machine slows both alike; the last
//! column, the ratio, is the figure to read. Prints a Markdown table (the one in the
//! crate's README).

use digime_crypto::__backends::{aws_lc as a, rust_crypto as r};
use std::hint::black_box;
use std::time::{Duration, Instant};

const ROUNDS: usize = 9;
/// Each measurement runs the operation for at least this long.
const MIN_TIME: Duration = Duration::from_millis(150);
const FILE_LEN: usize = 16 << 20;
const CHUNK: usize = 64 << 10;

/// Seconds per call of `f`.
fn time_per_call(f: &mut dyn FnMut()) -> f64 {
    f();
    let mut calls = 1u64;
    loop {
        let start = Instant::now();
        for _ in 0..calls {
            f();
        }
        let took = start.elapsed();
        if took >= MIN_TIME {
            return took.as_secs_f64() / calls as f64;
        }
        calls *= 2;
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One row: the name, and per call, the aws-lc-rs and rustcrypto medians.
fn row(name: &str, bytes: Option<usize>, aws: &mut dyn FnMut(), rust: &mut dyn FnMut()) {
    let (mut ta, mut tr) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ta.push(time_per_call(aws));
        tr.push(time_per_call(rust));
    }
    let (ta, tr) = (median(ta), median(tr));
    let show = |t: f64| match bytes {
        Some(n) => format!("{:.0} MiB/s", n as f64 / t / (1 << 20) as f64),
        None if t < 1e-3 => format!("{:.1} µs", t * 1e6),
        None => format!("{:.3} ms", t * 1e3),
    };
    println!("| {name} | {} | {} | {:.2}× |", show(ta), show(tr), tr / ta);
}

fn cbc_encrypt_a(key: &[u8; 32], iv: &[u8; 16], plain: &[u8], out: &mut [u8]) -> usize {
    let mut enc = a::CbcEncrypt::new(key, iv).unwrap();
    let mut n = 0;
    for piece in plain.chunks(CHUNK) {
        n += enc.update(piece, &mut out[n..]).unwrap();
    }
    n
}

fn cbc_encrypt_r(key: &[u8; 32], iv: &[u8; 16], plain: &[u8], out: &mut [u8]) -> usize {
    let mut enc = r::CbcEncrypt::new(key, iv).unwrap();
    let mut n = 0;
    for piece in plain.chunks(CHUNK) {
        n += enc.update(piece, &mut out[n..]).unwrap();
    }
    n
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and only
    // checks that this runs.
    let quick = !std::env::args().any(|a| a == "--bench");
    let key_a = a::RsaPrivate::generate().unwrap();
    let pkcs1 = key_a.to_pkcs1_der().unwrap();
    let key_r = r::RsaPrivate::from_pkcs1_der(&pkcs1).unwrap();
    let pub_a = a::RsaPublic::from_der(&key_a.public_der()).unwrap();
    let pub_r = r::RsaPublic::from_der(&key_r.public_der()).unwrap();
    let message = vec![b'j'; 600]; // about a request JWT's signing input
    let sig = key_a.sign_ps512(&message).unwrap();
    let wrapped = pub_a.encrypt_oaep_sha1(&[7u8; 32]).unwrap();
    let (key, iv) = ([3u8; 32], [5u8; 16]);
    let plain: Vec<u8> = (0..FILE_LEN).map(|i| (i * 31 + i / 4096) as u8).collect();
    let mut cipher = vec![0u8; FILE_LEN + 16];
    let n = cbc_encrypt_a(&key, &iv, &plain, &mut cipher);
    let (mut out, mut out2) = (vec![0u8; FILE_LEN + 32], vec![0u8; FILE_LEN + 32]);
    if quick {
        // Every operation once, and the two backends agree on the cipher.
        let mut other = vec![0u8; FILE_LEN + 16];
        assert_eq!(cbc_encrypt_r(&key, &iv, &plain, &mut other), n);
        assert_eq!(other[..n], cipher[..n]);
        pub_r
            .verify_ps512(&message, &key_r.sign_ps512(&message).unwrap())
            .unwrap();
        assert_eq!(*key_r.decrypt_oaep_sha1(&wrapped).unwrap(), [7u8; 32]);
        println!("backends: checked (run with `cargo bench` for the figures)");
        return;
    }

    println!("| Operation | aws-lc-rs | rustcrypto | rustcrypto / aws-lc-rs |");
    println!("|---|---|---|---|");
    row(
        "PS512 sign (2048-bit; every API call)",
        None,
        &mut || drop(black_box(key_a.sign_ps512(&message).unwrap())),
        &mut || drop(black_box(key_r.sign_ps512(&message).unwrap())),
    );
    row(
        "PS512 verify (every server JWT)",
        None,
        &mut || pub_a.verify_ps512(&message, black_box(&sig)).unwrap(),
        &mut || pub_r.verify_ps512(&message, black_box(&sig)).unwrap(),
    );
    row(
        "RSA-OAEP-SHA1 unwrap (every file read)",
        None,
        &mut || drop(black_box(key_a.decrypt_oaep_sha1(&wrapped).unwrap())),
        &mut || drop(black_box(key_r.decrypt_oaep_sha1(&wrapped).unwrap())),
    );
    row(
        "RSA-OAEP-SHA1 wrap (every storage upload)",
        None,
        &mut || drop(black_box(pub_a.encrypt_oaep_sha1(&[7u8; 32]).unwrap())),
        &mut || drop(black_box(pub_r.encrypt_oaep_sha1(&[7u8; 32]).unwrap())),
    );
    row(
        "parse a PKCS#1 private key",
        None,
        &mut || drop(black_box(a::RsaPrivate::from_pkcs1_der(&pkcs1).unwrap())),
        &mut || drop(black_box(r::RsaPrivate::from_pkcs1_der(&pkcs1).unwrap())),
    );
    row(
        "AES-256-CBC decrypt, 16 MiB in 64 KiB pieces",
        Some(FILE_LEN),
        &mut || {
            let mut dec = a::CbcDecrypt::new(&key, &iv).unwrap();
            let mut w = 0;
            for piece in cipher[..n].chunks(CHUNK) {
                w += dec.update(piece, &mut out[w..]).unwrap();
            }
            black_box(w);
        },
        &mut || {
            let mut dec = r::CbcDecrypt::new(&key, &iv).unwrap();
            let mut w = 0;
            for piece in cipher[..n].chunks(CHUNK) {
                w += dec.update(piece, &mut out2[w..]).unwrap();
            }
            black_box(w);
        },
    );
    let mut sink = vec![0u8; FILE_LEN + 16];
    let mut sink2 = vec![0u8; FILE_LEN + 16];
    row(
        "AES-256-CBC encrypt, 16 MiB in 64 KiB pieces",
        Some(FILE_LEN),
        &mut || {
            black_box(cbc_encrypt_a(&key, &iv, &plain, &mut sink));
        },
        &mut || {
            black_box(cbc_encrypt_r(&key, &iv, &plain, &mut sink2));
        },
    );
    row(
        "SHA-512, 16 MiB (the SHA-512-prefixed format)",
        Some(FILE_LEN),
        &mut || {
            let mut h = a::Sha512::new();
            h.update(&plain);
            black_box(h.finish());
        },
        &mut || {
            let mut h = r::Sha512::new();
            h.update(&plain);
            black_box(h.finish());
        },
    );
}
