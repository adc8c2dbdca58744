//! The account and authorization lifecycle through the blocking driver against the
//! strict sandbox: a dead refresh token recovered, a service added, an account
//! repaired, a permission revoked, an account and the user deleted; and each sad path
//! a typed error with nothing half-done.

use digime_blocking::Client;
use digime_protocol::auth::{OnboardServiceOptions, ReauthorizeAccountOptions, ReauthorizeOptions};
use digime_protocol::{
    AccountSyncStatus, AuthorizeOptions, CallbackError, CallbackErrorCode, Contract, FileMetadata,
    ReadAllEvent, ReadAllOptions, ReadAllSummary, SessionKey, SyncState, UserAccessToken,
    parse_callback, parse_onboard_callback, parse_revoke_callback,
};
use digime_sandbox::{BackgroundSandbox, ConsentMode};
use digime_testkit::control::{Control, quick_config, sandbox_with};
use serde_json::json;
use std::time::Duration;

const CALLBACK: &str = "http://localhost:9999/return?userId=42";

struct Env {
    _sandbox: BackgroundSandbox,
    control: Control,
    client: Client,
    read: Contract,
    write: Contract,
}

fn env_with(consent: ConsentMode) -> Env {
    let (sandbox, control) = sandbox_with(consent);
    let info = sandbox.info().clone();
    Env {
        client: Client::new(quick_config(&info)),
        read: info.demo.read.contract().unwrap(),
        write: info.demo.write.contract().unwrap(),
        control,
        _sandbox: sandbox,
    }
}

fn env() -> Env {
    env_with(ConsentMode::Auto)
}

fn quick() -> ReadAllOptions {
    ReadAllOptions {
        poll_interval: Duration::from_millis(20),
        ..Default::default()
    }
}

impl Env {
    fn authorize(&self, contract: &Contract, options: AuthorizeOptions) -> UserAccessToken {
        let auth = (self.client)
            .authorize_url(contract, CALLBACK, "st-1", options)
            .unwrap();
        let callback = parse_callback(&self.control.browse(&auth.url))
            .unwrap()
            .verify_state("st-1")
            .unwrap();
        (self.client)
            .exchange_code_for_token(contract, &callback.code, &auth.code_verifier)
            .unwrap()
    }

    fn account_ids(&self, contract: &Contract, token: &UserAccessToken) -> Vec<String> {
        let accounts = self.client.read_accounts(contract, token).unwrap().value;
        accounts.into_iter().map(|a| a.id).collect()
    }

    /// Reads a session to its end: the summary and the services its files came from.
    fn read_all(
        &self,
        token: &UserAccessToken,
        session: &SessionKey,
    ) -> (ReadAllSummary, Vec<String>) {
        let mut services = Vec::new();
        let summary = (self.client)
            .read_all_files(&self.read, token, session, quick(), |e| {
                if let ReadAllEvent::File(f) = e
                    && let FileMetadata::Mapped(m) = &f.head.metadata
                {
                    services.push(m.service_name.clone());
                }
            })
            .unwrap();
        (summary, services)
    }

    fn new_session(&self, token: &UserAccessToken) -> SessionKey {
        let session = (self.client)
            .read_session(&self.read, token, &Default::default())
            .unwrap();
        session.value.key
    }
}

#[test]
fn a_dead_refresh_token_is_recovered_for_the_same_user_and_library() {
    let env = env();
    let token = env.authorize(&env.read, AuthorizeOptions::default());
    let user = token.user_id().unwrap().to_owned();
    let accounts = env.account_ids(&env.read, &token);
    env.control.expire_access_tokens(&user);
    env.control.expire_refresh_tokens(&user);
    let err = env.client.read_accounts(&env.read, &token).unwrap_err();
    assert!(err.needs_reauthorization(), "{err:?}");

    let reauthorize = || {
        let options = ReauthorizeOptions {
            state: Some("re-1".into()),
            ..Default::default()
        };
        let reauth = (env.client)
            .reauthorize_url(&env.read, CALLBACK, &token, options)
            .unwrap();
        assert!(reauth.url.contains("/user-reauth?code="), "{}", reauth.url);
        let back = env.control.browse(&reauth.url);
        assert!(
            back.starts_with("http://localhost:9999/return?userId=42&"),
            "{back}"
        );
        let callback = parse_callback(&back).unwrap().verify_state("re-1").unwrap();
        (reauth, callback)
    };

    // The wrong verifier is refused and spends the code: the user goes through the
    // page again.
    let (reauth, callback) = reauthorize();
    let wrong = digime_protocol::CodeVerifier::generate().unwrap();
    let invalid_grant = |err: &digime_protocol::Error| {
        err.api()
            .is_some_and(|a| a.status == 400 && a.code.as_str() == "InvalidGrant")
    };
    let err = (env.client)
        .exchange_code_for_token(&env.read, &callback.code, &wrong)
        .unwrap_err();
    assert!(invalid_grant(&err), "{err:?}");
    let err = (env.client)
        .exchange_code_for_token(&env.read, &callback.code, &reauth.code_verifier)
        .unwrap_err();
    assert!(invalid_grant(&err), "{err:?}");

    let (reauth, callback) = reauthorize();
    let fresh = (env.client)
        .exchange_code_for_token(&env.read, &callback.code, &reauth.code_verifier)
        .unwrap();
    assert_eq!(fresh.user_id(), Some(user.as_str()));
    assert_eq!(env.account_ids(&env.read, &fresh), accounts);
    // The old refresh token stays dead.
    let err = env.client.refresh_token(&env.read, &token).unwrap_err();
    assert!(err.needs_reauthorization(), "{err:?}");
}

