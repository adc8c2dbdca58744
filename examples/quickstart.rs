//! The write guide, end to end: authorize, follow the consent redirect, exchange the
//! code, push a file, and show that the user's library holds exactly those bytes; then,
//! as the guide's last step says, authorize a read contract with the same user's token,
//! read all files, and show that the pushed file comes back identical.
//!
//! With no environment it starts an embedded sandbox and runs offline:
//!
//! ```text
//! cargo run -p digime-examples --bin quickstart
//! ```
//!
//! Against the real digi.me API, give your application and write contract (and, to
//! read back, a read contract of the same application):
//!
//! ```text
//! DIGIME_APPLICATION_ID=... DIGIME_CONTRACT_ID=... DIGIME_PRIVATE_KEY=path/to/key.pem \
//! [DIGIME_READ_CONTRACT_ID=... DIGIME_READ_PRIVATE_KEY=path/to/read-key.pem] \
//! DIGIME_CALLBACK=https://your.app/return cargo run -p digime-examples --bin quickstart
//! ```
//! It then prints the authorization URL and asks you to paste the URL the browser
//! was sent back to. The token ends up in `DIGIME_TOKEN_FILE` (`digime-token.json` by
//! default), readable by you alone; nothing secret is printed.

#[path = "support/mod.rs"]
mod support;

use digime_blocking::Client;
use digime_protocol::read::FileMetadata;
use digime_protocol::{
    AuthorizeOptions, Config, Contract, FileData, FileDescriptor, PullOptions, ReadAllEvent,
    ReadAllOptions, UserAccessToken, parse_callback,
};
use digime_sandbox::{ConsentMode, Sandbox, SandboxConfig};
use std::error::Error;
use std::io::{BufRead, Cursor};

const FILE: &[u8] = br#"{"receipt":42,"total":12.5,"currency":"EUR"}"#;

fn main() -> Result<(), Box<dyn Error>> {
    match std::env::var("DIGIME_APPLICATION_ID") {
        Ok(app) => real_service(&app),
        Err(_) => offline(),
    }
}

fn descriptor() -> FileDescriptor {
    let mut d = FileDescriptor::new("application/json");
    d.reference = Some(vec!["receipt-42.json".into()]);
    d.tags = Some(vec!["receipt".into()]);
    d
}

fn offline() -> Result<(), Box<dyn Error>> {
    println!("Starting an embedded digi.me sandbox…");
    let sandbox = Sandbox::spawn(SandboxConfig {
        consent: ConsentMode::Auto,
        ..Default::default()
    })?;
    let info = sandbox.info();
    println!("  API     {}", info.api);
    println!("  onboard {}", info.onboard);

    let config = info.client_config();
    let client = Client::new(config);
    let contract = info.demo.write.contract()?;

    // 1. The authorization URL and the code verifier to keep.
    let state = "user-42";
    let callback = "http://localhost:8080/return";
    let auth = client.authorize_url(&contract, callback, state, AuthorizeOptions::default())?;
    println!("\n1. Authorization URL: {}", support::redacted(&auth.url));

    // 2. The browser: the sandbox consents and redirects back to the callback.
    let browser = ureq::Agent::config_builder()
        .max_redirects(0)
        .max_redirects_will_error(false)
        .http_status_as_error(false)
        .build()
        .new_agent();
    let response = browser.get(&auth.url).call()?;
    let redirect = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or("the onboard page did not redirect")?
        .to_owned();
    println!("2. Redirected back to: {}", support::redacted(&redirect));
    let callback = parse_callback(&redirect)?.verify_state(state)?;

    // 3. Code + verifier → user access token.
    let token = client.exchange_code_for_token(&contract, &callback.code, &auth.code_verifier)?;
    let user = token.user_id().ok_or("no user id in the token")?.to_owned();
    println!(
        "3. Token for user {user} (access token expires at {})",
        token.access_token.expiry
    );

    // 4. Push a file.
    let pushed = client.push_to_library(&contract, &token, &descriptor(), Cursor::new(FILE))?;
    // A refresh spends the old token: go on with the new one.
    let token = pushed.refreshed_token.clone().unwrap_or(token);
    if pushed.refreshed_token.is_some() {
        println!("   (the token was refreshed; persist the new one)");
    }
    println!("4. Pushed {} bytes", FILE.len());

    // 5. What the library holds, through the sandbox's control API.
    let control = info.control();
    let listing: serde_json::Value = serde_json::from_slice(
        &browser
            .get(format!("{control}users/{user}/files"))
            .call()?
            .body_mut()
            .read_to_vec()?,
    )?;
    let file = &listing["files"][0];
    let id = file["id"].as_str().ok_or("the library is empty")?;
    let stored = browser
        .get(format!("{control}users/{user}/files/{id}"))
        .call()?
        .body_mut()
        .read_to_vec()?;
    println!(
        "5. The library holds file {id}: {} bytes, descriptor {}",
        stored.len(),
        file["descriptor"]
    );
    if stored != FILE {
        return Err("the stored bytes differ from the pushed ones".into());
    }
    println!("   OK: the user's library holds exactly the bytes that were pushed.");

    // 6. The read contract, authorized with the same user's token: same library.
    let read = info.demo.read.contract()?;
    let options = AuthorizeOptions {
        user_access_token: Some(token.clone()),
        ..Default::default()
    };
    let auth = client.authorize_url(&read, "http://localhost:8080/return", state, options)?;
    let redirect = browser
        .get(&auth.url)
        .call()?
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or("the onboard page did not redirect")?
        .to_owned();
    let callback = parse_callback(&redirect)?.verify_state(state)?;
    let read_token = client.exchange_code_for_token(&read, &callback.code, &auth.code_verifier)?;
    println!(
        "6. Read contract authorized for user {}",
        read_token.user_id().unwrap_or("?")
    );

    // 7. Read everything back.
    let found = read_back(&client, &read, &read_token)?;
    if found != FILE {
        return Err("the file read back differs from the pushed one".into());
    }
    println!("\nOK: the file read back with the read contract is identical to the one pushed.");
    Ok(())
}

