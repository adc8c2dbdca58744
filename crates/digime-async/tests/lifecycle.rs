//! The account and authorization lifecycle through the async driver against the
//! strict sandbox: each call end to end, with the blocking driver's outcomes.

use digime_async::Client;
use digime_protocol::auth::{OnboardServiceOptions, ReauthorizeAccountOptions, ReauthorizeOptions};
use digime_protocol::{
    AccountSyncStatus, AuthorizeOptions, Contract, ReadAllOptions, SessionKey, SyncState,
    SyncStatus, UserAccessToken, parse_callback, parse_onboard_callback, parse_revoke_callback,
};
use digime_sandbox::{ConsentMode, RunningSandbox, Sandbox, SandboxConfig};
use digime_testkit::control::{AsyncControl, quick_config};
use serde_json::json;
use std::time::Duration;

const CALLBACK: &str = "http://127.0.0.1:9/cb";

struct Env {
    _sandbox: RunningSandbox,
    control: AsyncControl,
    client: Client,
    read: Contract,
}

async fn env() -> Env {
    let sandbox = Sandbox::start(SandboxConfig {
        consent: ConsentMode::Auto,
        sync_step: Duration::from_millis(30),
        ..Default::default()
    })
    .await
    .unwrap();
    let info = sandbox.info().clone();
    Env {
        control: AsyncControl::new(&info),
        client: Client::new(quick_config(&info)),
        read: info.demo.read.contract().unwrap(),
        _sandbox: sandbox,
    }
}

impl Env {
    async fn authorize(&self) -> UserAccessToken {
        let auth = (self.client)
            .authorize_url(&self.read, CALLBACK, "st", AuthorizeOptions::default())
            .await
            .unwrap();
        let cb = parse_callback(&self.control.browse(&auth.url).await)
            .unwrap()
            .verify_state("st")
            .unwrap();
        (self.client)
            .exchange_code_for_token(&self.read, &cb.code, &auth.code_verifier)
            .await
            .unwrap()
    }

    async fn account_ids(&self, token: &UserAccessToken) -> Vec<String> {
        let accounts = self.client.read_accounts(&self.read, token).await.unwrap();
        accounts.value.into_iter().map(|a| a.id).collect()
    }

    async fn sync(&self, token: &UserAccessToken, session: Option<SessionKey>) -> SyncStatus {
        let session = match session {
            Some(s) => s,
            None => {
                let pull = Default::default();
                let s = self.client.read_session(&self.read, token, &pull).await;
                s.unwrap().value.key
            }
        };
        let options = ReadAllOptions {
            poll_interval: Duration::from_millis(20),
            ..Default::default()
        };
        let summary = (self.client)
            .read_all_files(&self.read, token, &session, options, |_| {})
            .await
            .unwrap();
        summary.status
    }
}

#[tokio::test]
async fn every_lifecycle_call_end_to_end() {
    let env = env().await;
    let token = env.authorize().await;
    let user = token.user_id().unwrap().to_owned();
    let accounts = env.account_ids(&token).await;

    // Onboard a service: one more account, and the page's session syncs it.
    let options = OnboardServiceOptions {
        state: Some("add".into()),
        ..Default::default()
    };
    let onboard = (env.client)
        .onboard_service_url(&env.read, CALLBACK, &token, options)
        .await
        .unwrap();
    let back = env.control.browse(&onboard.value.url).await;
    parse_onboard_callback(&back)
        .unwrap()
        .verify_state("add")
        .unwrap();
    let with_new = env.account_ids(&token).await;
    assert_eq!(with_new.len(), accounts.len() + 1);
    let status = env.sync(&token, onboard.value.session.map(|s| s.key)).await;
    assert_eq!(status.state, SyncState::Completed);

    // Repair an account that needs the user again.
    let broken = accounts[0].clone();
    let path = format!("users/{user}/accounts/{broken}/fail");
    env.control.post_json(&path, json!({})).await;
    let status = env.sync(&token, None).await;
    assert!(matches!(
        status.details.get(&broken),
        Some(AccountSyncStatus::Partial { error }) if error.status_code == 511
    ));
    let page = (env.client)
        .reauthorize_account_url(
            &env.read,
            CALLBACK,
            &token,
            &broken,
            ReauthorizeAccountOptions::default(),
        )
        .await
        .unwrap();
    parse_onboard_callback(&env.control.browse(&page.value.url).await).unwrap();
    assert_eq!(env.sync(&token, None).await.state, SyncState::Completed);

    // Revoke one account's permission.
    let revoked = with_new[1].clone();
    let location = (env.client)
        .revoke_account_permission_url(&env.read, &token, &revoked, "http://127.0.0.1:9/revoked")
        .await
        .unwrap()
        .value
        .location;
    parse_revoke_callback(&env.control.browse(&location).await).unwrap();
    assert!(!env.account_ids(&token).await.contains(&revoked));

    // Delete another account.
    let deleted = with_new[0].clone();
    (env.client)
        .delete_account(&env.read, &token, &deleted)
        .await
        .unwrap();
    let left = env.account_ids(&token).await;
    assert!(!left.contains(&deleted) && !left.is_empty(), "{left:?}");

    // The refresh token dies: reauthorize, same user, same library.
    env.control.expire_access_tokens(&user).await;
    env.control.expire_refresh_tokens(&user).await;
    let err = env
        .client
        .read_accounts(&env.read, &token)
        .await
        .unwrap_err();
    assert!(err.needs_reauthorization(), "{err:?}");
    let options = ReauthorizeOptions {
        state: Some("re".into()),
        ..Default::default()
    };
    let reauth = (env.client)
        .reauthorize_url(&env.read, CALLBACK, &token, options)
        .await
        .unwrap();
    let cb = parse_callback(&env.control.browse(&reauth.url).await)
        .unwrap()
        .verify_state("re")
        .unwrap();
    let fresh = (env.client)
        .exchange_code_for_token(&env.read, &cb.code, &reauth.code_verifier)
        .await
        .unwrap();
    assert_eq!(fresh.user_id(), Some(user.as_str()));
    assert_eq!(env.account_ids(&fresh).await, left);

    // Delete the user: every token of theirs is refused from now on.
    env.client.delete_user(&env.read, &fresh).await.unwrap();
    let err = env
        .client
        .read_accounts(&env.read, &fresh)
        .await
        .unwrap_err();
    assert!(err.needs_reauthorization(), "{err:?}");
    let err = (env.client)
        .delete_account(&env.read, &fresh, &left[0])
        .await
        .unwrap_err();
    assert!(err.needs_reauthorization(), "{err:?}");
}
