//! Memory benchmark of storage: uploads a body of 1 GiB, generated on the fly, through
//! the blocking driver into an in-process sandbox (encrypted as it streams), downloads
//! it again (decrypted as it streams) into a sink that checks every byte, and prints
//! the process's peak resident memory (client and server together) after each leg,
//! and the time of each leg next to a library push of the same size in the same run.
//! Target: under 64 MiB.
//!
//! ```text
//! cargo run --release -p digime-examples --bin storage_1gib [-- SIZE_MIB]
//! ```

use digime_blocking::Client;
use digime_protocol::{AuthorizeOptions, FileDescriptor, parse_callback};
use digime_sandbox::{ConsentMode, Sandbox, SandboxConfig};
use std::io::Write;
use std::time::Instant;

#[path = "support/bench.rs"]
mod bench;

use bench::{Pattern, byte_at, peak_rss_kib};

/// Checks that what is written is the pattern, byte for byte.
struct Check {
    pos: u64,
    bad: bool,
}

impl Write for Check {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for (i, b) in buf.iter().enumerate() {
            self.bad |= *b != byte_at(self.pos + i as u64);
        }
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn peak_rss_mib() -> u64 {
    peak_rss_kib().unwrap_or(0) / 1024
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mib: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1024);
    let len = mib << 20;
    let sandbox = Sandbox::spawn(SandboxConfig {
        consent: ConsentMode::Auto,
        ..Default::default()
    })?;
    let info = sandbox.info();
    let client = Client::new(info.client_config());
    let contract = info.demo.write.contract()?;
    let storage = client.create_provisional_storage(&contract)?;
    let before = peak_rss_mib();

    let start = Instant::now();
    client.upload_storage_file(
        &contract,
        &storage.id,
        "/bench",
        "big.bin",
        Pattern { pos: 0, len },
    )?;
    let up = start.elapsed().as_secs_f64();
    let after_up = peak_rss_mib();

    let start = Instant::now();
    let mut check = Check { pos: 0, bad: false };
    client.download_storage_file(&contract, &storage.id, "/bench/big.bin", &mut check)?;
    let down = start.elapsed().as_secs_f64();
    let after_down = peak_rss_mib();
    if check.bad || check.pos != len {
        return Err(format!(
            "downloaded {} bytes, {} the pattern",
            check.pos,
            if check.bad { "not" } else { "all" }
        )
        .into());
    }
    client.delete_storage_files(&contract, &storage.id, "/bench/")?;

    // The peer in the same run: a library push of the same size (not encrypted).
    let auth = client.authorize_url(
        &contract,
        "http://localhost/cb",
        "s",
        AuthorizeOptions::default(),
    )?;
    let browser = ureq::Agent::config_builder()
        .max_redirects(0)
        .max_redirects_will_error(false)
        .build()
        .new_agent();
    let r = browser.get(&auth.url).call()?;
    let cb = parse_callback(r.headers()["location"].to_str()?)?;
    let token = client.exchange_code_for_token(&contract, &cb.code, &auth.code_verifier)?;
    let start = Instant::now();
    let descriptor = FileDescriptor::new("application/octet-stream");
    client.push_to_library(&contract, &token, &descriptor, Pattern { pos: 0, len })?;
    let push = start.elapsed().as_secs_f64();

    println!(
        "{mib} MiB: upload {up:.2} s ({:.0} MiB/s), download {down:.2} s ({:.0} MiB/s), \
         library push {push:.2} s (upload/push {:.2}x); peak RSS before {before} MiB, \
         after upload {after_up} MiB, after download {after_down} MiB (target < 64 MiB)",
        mib as f64 / up,
        mib as f64 / down,
        up / push
    );
    Ok(())
}
