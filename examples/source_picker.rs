//! A source picker over discovery: the app lists the categories and countries, pages
//! through the sources the user can onboard, shows the sample data sets of the one
//! picked, and sends the user to authorize with it preselected (with a sample data
//! set, when asked). The new account then shows among the user's accounts.
//!
//! Offline, against an embedded sandbox (blocking driver):
//!
//! ```text
//! cargo run -p digime-examples --bin source_picker [-- SEARCH [SAMPLE_SET]]
//! ```
//!
//! `SEARCH` is free text matched against source names (default `fit`); `SAMPLE_SET`
//! onboards that sample data set of the picked source instead of live data.

#[path = "support/mod.rs"]
mod support;

use digime_blocking::Client;
use digime_protocol::auth::SampleData;
use digime_protocol::discovery::{FacetQuery, SourcesQuery};
use digime_protocol::{AuthorizeOptions, parse_callback};
use support::{Result, follow, sandbox};

const CALLBACK: &str = "http://localhost:8080/return";

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let search = args.next().unwrap_or_else(|| "fit".into());
    let sample_set = args.next();
    let sandbox = sandbox()?;
    let info = sandbox.info();
    let client = Client::new(info.client_config());
    let contract = info.demo.read.contract()?;

    // The facets to filter by: no user is needed, only the contract.
    let categories = client.query_categories(&contract, &FacetQuery::default())?;
    let names: Vec<&str> = categories
        .iter()
        .filter_map(|c| c.name.as_deref())
        .collect();
    println!("Categories: {}", names.join(", "));
    let countries = client.query_countries(&contract, &FacetQuery::default())?;
    let codes: Vec<&str> = countries.iter().filter_map(|c| c.code.as_deref()).collect();
    println!("Countries: {}", codes.join(", "));

    // Every approved pull source, a page at a time.
    let mut query = SourcesQuery {
        limit: Some(10),
        ..Default::default()
    };
    let mut all = Vec::new();
    loop {
        let page = client.query_sources(&contract, &query)?;
        let next = page.next_offset();
        all.extend(page.data);
        match next {
            Some(offset) => query.offset = Some(offset as u32),
            None => break,
        }
    }
    println!("{} sources can be onboarded; {} per page.", all.len(), 10);

    // The user searches.
    let found = client.query_sources(
        &contract,
        &SourcesQuery {
            query_string: Some(search.clone()),
            ..Default::default()
        },
    )?;
    println!("Sources matching {search:?}:");
    for s in &found.data {
        let category: Vec<String> = s.categories().into_iter().filter_map(|c| c.name).collect();
        println!(
            "  {:>4}  {:<24} {}",
            s.id,
            s.name.as_deref().unwrap_or("?"),
            category.join(", ")
        );
    }
    let picked = found
        .data
        .first()
        .ok_or_else(|| format!("no source matches {search:?}"))?;
    let sets = client.service_sample_data_sets(&contract, picked.id)?;
    let set_names: Vec<&String> = sets.keys().collect();
    println!(
        "Picked {} (source {}); its sample data sets: {set_names:?}",
        picked.name.as_deref().unwrap_or("?"),
        picked.id
    );

    // Authorize with the source preselected.
    let state = digime_crypto::random::alphanumeric(24)?;
    let options = AuthorizeOptions {
        service_id: Some(picked.id),
        sample_data: sample_set.map(|data_set| SampleData {
            data_set,
            auto_onboard: true,
        }),
        ..Default::default()
    };
    let auth = client.authorize_url(&contract, CALLBACK, &state, options)?;
    let callback = parse_callback(&follow(&auth.url)?)?.verify_state(&state)?;
    let token = client.exchange_code_for_token(&contract, &callback.code, &auth.code_verifier)?;
    let accounts = client.read_accounts(&contract, &token)?.value;
    let account = accounts
        .iter()
        .find(|a| a.source_id == picked.id as i64)
        .ok_or("the picked source has no account after authorizing")?;
    println!(
        "OK: the user's library has an account of {} ({}{}).",
        account.service_type_name,
        account.id,
        if account.sample == Some(true) {
            ", sample data"
        } else {
            ""
        }
    );
    Ok(())
}
