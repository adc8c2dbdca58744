//! The data-file envelope: AES-256-CBC throughput (incremental and whole buffer, both
//! directions) and the RSA-OAEP key unwrap. Compare with
//! `openssl speed -evp aes-256-cbc -decrypt` and `openssl speed rsa2048` (private op).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use digime_crypto::PrivateKey;
use digime_crypto::envelope::{self, Decryptor, Encryptor, Format};
use std::hint::black_box;
use std::time::Duration;

const FILE_LEN: usize = 64 << 20;
const CHUNK: usize = 64 << 10;

fn plaintext() -> Vec<u8> {
    // Not all-equal bytes, so nothing can shortcut; content does not matter to AES.
    (0..FILE_LEN).map(|i| (i * 31 + i / 4096) as u8).collect()
}

fn envelope_benches(c: &mut Criterion) {
    let key = PrivateKey::generate().unwrap();
    let public = key.public_key();
    let plain = plaintext();
    let file = envelope::encrypt(&public, &plain, Format::Current).unwrap();
    assert_eq!(
        envelope::decrypt(&key, &file, Format::Current).unwrap(),
        plain
    );

    let mut group = c.benchmark_group("envelope");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Bytes(file.len() as u64));

    group.bench_function("decrypt 64 MiB, Decryptor, 64 KiB chunks", |b| {
        let mut out = Vec::with_capacity(CHUNK + 16);
        b.iter(|| {
            let mut decryptor = Decryptor::new(&key, Format::Current);
            let mut total = 0usize;
            for chunk in file.chunks(CHUNK) {
                out.clear();
                decryptor.update(chunk, &mut out).unwrap();
                total += black_box(&out).len();
            }
            out.clear();
            decryptor.finish(&mut out).unwrap();
            total + out.len()
        })
    });

    group.bench_function("decrypt 64 MiB, whole buffer", |b| {
        b.iter(|| envelope::decrypt(&key, black_box(&file), Format::Current).unwrap())
    });

    // The whole-buffer figure includes a fresh 64 MiB output allocation (page faults on
    // first touch); these two show that part alone, and the same decryption into a
    // reused vector.
    group.bench_function("baseline: fresh 64 MiB vector, first touch", |b| {
        b.iter(|| {
            let mut v = vec![0u8; file.len()];
            for i in (0..v.len()).step_by(4096) {
                v[i] = 1;
            }
            black_box(v)
        })
    });

    group.bench_function("decrypt 64 MiB, one update into a reused vector", |b| {
        let mut out = Vec::with_capacity(file.len() + 16);
        b.iter(|| {
            out.clear();
            let mut decryptor = Decryptor::new(&key, Format::Current);
            decryptor.update(black_box(&file), &mut out).unwrap();
            decryptor.finish(&mut out).unwrap();
            out.len()
        })
    });

    group.throughput(Throughput::Bytes(plain.len() as u64));
    group.bench_function("encrypt 64 MiB, Encryptor, 64 KiB chunks", |b| {
        let mut out = Vec::with_capacity(envelope::HEADER_LEN + CHUNK + 16);
        b.iter(|| {
            let mut encryptor = Encryptor::new(&public, Format::Current).unwrap();
            let mut total = 0usize;
            for chunk in plain.chunks(CHUNK) {
                out.clear();
                encryptor.update(chunk, &mut out).unwrap();
                total += black_box(&out).len();
            }
            out.clear();
            encryptor.finish(&mut out).unwrap();
            total + out.len()
        })
    });

    group.bench_function("encrypt 64 MiB, whole buffer", |b| {
        b.iter(|| envelope::encrypt(&public, black_box(&plain), Format::Current).unwrap())
    });
    group.finish();

    let mut group = c.benchmark_group("envelope key");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    let block = &file[..envelope::RSA_BLOCK_LEN];
    group.bench_function("unwrap DEK (RSA-2048 OAEP-SHA1 decrypt)", |b| {
        b.iter(|| key.decrypt_oaep_sha1(black_box(block)).unwrap())
    });
    group.bench_function("wrap DEK (RSA-2048 OAEP-SHA1 encrypt)", |b| {
        b.iter(|| public.encrypt_oaep_sha1(black_box(&[7u8; 32])).unwrap())
    });
    group.finish();
}

criterion_group!(benches, envelope_benches);
criterion_main!(benches);
