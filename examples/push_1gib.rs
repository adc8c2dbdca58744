//! Memory benchmark: pushes a 1 GiB body, generated on the fly, through the blocking
//! driver into an in-process sandbox, then prints the process's peak resident memory
//! (client and server together). Target: under 64 MiB.
//!
//! ```text
//! cargo run --release -p digime-examples --bin push_1gib [-- SIZE_MIB]
//! ```

use digime_blocking::Client;
use digime_protocol::{AuthorizeOptions, FileDescriptor, parse_callback};
use digime_sandbox::{ConsentMode, Sandbox, SandboxConfig};
use std::io::{Read, Seek, SeekFrom};
use std::time::Instant;

/// `len` bytes of a repeating pattern, never held in memory.
struct Pattern {
    pos: u64,
    len: u64,
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (self.len - self.pos).min(buf.len() as u64) as usize;
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = ((self.pos + i as u64) % 251) as u8;
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Pattern {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        // The driver seeks to the end for the length, then back to the start.
        self.pos = match to {
            SeekFrom::Start(p) => p,
            SeekFrom::End(d) => self.len.saturating_add_signed(d),
            SeekFrom::Current(d) => self.pos.saturating_add_signed(d),
        }
        .min(self.len);
        Ok(self.pos)
    }
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mib: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1024);
    let sandbox = Sandbox::spawn(SandboxConfig {
        consent: ConsentMode::Auto,
        ..Default::default()
    })?;
    let info = sandbox.info();
    let config = info.client_config();
    let client = Client::new(config);
    let contract = info.demo.write.contract()?;
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
    let before = peak_rss_kib().unwrap_or(0);
    let len = mib << 20;
    let start = Instant::now();
    client.push_to_library(
        &contract,
        &token,
        &FileDescriptor::new("application/octet-stream"),
        Pattern { pos: 0, len },
    )?;
    let secs = start.elapsed().as_secs_f64();
    let user = token.user_id().ok_or("no user")?;
    let mut listing = browser
        .get(format!("{}users/{user}/files", info.control()))
        .call()?;
    let listing: serde_json::Value = serde_json::from_slice(&listing.body_mut().read_to_vec()?)?;
    let stored = listing["files"][0]["size"].as_u64().unwrap_or(0);
    println!(
        "pushed {mib} MiB in {secs:.2} s ({:.0} MiB/s); stored {stored} bytes; peak RSS before push {} MiB, after {} MiB",
        mib as f64 / secs,
        before / 1024,
        peak_rss_kib().unwrap_or(0) / 1024
    );
    if stored != len {
        return Err("stored size differs".into());
    }
    Ok(())
}
