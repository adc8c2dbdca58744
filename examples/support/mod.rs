//! Shared by the postbox examples: the embedded sandbox, a "browser" that follows one
//! redirect, and a look into the user's library through the sandbox's control API.

#![allow(dead_code)]

use digime_sandbox::{BackgroundSandbox, ConsentMode, Sandbox, SandboxConfig};
use std::error::Error;

pub type Result<T> = std::result::Result<T, Box<dyn Error>>;

pub fn sandbox() -> Result<BackgroundSandbox> {
    println!("Starting an embedded digi.me sandbox…");
    Ok(Sandbox::spawn(SandboxConfig {
        consent: ConsentMode::Auto,
        ..Default::default()
    })?)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .max_redirects(0)
        .max_redirects_will_error(false)
        .http_status_as_error(false)
        .build()
        .new_agent()
}

/// Opens `url` and returns where it redirects (the consent page, or the native app).
pub fn follow(url: &str) -> Result<String> {
    let r = agent().get(url).call()?;
    Ok(r.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| format!("{url} did not redirect (status {})", r.status()))?
        .to_owned())
}

/// POSTs JSON to the control API.
pub fn control_post(
    sandbox: &BackgroundSandbox,
    path: &str,
    body: &str,
) -> Result<serde_json::Value> {
    let mut r = agent()
        .post(format!("{}{path}", sandbox.info().control()))
        .content_type("application/json")
        .send(body)?;
    Ok(serde_json::from_slice(&r.body_mut().read_to_vec()?)?)
}

/// The files pushed into `user`'s library: (name, descriptor, bytes).
pub fn library(
    sandbox: &BackgroundSandbox,
    user: &str,
) -> Result<Vec<(String, serde_json::Value, Vec<u8>)>> {
    let control = sandbox.info().control();
    let mut r = agent().get(format!("{control}users/{user}/files")).call()?;
    let listing: serde_json::Value = serde_json::from_slice(&r.body_mut().read_to_vec()?)?;
    let mut out = Vec::new();
    for f in listing["files"].as_array().into_iter().flatten() {
        let name = f["id"]
            .as_str()
            .or(f["name"].as_str())
            .unwrap_or_default()
            .to_owned();
        let bytes = agent()
            .get(format!("{control}users/{user}/files/{name}"))
            .call()?
            .body_mut()
            .read_to_vec()?;
        out.push((name, f["descriptor"].clone(), bytes));
    }
    Ok(out)
}

/// Prints the library and checks it holds exactly `expected` (each once).
pub fn show_library(sandbox: &BackgroundSandbox, user: &str, expected: &[&[u8]]) -> Result<()> {
    let files = library(sandbox, user)?;
    println!(
        "The library of user {user} holds {} pushed file(s):",
        files.len()
    );
    for (name, descriptor, bytes) in &files {
        println!("  {name}: {} bytes, {descriptor}", bytes.len());
    }
    for want in expected {
        if !files.iter().any(|(_, _, b)| b == want) {
            return Err("a pushed file is missing from the library".into());
        }
    }
    println!("OK: the library holds exactly the bytes that were pushed.");
    Ok(())
}
