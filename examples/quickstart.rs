//! The write guide, end to end: authorize, follow the consent redirect, exchange the
//! code, push a file, and show that the user's library holds exactly those bytes.
//!
//! With no environment it starts an embedded sandbox and runs offline:
//!
//! ```text
//! cargo run -p digime-examples --bin quickstart
//! ```
//!
//! Against the real digi.me API, give your application and write contract:
//!
//! ```text
//! DIGIME_APPLICATION_ID=... DIGIME_CONTRACT_ID=... DIGIME_PRIVATE_KEY=path/to/key.pem \
//! DIGIME_CALLBACK=https://your.app/return cargo run -p digime-examples --bin quickstart
//! ```
//! It then prints the authorization URL and asks you to paste the URL the browser
//! was sent back to.

use digime_blocking::Client;
use digime_protocol::{AuthorizeOptions, Config, Contract, FileDescriptor, parse_callback};
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
    println!("\n1. Authorization URL: {}", auth.url);

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
    println!("2. Redirected back to: {redirect}");
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
    println!("\nOK: the user's library holds exactly the bytes that were pushed.");
    Ok(())
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
    client.push_to_library(&contract, &token, &descriptor(), Cursor::new(FILE))?;
    println!(
        "Pushed {} bytes into the library of user {:?}.",
        FILE.len(),
        token.user_id()
    );
    println!(
        "Persist this token to write again later:\n{}",
        serde_json::to_string(&token)?
    );
    Ok(())
}