#[test]
fn a_garbage_token_cannot_reauthorize() {
    let env = env();
    let token = env.authorize(&env.read, AuthorizeOptions::default());
    let mut garbage = token.clone();
    garbage.access_token.value = digime_protocol::SecretString::new("at_not-a-token");
    let err = (env.client)
        .reauthorize_url(&env.read, CALLBACK, &garbage, ReauthorizeOptions::default())
        .unwrap_err();
    let api = err.api().unwrap_or_else(|| panic!("{err:?}"));
    assert_eq!((api.status, api.code.as_str()), (401, "InvalidToken"));
}

#[test]
fn onboarding_adds_a_service_whose_files_the_session_reads() {
    let env = env();
    let token = env.authorize(&env.read, AuthorizeOptions::default());
    let before = env.account_ids(&env.read, &token);
    let options = OnboardServiceOptions {
        state: Some("add-1".into()),
        ..Default::default()
    };
    let onboard = (env.client)
        .onboard_service_url(&env.read, CALLBACK, &token, options)
        .unwrap();
    assert!(onboard.refreshed_token.is_none());
    let back = env.control.browse(&onboard.value.url);
    parse_onboard_callback(&back)
        .unwrap()
        .verify_state("add-1")
        .unwrap();

    let accounts = env.client.read_accounts(&env.read, &token).unwrap().value;
    assert_eq!(accounts.len(), before.len() + 1, "{accounts:?}");
    let added = accounts.iter().find(|a| !before.contains(&a.id)).unwrap();
    let session = onboard.value.session.expect("a session with the page").key;
    let (summary, services) = env.read_all(&token, &session);
    assert_eq!(summary.status.state, SyncState::Completed);
    assert!(
        services.contains(&added.service_type_reference),
        "{services:?} lacks {}",
        added.service_type_reference
    );
}

#[test]
fn an_account_needing_reauthorization_syncs_again_after_the_reauthorize_page() {
    let env = env();
    let token = env.authorize(&env.read, AuthorizeOptions::default());
    let user = token.user_id().unwrap().to_owned();
    let account = env.account_ids(&env.read, &token).remove(0);
    env.control
        .post_json(&format!("users/{user}/accounts/{account}/fail"), json!({}));

    let (summary, _) = env.read_all(&token, &env.new_session(&token));
    assert_eq!(summary.status.state, SyncState::Partial);
    let Some(AccountSyncStatus::Partial { error }) = summary.status.details.get(&account) else {
        panic!("{:?}", summary.status)
    };
    assert_eq!(
        (error.code.as_str(), error.status_code),
        ("ServiceAuthorizationError", 511)
    );

    let options = ReauthorizeAccountOptions::default();
    let page = (env.client)
        .reauthorize_account_url(&env.read, CALLBACK, &token, &account, options)
        .unwrap();
    assert!(
        page.value.url.contains("/reauthorize?code="),
        "{}",
        page.value.url
    );
    let back = env.control.browse(&page.value.url);
    let cb = parse_onboard_callback(&back).unwrap();
    assert_eq!(cb.state, None);
    let (summary, _) = env.read_all(&token, &env.new_session(&token));
    assert_eq!(
        summary.status.state,
        SyncState::Completed,
        "{:?}",
        summary.status
    );

    // An account the user does not have is the page's failure, not a success.
    let page = (env.client)
        .reauthorize_account_url(
            &env.read,
            CALLBACK,
            &token,
            "12_nosuch",
            ReauthorizeAccountOptions::default(),
        )
        .unwrap();
    let err = parse_onboard_callback(&env.control.browse(&page.value.url)).unwrap_err();
    assert!(matches!(err, CallbackError::Failed { .. }), "{err:?}");
}

