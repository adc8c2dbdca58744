//! Push throughput of both drivers, in one process: COUNT pushes of SIZE MiB (a
//! pattern generated as it is read, never held in memory) through `digime-blocking`
//! and `digime-async`, into one embedded sandbox (which hashes and stores each file)
//! and into a drain server that only reads the bodies (the client's cost alone).
//! Prints MiB/s per driver and target, then the process's peak RSS (VmHWM: client,
//! sandbox and drain together).
//!
//! ```text
//! cargo run --release -p digime-testkit --example push_bench [-- SIZE_MIB [COUNT]]
//! ```

use digime_protocol::{
    AuthorizeOptions, Config, Contract, FileDescriptor, UserAccessToken, parse_callback,
};
use digime_sandbox::{ConsentMode, Sandbox, SandboxConfig};
use digime_testkit::{control::Control, drain, fixtures};
use std::io::SeekFrom;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

/// [`fixtures::Pattern`] as an `AsyncRead + AsyncSeek`.
struct AsyncPattern(fixtures::Pattern);

impl tokio::io::AsyncRead for AsyncPattern {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.0.fill(buf.initialize_unfilled());
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncSeek for AsyncPattern {
    fn start_seek(mut self: Pin<&mut Self>, to: SeekFrom) -> std::io::Result<()> {
        self.0.pos = self.0.target(to)?.min(self.0.len);
        Ok(())
    }
    fn poll_complete(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<u64>> {
        Poll::Ready(Ok(self.0.pos))
    }
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn report(driver: &str, target: &str, len: u64, times: &[f64]) {
    let mib = len as f64 / (1 << 20) as f64;
    let best = times.iter().cloned().fold(f64::INFINITY, f64::min);
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    println!(
        "{driver:<8} -> {target:<7} {n} x {mib:.0} MiB: mean {mean:.3} s ({:.0} MiB/s), best {best:.3} s ({:.0} MiB/s)",
        mib / mean,
        mib / best,
        n = times.len(),
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mib: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(64);
    let count: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(4);
    let len = mib << 20;

    let sandbox = Sandbox::spawn(SandboxConfig {
        consent: ConsentMode::Auto,
        ..Default::default()
    })?;
    let info = sandbox.info();
    let contract = info.demo.write.contract()?;
    let blocking = digime_blocking::Client::new(info.client_config());
    let auth = blocking.authorize_url(
        &contract,
        "http://localhost/cb",
        "s",
        AuthorizeOptions::default(),
    )?;
    let cb = parse_callback(&Control::new(info).browse(&auth.url))?;
    let token = blocking.exchange_code_for_token(&contract, &cb.code, &auth.code_verifier)?;
    let descriptor = FileDescriptor::new("application/octet-stream");

    let drain = drain::start()?;
    let drain_config = Config::new("bench")?.with_base_url(&drain.base)?;
    let drain_contract = fixtures::contract("bench");
    let drain_token = fixtures::token("a", 4_000_000_000, "r", 4_000_000_000);

    let targets: [(&str, Config, &Contract, &UserAccessToken); 2] = [
        ("sandbox", info.client_config(), &contract, &token),
        ("drain", drain_config, &drain_contract, &drain_token),
    ];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    for (target, config, contract, token) in &targets {
        let client = digime_blocking::Client::new(config.clone());
        let mut times = Vec::new();
        for _ in 0..count {
            let start = Instant::now();
            client.push_to_library(contract, token, &descriptor, fixtures::Pattern::new(len))?;
            times.push(start.elapsed().as_secs_f64());
        }
        report("blocking", target, len, &times);

        let client = rt.block_on(async { digime_async::Client::new(config.clone()) });
        let mut times = Vec::new();
        for _ in 0..count {
            let start = Instant::now();
            rt.block_on(client.push_to_library(
                contract,
                token,
                &descriptor,
                AsyncPattern(fixtures::Pattern::new(len)),
            ))?;
            times.push(start.elapsed().as_secs_f64());
        }
        report("async", target, len, &times);
    }
    println!("peak RSS (VmHWM) {:.1} MiB", peak_rss_mib());
    Ok(())
}
