//! Adding a second service to a user's library: the app asks for the `onboard` page,
//! the user connects the service, and the session that came with the page reads its
//! data. The user's token stays valid throughout (there is no code to exchange).
//!
//! Offline, against an embedded sandbox (async driver):
//!
//! ```text
//! cargo run -p digime-examples --bin onboard_service
//! ```

#[path = "support/mod.rs"]
mod support;

use digime_async::Client;
use digime_protocol::auth::OnboardServiceOptions;
use digime_protocol::{
    AuthorizeOptions, FileMetadata, ReadAllEvent, ReadAllOptions, parse_callback,
    parse_onboard_callback,
};
use std::collections::BTreeSet;
use support::{Result, follow, sandbox};

const CALLBACK: &str = "http://localhost:8080/return";

#[tokio::main]
async fn main() -> Result<()> {
    let sandbox = sandbox()?;
    let info = sandbox.info();
    let client = Client::new(info.client_config());
    let contract = info.demo.read.contract()?;

    // The first authorization onboards the user's first services.
    let state = digime_crypto::random::alphanumeric(24)?;
    let auth = client
        .authorize_url(&contract, CALLBACK, &state, AuthorizeOptions::default())
        .await?;
    let callback = parse_callback(&follow(&auth.url)?)?.verify_state(&state)?;
    let mut token = client
        .exchange_code_for_token(&contract, &callback.code, &auth.code_verifier)
        .await?;
    let before = client.read_accounts(&contract, &token).await?.value;
    println!("The library has {} accounts:", before.len());
    for a in &before {
        println!("  {} ({})", a.service_type_name, a.id);
    }

    // Add another service. Without `service_id` the user picks one on the page.
    let state = digime_crypto::random::alphanumeric(24)?;
    let options = OnboardServiceOptions {
        state: Some(state.clone()),
        ..Default::default()
    };
    let onboard = client
        .onboard_service_url(&contract, CALLBACK, &token, options)
        .await?;
    if let Some(new) = onboard.refreshed_token {
        token = new; // persist it: the old refresh token is spent
    }
    println!(
        "Sending the user to {}",
        support::redacted(&onboard.value.url)
    );
    parse_onboard_callback(&follow(&onboard.value.url)?)?.verify_state(&state)?;

    let after = client.read_accounts(&contract, &token).await?.value;
    let known: BTreeSet<_> = before.iter().map(|a| a.id.as_str()).collect();
    let added: Vec<_> = after
        .iter()
        .filter(|a| !known.contains(a.id.as_str()))
        .collect();
    let [added] = added.as_slice() else {
        return Err(format!("expected one new account, found {}", added.len()).into());
    };
    println!(
        "Added {} ({}); the library now has {} accounts.",
        added.service_type_name,
        added.id,
        after.len()
    );

    // The session that came with the page syncs the library, the new service included.
    let session = onboard
        .value
        .session
        .ok_or("no session with the onboard page")?;
    let mut from_new_service = 0;
    client
        .read_all_files(
            &contract,
            &token,
            &session.key,
            ReadAllOptions::default(),
            |e| {
                if let ReadAllEvent::File(f) = e
                    && let FileMetadata::Mapped(m) = &f.head.metadata
                    && m.service_name == added.service_type_reference
                {
                    from_new_service += 1;
                }
            },
        )
        .await?;
    println!("Read {from_new_service} files from the new service.");
    if from_new_service == 0 {
        return Err("no files from the new service".into());
    }
    println!("OK: the new service's data arrived through the onboard session.");
    Ok(())
}