#[test]
fn revoking_removes_the_account_for_this_contract_only() {
    let env = env();
    let write_token = env.authorize(&env.write, AuthorizeOptions::default());
    let token = env.authorize(
        &env.read,
        AuthorizeOptions {
            user_access_token: Some(write_token.clone()),
            ..Default::default()
        },
    );
    let accounts = env.account_ids(&env.read, &token);
    let revoked = accounts[0].clone();
    let location = (env.client)
        .revoke_account_permission_url(&env.read, &token, &revoked, "http://localhost:9999/revoked")
        .unwrap()
        .value
        .location;
    let back = env.control.browse(&location);
    assert!(back.starts_with("http://localhost:9999/revoked?"), "{back}");
    parse_revoke_callback(&back).unwrap();

    let left = env.account_ids(&env.read, &token);
    assert!(!left.contains(&revoked), "{left:?}");
    assert_eq!(left.len(), accounts.len() - 1);
    assert!(env.account_ids(&env.write, &write_token).contains(&revoked));

    // An unknown account is refused before any page.
    let err = (env.client)
        .revoke_account_permission_url(
            &env.read,
            &token,
            "12_nosuch",
            "http://localhost:9999/revoked",
        )
        .unwrap_err();
    assert_eq!(err.api().map(|a| a.status), Some(404), "{err:?}");
}

#[test]
fn deleting_an_account_then_the_user() {
    let env = env();
    let token = env.authorize(&env.read, AuthorizeOptions::default());
    let user = token.user_id().unwrap().to_owned();
    let accounts = env.client.read_accounts(&env.read, &token).unwrap().value;
    let gone = &accounts[0];
    env.client
        .delete_account(&env.read, &token, &gone.id)
        .unwrap();
    let left = env.account_ids(&env.read, &token);
    assert!(!left.contains(&gone.id));
    let (_, services) = env.read_all(&token, &env.new_session(&token));
    assert!(!services.is_empty());
    assert!(
        !services.contains(&gone.service_type_reference),
        "{services:?}"
    );

    let err = (env.client)
        .delete_account(&env.read, &token, &gone.id)
        .unwrap_err();
    assert_eq!(err.api().map(|a| a.status), Some(404), "{err:?}");
    assert_eq!(
        env.account_ids(&env.read, &token),
        left,
        "nothing else went"
    );

    env.client.delete_user(&env.read, &token).unwrap();
    let err = env.client.read_accounts(&env.read, &token).unwrap_err();
    assert!(err.needs_reauthorization(), "{err:?}");
    let users = env.control.get_json("users");
    assert!(!users.to_string().contains(&user), "{users}");
}

#[test]
fn a_denied_page_is_a_typed_failure_and_changes_nothing() {
    let env = env_with(ConsentMode::Page);
    let auth = (env.client)
        .authorize_url(&env.read, CALLBACK, "st-1", AuthorizeOptions::default())
        .unwrap();
    let (_, location) = env.control.decide_on(&auth.url, "allow");
    let cb = parse_callback(&location.unwrap()).unwrap();
    let token = (env.client)
        .exchange_code_for_token(&env.read, &cb.code, &auth.code_verifier)
        .unwrap();
    let accounts = env.account_ids(&env.read, &token);
    let location = (env.client)
        .revoke_account_permission_url(
            &env.read,
            &token,
            &accounts[0],
            "http://localhost:9999/revoked",
        )
        .unwrap()
        .value
        .location;
    assert!(env.control.consent_page(&location).contains("deny"));
    let (_, back) = env.control.decide_on(&location, "deny");
    assert_eq!(
        parse_revoke_callback(&back.unwrap()),
        Err(CallbackError::Failed {
            code: CallbackErrorCode::UserCancel,
            state: None
        })
    );
    assert_eq!(env.account_ids(&env.read, &token), accounts);

    let options = OnboardServiceOptions {
        state: Some("add-2".into()),
        ..Default::default()
    };
    let onboard = (env.client)
        .onboard_service_url(&env.read, CALLBACK, &token, options)
        .unwrap();
    let (_, back) = env.control.decide_on(&onboard.value.url, "deny");
    assert!(matches!(
        parse_onboard_callback(&back.unwrap()),
        Err(CallbackError::Failed { code: CallbackErrorCode::UserCancel, state: Some(s) }) if s == "add-2"
    ));
    assert_eq!(env.account_ids(&env.read, &token), accounts);
}
