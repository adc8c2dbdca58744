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

/// `url` with every query value elided (`?code=…&state=…`): what an example prints of
/// a URL that carries an authorization code, a session key or a token.
pub fn redacted(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let names: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((name, _)) => format!("{name}=…"),
            None => p.to_owned(),
        })
        .collect();
    format!("{base}?{}", names.join("&"))
}

/// Writes a secret (a token's JSON) to `path` as the SDKs' users should: readable by
/// its owner only (mode 0600 on Unix), and atomically, through a file beside it that
/// is renamed over it, so a crash never leaves half a token.
pub fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = path.file_name().ok_or(std::io::ErrorKind::InvalidInput)?;
    let temp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&temp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    match written.and_then(|()| std::fs::rename(&temp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_values_and_keep_their_names() {
        assert_eq!(
            redacted("http://h/cb?success=true&code=AUTH_x&state=s"),
            "http://h/cb?success=…&code=…&state=…"
        );
        assert_eq!(redacted("http://h/page"), "http://h/page");
        assert_eq!(redacted("app://x?flag&k=v"), "app://x?flag&k=…");
    }

    #[test]
    fn private_files_are_the_owners_alone_and_replace_the_old_one() {
        let dir = std::env::temp_dir().join(format!("digime-ex-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token.json");
        write_private(&path, b"old").unwrap();
        write_private(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Nothing is left beside it.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
