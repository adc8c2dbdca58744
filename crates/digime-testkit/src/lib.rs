//! The harness shared by the test suites of `digime-blocking` and `digime-async`
//! (dev-only, never published).
//!
//! Scope: what both drivers' suites need and that has nothing to do with either
//! driver:
//! * [`scripted`]: a raw HTTP/1.1 server that answers a script of responses and hands
//!   back every request it received ([`scripted::Captured`]), byte for byte, for the
//!   tests that check what goes on the wire (lengths, rewinds, re-signing);
//! * [`drain`]: a keep-alive HTTP/1.1 server that reads every request body and answers
//!   `201`, the "sink" baseline of the push benchmark;
//! * [`fixtures`]: tokens, contracts, server-signed token answers, the postbox push
//!   scenario, patterned bodies and small helpers over read-all events;
//! * [`control`]: a blocking client of the sandbox's control API and its browser
//!   (consent) pages, for suites that run the sandbox on its own thread, and
//!   [`control::AsyncControl`], the same calls for async tests (each on tokio's
//!   blocking pool, so a sandbox on the test's runtime keeps serving);
//! * `browser` (feature `browser`): headless Chromium over WebDriver, for the
//!   real-browser tests of the CLI and the web app.
//!
//! Out: anything that drives a flow. Each driver's suite keeps its IO concerns
//! (streaming, rewind, sinks, stalls, stop) and runs them through its own `Client`.
//!
//! The benchmark `examples/push_bench.rs` pushes through both drivers against one
//! embedded sandbox and against [`drain`], and prints MiB/s and the peak RSS.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "browser")]
pub mod browser;
pub mod control;
pub mod drain;
pub mod fixtures;
pub mod scripted;
