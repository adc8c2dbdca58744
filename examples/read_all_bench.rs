//! Throughput and memory benchmark of `read_all_files` over loopback: an in-process
//! sandbox serves COUNT generated files of SIZE bytes (encrypted and streamed), a
//! driver reads them all into byte-counting sinks, and the process's peak resident
//! memory (client and server together) is printed.
//!
//! ```text
//! cargo run --release -p digime-examples --bin read_all_bench -- 500 65536
//! cargo run --release -p digime-examples --bin read_all_bench -- 10 67108864
//! ```
//!
//! Optional third argument: downloads at once (default 4); fourth: `none` (default),
//! `gzip` or `brotli`; fifth: `blocking` (default) or `async`, the driver that reads.

use digime_blocking::Client;
use digime_protocol::{
    AuthorizeOptions, FileHead, PullOptions, ReadAllEvent, ReadAllOptions, parse_callback,
};
use digime_sandbox::{ConsentMode, Sandbox, SandboxConfig};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[path = "support/bench.rs"]
mod bench;

use bench::peak_rss_kib;

/// Counts bytes, keeps none.
struct Count<'a>(&'a AtomicU64);

impl tokio::io::AsyncWrite for Count<'_> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0.fetch_add(buf.len() as u64, Ordering::Relaxed);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

impl std::io::Write for Count<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let count: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(500);
    let size: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(65536);
    let concurrency: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(4);
    let compression = args.next().unwrap_or_else(|| "none".into());
    let driver = args.next().unwrap_or_else(|| "blocking".into());
    let sandbox = Sandbox::spawn(SandboxConfig {
        consent: ConsentMode::Auto,
        demo_data: false,
        sync_step: Duration::from_millis(1),
        ..Default::default()
    })?;
    let info = sandbox.info();
    let client = Client::new(info.client_config());
    let contract = info.demo.read.contract()?;
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
    let user = token.user_id().ok_or("no user")?;
    ureq::post(format!("{}users/{user}/generate-files", info.control()))
        .content_type("application/json")
        .send(format!(
            r#"{{"count":{count},"size":{size},"compression":"{compression}","prefix":"bench-"}}"#
        ))?;
    // No source fetch: the library is complete at once, so only reading is timed.
    let options = PullOptions {
        source_fetch: Some(false),
        ..Default::default()
    };
    let session = client.read_session(&contract, &token, &options)?.value.key;
    let before = peak_rss_kib().unwrap_or(0);
    let bytes = AtomicU64::new(0);
    let mut files = 0u64;
    let start = Instant::now();
    let options = ReadAllOptions {
        max_concurrency: concurrency,
        ..Default::default()
    };
    let mut on_event = |e| match e {
        ReadAllEvent::File(_) => files += 1,
        ReadAllEvent::FileError { entry, error } => eprintln!("{}: {error}", entry.name),
        _ => {}
    };
    let summary = match driver.as_str() {
        "blocking" => client.read_all_files_to(
            &contract,
            &token,
            &session,
            options,
            |_: &FileHead| Ok(Count(&bytes)),
            &mut on_event,
        )?,
        "async" => {
            let client = digime_async::Client::new(info.client_config());
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let bytes = &bytes;
            runtime.block_on(client.read_all_files_to(
                &contract,
                &token,
                &session,
                options,
                |_: &FileHead| async move { Ok(Count(bytes)) },
                &mut on_event,
            ))?
        }
        other => return Err(format!("no driver {other:?}: blocking or async").into()),
    };
    let secs = start.elapsed().as_secs_f64();
    let total = bytes.load(Ordering::Relaxed);
    println!(
        "{driver}: read {files} files ({compression}) of {size} bytes, {concurrency} at once: {secs:.2} s, {:.0} files/s, {:.0} MiB/s; peak RSS before {} MiB, after {} MiB",
        files as f64 / secs,
        total as f64 / (1 << 20) as f64 / secs,
        before / 1024,
        peak_rss_kib().unwrap_or(0) / 1024
    );
    if files != count || total != count * size || summary.files_failed > 0 {
        return Err(format!(
            "expected {count} files of {size} bytes, got {files} files, {total} bytes"
        )
        .into());
    }
    Ok(())
}