/// Opens a read session, reads all files, and returns the pushed receipt's bytes.
fn read_back(
    client: &Client,
    read: &Contract,
    token: &UserAccessToken,
) -> Result<Vec<u8>, Box<dyn Error>> {
    let opened = client.read_session(read, token, &PullOptions::default())?;
    let session = opened.value;
    // If opening the session refreshed the token, the old one is spent.
    let token = &opened.refreshed_token.unwrap_or_else(|| token.clone());
    println!("7. Read session opened — syncing…");
    let mut receipt = None;
    let options = ReadAllOptions {
        poll_interval: std::time::Duration::from_millis(500),
        ..Default::default()
    };
    let summary =
        client.read_all_files(read, token, &session.key, options, |event| match event {
            ReadAllEvent::StatusChanged(status) => println!("   sync {}", status.state),
            ReadAllEvent::File(FileData { head, data }) => {
                let what = match &head.metadata {
                    FileMetadata::Mapped(m) => {
                        format!("{} {} of {}", m.object_count, m.object_type, m.service_name)
                    }
                    FileMetadata::Raw(r) => format!("raw {}", r.mimetype),
                };
                println!("   {:<40} {:>8} bytes  {what}", head.name, data.len());
                if let FileMetadata::Raw(r) = &head.metadata
                    && r.reference.as_deref() == Some(&["receipt-42.json".to_string()][..])
                {
                    receipt = Some(data);
                }
            }
            ReadAllEvent::FileError { entry, error } => println!("   {}: {error}", entry.name),
            ReadAllEvent::TokenRefreshed(_) => println!("   (token refreshed; persist it)"),
            _ => {}
        })?;
    println!(
        "   {} files read, {} failed; sync {}",
        summary.files_read, summary.files_failed, summary.status.state
    );
    receipt.ok_or_else(|| "the pushed file was not among the files read".into())
}

fn real_service(app: &str) -> Result<(), Box<dyn Error>> {
    let contract_id = std::env::var("DIGIME_CONTRACT_ID")?;
    let key_path = std::env::var("DIGIME_PRIVATE_KEY")?;
    let callback =
        std::env::var("DIGIME_CALLBACK").unwrap_or_else(|_| "http://localhost:8080/return".into());
    let mut config = Config::new(app)?;
    if let Ok(base) = std::env::var("DIGIME_BASE_URL") {
        config = config.with_base_url(&base)?;
    }
    if let Ok(onboard) = std::env::var("DIGIME_ONBOARD_URL") {
        config = config.with_onboard_url(&onboard)?;
    }
    let client = Client::new(config);
    let contract = Contract::from_pem(contract_id, &std::fs::read_to_string(key_path)?)?;
    let state = digime_crypto::random::alphanumeric(24)?;
    let auth = client.authorize_url(&contract, &callback, &state, AuthorizeOptions::default())?;
    println!(
        "Open this URL in a browser and complete the authorization:\n\n  {}\n",
        auth.url
    );
    println!("Then paste the URL you were sent back to:");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let cb = parse_callback(line.trim())?.verify_state(&state)?;
    let token = client.exchange_code_for_token(&contract, &cb.code, &auth.code_verifier)?;
    let pushed = client.push_to_library(&contract, &token, &descriptor(), Cursor::new(FILE))?;
    // A refresh spends the old token: go on with (and persist) the new one.
    let token = pushed.refreshed_token.unwrap_or(token);
    println!(
        "Pushed {} bytes into the library of user {:?}.",
        FILE.len(),
        token.user_id()
    );
    if let (Ok(read_id), Ok(read_key)) = (
        std::env::var("DIGIME_READ_CONTRACT_ID"),
        std::env::var("DIGIME_READ_PRIVATE_KEY"),
    ) {
        let read = Contract::from_pem(read_id, &std::fs::read_to_string(read_key)?)?;
        let options = AuthorizeOptions {
            user_access_token: Some(token.clone()),
            ..Default::default()
        };
        let auth = client.authorize_url(&read, &callback, &state, options)?;
        println!(
            "Now authorize the read contract:\n\n  {}\n\nThen paste the URL you were sent back to:",
            auth.url
        );
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let cb = parse_callback(line.trim())?.verify_state(&state)?;
        let read_token = client.exchange_code_for_token(&read, &cb.code, &auth.code_verifier)?;
        let found = read_back(&client, &read, &read_token)?;
        println!(
            "Read back {} bytes: {}",
            found.len(),
            if found == FILE {
                "identical"
            } else {
                "DIFFERENT"
            }
        );
    }
    let path = std::env::var("DIGIME_TOKEN_FILE").unwrap_or_else(|_| "digime-token.json".into());
    support::write_private(path.as_ref(), serde_json::to_string(&token)?.as_bytes())?;
    println!("The token is in {path} (readable by you alone): keep it to write again later.");
    Ok(())
}
