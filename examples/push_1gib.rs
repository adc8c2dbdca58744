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
use std::time::Instant;

#[path = "support/bench.rs"]
mod bench;

use bench::{Pattern, peak_rss_kib};

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
