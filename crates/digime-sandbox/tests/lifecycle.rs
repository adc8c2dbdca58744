//! The account and authorization lifecycle, exercised as a server: raw HTTP, request
//! JWTs signed by hand, answers checked on the wire. `oauth/token/reference`,
//! `reference`, the `user-reauth`, `onboard`, `reauthorize` and `revoke` pages, the
//! revoke URL, `DELETE user` and `DELETE permission-access/service/h:accountId`.

mod support;

use digime_sandbox::{ConsentMode, SandboxConfig};
use serde_json::{Value, json};
use support::pkce;
use support::{
    Env, Reply, User, agent, claims, config, file_names, now_ms, pairs, param, read_client, reply,
    start, write_client,
};

const CALLBACK: &str = "http://localhost:9999/cb?keep=1";

fn env(consent: ConsentMode) -> Env {
    start(config(consent))
}

impl Env {
    fn token_reference_with(&self, authorization: &str, body: &Value) -> Reply {
        reply(
            self.http
                .post(&self.api("oauth/token/reference"))
                .header("authorization", authorization)
                .content_type("application/json")
                .send(body.to_string()),
        )
    }

    /// `oauth/token/reference` for `client` with the access token and `extra` claims
    /// (`redirect_uri` is [`CALLBACK`] unless given); the reply.
    fn token_reference(&self, client: &str, at: &str, extra: Value) -> Reply {
        let mut claims = json!({"access_token": at, "redirect_uri": CALLBACK});
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        self.token_reference_with(&self.bearer(client, claims), &json!({"agent": agent()}))
    }

    /// A reference code and its session: `(code, session key)`.
    fn reference_code(&self, client: &str, at: &str, extra: Value) -> (String, String) {
        let v = self.token_reference(client, at, extra).ok(201);
        let payload = self.server_payload(v["token"].as_str().unwrap(), &self.api("jwks/oauth"));
        let code = payload["reference_code"].as_str().unwrap().to_owned();
        (code, v["session"]["key"].as_str().unwrap().to_owned())
    }

    fn reference(&self, client: &str, body: Value) -> Reply {
        reply(
            self.http
                .post(&self.api("reference"))
                .header("authorization", self.bearer(client, json!({})))
                .content_type("application/json")
                .send(body.to_string()),
        )
    }

    fn refresh(&self, client: &str, rt: &str) -> Reply {
        reply(
            self.http
                .post(&self.api("oauth/token"))
                .header(
                    "authorization",
                    self.bearer(
                        client,
                        json!({"grant_type": "refresh_token", "refresh_token": rt}),
                    ),
                )
                .content_type("application/json")
                .send_empty(),
        )
    }

    /// The ids of the accounts `client` sees.
    fn account_ids(&self, client: &str, at: &str) -> Vec<String> {
        self.accounts_reply(client, at)
            .ok(200)
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .collect()
    }

    fn account(&self, client: &str, at: &str, service_type: u64) -> Value {
        self.accounts_reply(client, at)
            .ok(200)
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["serviceTypeId"] == service_type)
            .unwrap_or_else(|| panic!("no account of service type {service_type}"))
            .clone()
    }

    fn trigger(&self, at: &str) -> String {
        let r = reply(
            self.http
                .post(&self.api("permission-access/trigger"))
                .header("authorization", self.user_bearer(&read_client(), at))
                .content_type("application/json")
                .send(json!({"agent": agent()}).to_string()),
        );
        r.ok(202)["session"]["key"].as_str().unwrap().to_owned()
    }

    /// Pushes a file (write contract) whose descriptor names `accounts`; its id.
    fn push(&self, u: &User, accounts: &[&str]) -> String {
        let accounts: Vec<Value> = accounts.iter().map(|a| json!({"accountId": a})).collect();
        let descriptor = json!({"metadata": {"mimeType": "text/plain", "accounts": accounts}});
        let before = self.stored(&u.id);
        let r = self.import(&u.write_at, &descriptor, b"pushed bytes");
        assert_eq!(r.status, 201, "{}", r.text());
        self.stored(&u.id)
            .into_iter()
            .find(|f| !before.contains(f))
            .unwrap()
    }

    /// The ids of a user's stored files (control view).
    fn stored(&self, user: &str) -> Vec<String> {
        self.control_get(&format!("users/{user}/files")).ok(200)["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap().to_owned())
            .collect()
    }

    fn delete_account(&self, client: &str, at: &str, account: Option<&str>) -> Reply {
        let mut req = self
            .http
            .delete(&self.api("permission-access/service/h:accountId"))
            .header("authorization", self.user_bearer(client, at))
            .header("content-type", "application/json");
        if let Some(a) = account {
            req = req.header("accountId", a);
        }
        reply(req.call())
    }

    fn delete_user(&self, client: &str, at: &str) -> Reply {
        reply(
            self.http
                .delete(&self.api("user"))
                .header("authorization", self.user_bearer(client, at))
                .header("accept", "application/json")
                .call(),
        )
    }

    fn revoke_url(&self, client: &str, at: &str, account: &str, redirect: &str) -> Reply {
        reply(
            self.http
                .get(&self.api("permission-access/revoke/h:accountId"))
                .header("authorization", self.user_bearer(client, at))
                .header("accept", "application/json")
                .header("accountId", account)
                .header("redirectUri", redirect)
                .call(),
        )
    }
}

fn services(list: &Value) -> Vec<String> {
    let mut s: Vec<String> = list["fileList"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["serviceName"].as_str().map(str::to_owned))
        .collect();
    s.sort();
    s.dedup();
    s
}

// ---------------------------------------------------------------------------
// oauth/token/reference and reference.

#[test]
fn token_reference_answers_a_signed_reference_code_and_a_session() {
    let env = env(ConsentMode::Auto);
    let u = env.user();
    let r = env.token_reference(&read_client(), &u.read_at, json!({"state": "s1"}));
    let v = r.ok(201);
    let payload = env.server_payload(v["token"].as_str().unwrap(), &env.api("jwks/oauth"));
    let code = payload["reference_code"].as_str().unwrap();
    assert!(code.starts_with("REF_"), "{payload}");
    assert_eq!(payload["token_type"], "Bearer");
    let expires_on = payload["expires_on"].as_u64().unwrap();
    let now_s = now_ms() / 1000;
    assert!(
        expires_on > now_s + 9 * 60 && expires_on <= now_s + 10 * 60,
        "{payload}"
    );
    assert_eq!(payload.as_object().unwrap().len(), 3, "{payload}");
    let expiry = v["session"]["expiry"].as_u64().unwrap();
    assert!(expiry > now_ms() + 29 * 60 * 1000 && expiry <= now_ms() + 30 * 60 * 1000);
    // The session cannot be read before the page is done.
    let key = v["session"]["key"].as_str().unwrap();
    env.list(&u.read_at, key).error(404, "SessionNotFound");

    // Claims and body.
    let (_, challenge) = pkce();
    let bad_claims = [
        json!({"redirect_uri": null}),
        json!({"access_token": null}),
        json!({"state": 7}),
        json!({"code_challenge": challenge, "code_challenge_method": "plain"}),
        json!({"code_challenge": challenge}),
        json!({"code_challenge": "short", "code_challenge_method": "S256"}),
        json!({"code_challenge_method": "S256"}),
    ];
    for extra in bad_claims {
        let mut claims = json!({"access_token": u.read_at, "redirect_uri": CALLBACK});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        let r = env.token_reference_with(
            &env.bearer(&read_client(), claims.clone()),
            &json!({"agent": agent()}),
        );
        r.error(400, "ValidationErrors");
    }
    let r = env.token_reference(
        &read_client(),
        &u.read_at,
        json!({"redirect_uri": "http://app.example.com/cb"}),
    );
    let m = r.error(404, "InvalidRedirectUri");
    assert_eq!(m, "The redirect_uri (http://app.example.com/cb) is invalid");
    let claims = json!({"access_token": u.read_at, "redirect_uri": CALLBACK});
    for (body, status, code) in [
        (json!({}), 400, "ValidationErrors"),
        (
            json!({"agent": {"sdk": {"name": "test", "version": "1"}}}),
            400,
            "SDKInvalid",
        ),
        (
            json!({"agent": agent(), "actions": []}),
            400,
            "ValidationErrors",
        ),
        (
            json!({"agent": agent(), "actions": {"pull": 1}}),
            400,
            "ValidationErrors",
        ),
        (
            json!({"agent": agent(), "actions": {"pull": {"sourceFetch": "no"}}}),
            400,
            "ValidationErrors",
        ),
    ] {
        let r = env.token_reference_with(&env.bearer(&read_client(), claims.clone()), &body);
        r.error(status, code);
    }
    let r = env.token_reference_with(
        &env.bearer(&read_client(), claims.clone()),
        &json!({"agent": agent(), "actions": {"pull": {"sourceFetch": false}}}),
    );
    r.ok(201);

    // Tokens: unknown, of another contract → invalid, for both kinds of code.
    for extra in [
        json!({}),
        json!({"code_challenge": challenge, "code_challenge_method": "S256"}),
    ] {
        let r = env.token_reference(&read_client(), "at_made_up", extra.clone());
        let m = r.error(401, "InvalidToken");
        assert_eq!(m, "The token (access_token) is invalid");
        let r = env.token_reference(&read_client(), &u.write_at, extra);
        r.error(401, "InvalidToken");
    }
}

#[test]
fn an_expired_access_token_is_good_for_user_reauth_only() {
    let env = env(ConsentMode::Auto);
    let u = env.user();
    env.control_post(&format!("users/{}/expire-access-tokens", u.id), json!({}))
        .ok(200);
    // Onboard and reauthorize-account: the SDK must refresh first.
    let m = env
        .token_reference(&read_client(), &u.read_at, json!({}))
        .error(401, "InvalidToken");
    assert!(m.starts_with("The token (access_token) is"), "{m}");
    // User-reauth: that is what it is for.
    let (_, challenge) = pkce();
    env.token_reference(
        &read_client(),
        &u.read_at,
        json!({"code_challenge": challenge, "code_challenge_method": "S256"}),
    )
    .ok(201);
}

#[test]
fn references_name_accounts_and_clouds() {
    let env = env(ConsentMode::Auto);
    // A cloudId must name a storage of the application (tests/storage.rs checks that).
    let storage = env.provisional_storage(&read_client());
    for (kind, value) in [("accountId", "12_abc"), ("cloudId", storage.as_str())] {
        let v = env
            .reference(&read_client(), json!({"type": kind, "value": value}))
            .ok(200);
        assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
        assert!(v["id"].as_str().unwrap().starts_with("ref_"));
    }
    let a = env
        .reference(&read_client(), json!({"type": "accountId", "value": "x"}))
        .json();
    let b = env
        .reference(&read_client(), json!({"type": "accountId", "value": "x"}))
        .json();
    assert_ne!(a["id"], b["id"]);
    for body in [
        json!({}),
        json!({"type": "accountId"}),
        json!({"type": "accountId", "value": ""}),
        json!({"type": "accountId", "value": 5}),
        json!({"type": "storageId", "value": "x"}),
        json!(["accountId", "x"]),
    ] {
        env.reference(&read_client(), body.clone())
            .error(400, "ValidationErrors");
    }
}

#[test]
fn bad_bearers_and_replayed_nonces_are_406_on_every_lifecycle_call() {
    let env = env(ConsentMode::Auto);
    let u = env.user();
    let calls: [(&str, &str); 5] = [
        ("POST", "oauth/token/reference"),
        ("POST", "reference"),
        ("GET", "permission-access/revoke/h:accountId"),
        ("DELETE", "user"),
        ("DELETE", "permission-access/service/h:accountId"),
    ];
    let send = |method: &str, path: &str, auth: Option<&str>| {
        let url = env.api(path);
        let body = json!({"agent": agent(), "type": "cloudId", "value": "v"}).to_string();
        let r = match method {
            "POST" => {
                let mut req = env.http.post(&url).content_type("application/json");
                if let Some(a) = auth {
                    req = req.header("authorization", a);
                }
                req.send(body)
            }
            "GET" => {
                let mut req = env.http.get(&url).header("redirectUri", CALLBACK);
                if let Some(a) = auth {
                    req = req.header("authorization", a);
                }
                req.call()
            }
            _ => {
                let mut req = env.http.delete(&url);
                if let Some(a) = auth {
                    req = req.header("authorization", a);
                }
                req.call()
            }
        };
        reply(r)
    };
    // Signed with the write key, claiming the read contract.
    let forged = support::bearer(
        &env.write_key,
        &claims(
            &read_client(),
            json!({"access_token": u.read_at, "redirect_uri": CALLBACK}),
        ),
    );
    for (method, path) in calls {
        send(method, path, None).error(406, "ValidationErrors");
        send(method, path, Some("Bearer nonsense")).error(406, "ValidationErrors");
        send(method, path, Some(&forged)).error(406, "ValidationErrors");
        // A replay: the first use may fail for its own reasons (no account header),
        // the second is refused for the nonce.
        let bearer = env.bearer(
            &read_client(),
            json!({"access_token": u.read_at, "redirect_uri": CALLBACK}),
        );
        let first = send(method, path, Some(&bearer));
        assert_ne!(first.status, 406, "{path}: {}", first.text());
        let m = send(method, path, Some(&bearer)).error(406, "InvalidRequest");
        assert!(m.contains("has already been used"), "{m}");
    }
}

// ---------------------------------------------------------------------------
// The pages.

#[test]
fn user_reauth_gives_a_new_pair_of_the_same_user() {
    let env = env(ConsentMode::Auto);
    let u = env.user();
    let before = env.account_ids(&read_client(), &u.read_at);
    env.control_post(&format!("users/{}/expire-access-tokens", u.id), json!({}))
        .ok(200);
    env.control_post(&format!("users/{}/expire-refresh-tokens", u.id), json!({}))
        .ok(200);
    let m = env
        .refresh(&read_client(), &u.read_rt)
        .error(401, "InvalidToken");
    assert!(m.starts_with("The token (refresh_token) is"), "{m}");

    let (verifier, challenge) = pkce();
    let pkce_claims =
        json!({"code_challenge": challenge, "code_challenge_method": "S256", "state": "again"});
    let (code, session) = env.reference_code(&read_client(), &u.read_at, pkce_claims.clone());
    // A PKCE code is no good at onboard or reauthorize (nor spent there).
    for page in [
        format!("onboard?code={code}&sourceType=pull"),
        format!("reauthorize?code={code}&accountRef=ref_x"),
    ] {
        let (url, q) = env.get(&env.onboard(&page)).redirect();
        assert_eq!(url.path(), "/cb");
        assert_eq!(
            q,
            pairs(&[
                ("keep", "1"),
                ("success", "false"),
                ("errorCode", "INVALID_CODE"),
                ("state", "again")
            ])
        );
    }
    let url = env.onboard(&format!(
        "user-reauth?code={code}&lng=nl&triggerQuery=false"
    ));
    let (_, q) = env.get(&url).redirect();
    assert_eq!(param(&q, "keep").as_deref(), Some("1"));
    assert_eq!(param(&q, "success").as_deref(), Some("true"));
    assert_eq!(param(&q, "state").as_deref(), Some("again"));
    let auth = param(&q, "code").unwrap();
    // Spent.
    assert_eq!(env.get(&url).status, 400);
    // The wrong verifier: refused, and the code is spent by the attempt.
    let (wrong, _) = pkce();
    env.exchange(&read_client(), &auth, &wrong)
        .error(400, "InvalidGrant");
    env.exchange(&read_client(), &auth, &verifier)
        .error(400, "InvalidGrant");

    // Again, with the right verifier.
    let (code, _) = env.reference_code(&read_client(), &u.read_at, pkce_claims);
    let (_, q) = env
        .get(&env.onboard(&format!("user-reauth?code={code}")))
        .redirect();
    // Another contract cannot exchange it.
    let auth = param(&q, "code").unwrap();
    env.exchange(&write_client(), &auth, &verifier)
        .error(400, "InvalidGrant");
    let (code, _) = env.reference_code(
        &read_client(),
        &u.read_at,
        json!({"code_challenge": digime_crypto::pkce::challenge_of(&verifier),
               "code_challenge_method": "S256"}),
    );
    let (_, q) = env
        .get(&env.onboard(&format!("user-reauth?code={code}")))
        .redirect();
    assert_eq!(
        param(&q, "state"),
        None,
        "no state in the request, none back"
    );
    let v = env
        .exchange(&read_client(), &param(&q, "code").unwrap(), &verifier)
        .ok(201);
    let token = env.server_payload(v["token"].as_str().unwrap(), &env.api("jwks/oauth"));
    assert_eq!(token["sub"], u.id.as_str());
    let at = token["access_token"]["value"].as_str().unwrap();
    assert_eq!(
        env.account_ids(&read_client(), at),
        before,
        "the same library"
    );
    // The old refresh token stays dead; the new one works.
    env.refresh(&read_client(), &u.read_rt)
        .error(401, "InvalidToken");
    env.refresh(
        &read_client(),
        token["refresh_token"]["value"].as_str().unwrap(),
    )
    .ok(201);
    // The session of the first reauth (triggerQuery=false) shows the library as it is.
    let list = env.list_ok(at, &session);
    assert_eq!(list["status"]["state"], "completed", "{list}");
    assert!(!file_names(&list).is_empty());
}

#[test]
fn onboard_adds_an_account_and_the_next_sync_has_its_files() {
    let env = env(ConsentMode::Page);
    let u = env.user();
    let earlier = env.trigger(&u.read_at);
    assert_eq!(env.account_ids(&read_client(), &u.read_at).len(), 2);

    let (code, session) = env.reference_code(&read_client(), &u.read_at, json!({"state": "add"}));
    let url = env.onboard(&format!(
        "onboard?code={code}&sourceType=pull&service=29&lng=nl"
    ));
    let page = env.get(&url);
    assert_eq!(page.status, 200, "{}", page.text());
    let html = page.text();
    assert!(
        html.contains("Spotify") && html.contains("demo-read"),
        "{html}"
    );
    assert!(html.contains(r#"action="onboard/decision""#), "{html}");
    assert!(html.contains(r#"name="service" value="29""#), "{html}");
    // Denied: back with USER_CANCEL and the state; the code is spent.
    let (_, q) = env.decide(&url, "deny").redirect();
    assert_eq!(
        q,
        pairs(&[
            ("keep", "1"),
            ("success", "false"),
            ("errorCode", "USER_CANCEL"),
            ("state", "add")
        ])
    );
    assert_eq!(env.decide(&url, "allow").status, 400);
    assert_eq!(env.account_ids(&read_client(), &u.read_at).len(), 2);

    let (code, session2) = env.reference_code(&read_client(), &u.read_at, json!({"state": "add"}));
    let url = env.onboard(&format!("onboard?code={code}&sourceType=pull&service=29"));
    assert_eq!(env.get(&url).status, 200);
    let (_, q) = env.decide(&url, "allow").redirect();
    assert_eq!(
        q,
        pairs(&[("keep", "1"), ("success", "true"), ("state", "add")])
    );
    let spotify = env.account(&read_client(), &u.read_at, 19);
    assert_eq!(spotify["serviceTypeName"], "Spotify");
    assert_eq!(spotify["sourceId"], 29);
    assert!(spotify["id"].as_str().unwrap().starts_with("19_"));
    assert!(spotify["createdDate"].as_u64().unwrap() + 60_000 > now_ms());
    assert_eq!(spotify["accessTokenStatus"]["authorized"], true);
    // Every contract of the user sees it.
    assert_eq!(env.account_ids(&write_client(), &u.write_at).len(), 3);
    // The onboard session syncs it, as does a new one; a session started before does not.
    let done = env.wait_done(&u.read_at, &session2);
    assert_eq!(done["status"]["state"], "completed");
    assert_eq!(services(&done), ["fitbit", "instagram", "spotify"]);
    assert!(done["status"]["details"][spotify["id"].as_str().unwrap()]["state"] == "completed");
    let fresh = env.trigger(&u.read_at);
    assert_eq!(
        services(&env.wait_done(&u.read_at, &fresh)),
        ["fitbit", "instagram", "spotify"]
    );
    assert_eq!(
        services(&env.wait_done(&u.read_at, &earlier)),
        ["fitbit", "instagram"]
    );
    // The denied code's session never became readable.
    env.list(&u.read_at, &session).error(404, "SessionNotFound");
    // A file of the new account decrypts to objects.
    let name = file_names(&done)
        .into_iter()
        .find(|n| n.starts_with("5_19_"))
        .unwrap();
    let r = reply(
        env.http
            .get(&env.api(&format!("permission-access/query/{session2}/{name}")))
            .header("authorization", env.user_bearer(&read_client(), &u.read_at))
            .call(),
    );
    assert_eq!(r.status, 200);
    let plain = digime_crypto::envelope::decrypt(
        &env.read_key,
        &r.body,
        digime_crypto::envelope::Format::Current,
    )
    .unwrap();
    assert!(
        !serde_json::from_slice::<Vec<Value>>(&plain)
            .unwrap()
            .is_empty()
    );

    // No service: the first of the catalogue the user lacks (Garmin), then the first
    // approved pull source after the demo's four (Facebook).
    let (code, _) = env.reference_code(&read_client(), &u.read_at, json!({}));
    let url = env.onboard(&format!(
        "onboard?code={code}&sourceType=pull&triggerQuery=false"
    ));
    assert!(env.get(&url).text().contains("Garmin"));
    let (_, q) = env.decide(&url, "allow").redirect();
    assert_eq!(q, pairs(&[("keep", "1"), ("success", "true")]));
    env.account(&read_client(), &u.read_at, 20);
    let (code, _) = env.reference_code(&read_client(), &u.read_at, json!({}));
    let url = env.onboard(&format!("onboard?code={code}&sourceType=pull"));
    assert!(env.get(&url).text().contains("Facebook"));
    for link in [
        // A push link must name its provider; 29 is a pull source; 6 is not published.
        "sourceType=pull&service=6",
        "sourceType=pull&service=999",
        "sourceType=push",
        "sourceType=push&service=29",
    ] {
        let (code, _) = env.reference_code(&read_client(), &u.read_at, json!({}));
        let url = env.onboard(&format!("onboard?code={code}&{link}"));
        // Answered at once, without a consent page; the code is spent.
        let (_, q) = env.get(&url).redirect();
        assert_eq!(
            q,
            pairs(&[
                ("keep", "1"),
                ("success", "false"),
                ("errorCode", "ONBOARD_ERROR")
            ]),
            "{link}"
        );
        assert_eq!(env.get(&url).status, 400, "{link}");
    }
    // Malformed links: an error page, the code unspent.
    let (code, _) = env.reference_code(&read_client(), &u.read_at, json!({}));
    for link in [
        "",
        "sourceType=both",
        "sourceType=pull&service=spotify",
        "sourceType=pull&triggerQuery=yes",
        "sourceType=pull&sourcesScope=%257B",
    ] {
        let r = env.get(&env.onboard(&format!("onboard?code={code}&{link}")));
        assert_eq!(r.status, 400, "{link}");
        assert!(r.text().contains("ONBOARD_ERROR"), "{link}");
    }
    let r = env.get(&env.onboard("onboard?sourceType=pull"));
    assert_eq!(r.status, 400);
    assert!(r.text().contains("INVALID_CODE"));
    let r = env.get(&env.onboard("onboard?code=REF_unknown&sourceType=pull"));
    assert_eq!(r.status, 400);
    // A non-PKCE code is no good at user-reauth.
    let (_, q) = env
        .get(&env.onboard(&format!("user-reauth?code={code}")))
        .redirect();
    assert_eq!(param(&q, "errorCode").as_deref(), Some("INVALID_CODE"));
    // An unknown decision.
    let r = env.decide(
        &env.onboard(&format!("onboard?code={code}&sourceType=pull")),
        "maybe",
    );
    assert_eq!(r.status, 400);
}

#[test]
fn a_failed_account_syncs_again_after_reauthorize() {
    let env = env(ConsentMode::Page);
    let u = env.user();
    let instagram = env.account(&read_client(), &u.read_at, 4)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Marked as needing reauthorization: the default error.
    let v = env
        .control_post(
            &format!("users/{}/accounts/{instagram}/fail", u.id),
            json!({}),
        )
        .ok(200);
    assert_eq!(v["error"]["statusCode"], 511);
    let done = env.wait_done(&u.read_at, &env.trigger(&u.read_at));
    assert_eq!(done["status"]["state"], "partial");
    assert_eq!(
        done["status"]["details"][&instagram],
        json!({"state": "partial", "error": {"code": "ServiceAuthorizationError",
            "statusCode": 511, "message": "Service authorization required", "reauth": true}})
    );
    assert_eq!(services(&done), ["fitbit"]);
    assert_eq!(
        env.account(&read_client(), &u.read_at, 4)["accessTokenStatus"],
        json!({"authorized": false})
    );

    let reference = env
        .reference(
            &read_client(),
            json!({"type": "accountId", "value": instagram}),
        )
        .ok(200)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // References that do not do: another contract's, a cloud id, an unknown account.
    let foreign = env
        .reference(
            &write_client(),
            json!({"type": "accountId", "value": instagram}),
        )
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let storage = env.provisional_storage(&read_client());
    let cloud = env
        .reference(&read_client(), json!({"type": "cloudId", "value": storage}))
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let unknown = env
        .reference(
            &read_client(),
            json!({"type": "accountId", "value": "4_nope"}),
        )
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for bad in [&foreign, &cloud, &unknown, &"ref_made_up".to_owned()] {
        let (code, _) = env.reference_code(&read_client(), &u.read_at, json!({}));
        let (_, q) = env
            .get(&env.onboard(&format!("reauthorize?code={code}&accountRef={bad}")))
            .redirect();
        assert_eq!(
            q,
            pairs(&[
                ("keep", "1"),
                ("success", "false"),
                ("errorCode", "ONBOARD_ERROR")
            ])
        );
    }
    let (code, session) = env.reference_code(&read_client(), &u.read_at, json!({}));
    let r = env.get(&env.onboard(&format!("reauthorize?code={code}")));
    assert_eq!(r.status, 400, "no accountRef");
    let url = env.onboard(&format!(
        "reauthorize?code={code}&accountRef={reference}&lng=en"
    ));
    let html = env.get(&url).text();
    assert!(
        html.contains("Instagram") && html.contains(&instagram),
        "{html}"
    );
    let (_, q) = env.decide(&url, "allow").redirect();
    assert_eq!(q, pairs(&[("keep", "1"), ("success", "true")]));
    assert_eq!(
        env.account(&read_client(), &u.read_at, 4)["accessTokenStatus"]["authorized"],
        true
    );
    let control = env.control_get(&format!("users/{}/accounts", u.id)).ok(200);
    assert_eq!(control["failures"], json!({}));
    // The page's session syncs, and so does every later one, the account included.
    let done = env.wait_done(&u.read_at, &session);
    assert_eq!(done["status"]["state"], "completed", "{done}");
    assert_eq!(services(&done), ["fitbit", "instagram"]);
    let done = env.wait_done(&u.read_at, &env.trigger(&u.read_at));
    assert_eq!(done["status"]["details"][&instagram]["state"], "completed");
}

#[test]
fn revoke_withdraws_an_account_from_one_contract_only() {
    let env = env(ConsentMode::Page);
    let u = env.user();
    let instagram = env.account(&read_client(), &u.read_at, 4)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let tagged = env.push(&u, &[&instagram]);
    let other = env.push(&u, &["acc-1"]);
    let redirect = "http://localhost:9999/revoked?x=1";

    // The call's checks.
    env.revoke_url(&read_client(), &u.read_at, "4_nope", redirect)
        .error(404, "AccountNotFound");
    env.revoke_url(&read_client(), &u.read_at, "", redirect)
        .error(404, "AccountNotFound");
    env.revoke_url(&read_client(), &u.read_at, &instagram, "ftp://x/")
        .error(404, "InvalidRedirectUri");
    env.revoke_url(&read_client(), "at_made_up", &instagram, redirect)
        .error(401, "InvalidToken");
    env.revoke_url(&read_client(), &u.write_at, &instagram, redirect)
        .error(401, "InvalidToken");

    let location = |r: Reply| {
        let v = r.ok(201);
        assert_eq!(v.as_object().unwrap().len(), 1);
        v["location"].as_str().unwrap().to_owned()
    };
    let page = location(env.revoke_url(&read_client(), &u.read_at, &instagram, redirect));
    assert!(page.starts_with(&env.onboard("revoke?code=RVK_")), "{page}");
    let html = env.get(&page).text();
    assert!(html.contains(r#"action="revoke/decision""#) && html.contains(&instagram));
    let (url, q) = env.decide(&page, "deny").redirect();
    assert_eq!(url.path(), "/revoked");
    assert_eq!(
        q,
        pairs(&[
            ("x", "1"),
            ("result", "failed"),
            ("error_message", "USER_CANCEL")
        ])
    );
    assert!(
        env.account_ids(&read_client(), &u.read_at)
            .contains(&instagram)
    );

    let page = location(env.revoke_url(&read_client(), &u.read_at, &instagram, redirect));
    let (_, q) = env.decide(&page, "allow").redirect();
    assert_eq!(q, pairs(&[("x", "1"), ("result", "success")]));
    assert_eq!(env.decide(&page, "allow").status, 400, "spent");

    // Gone for the read contract: accounts, mapped files, details, tagged pushes.
    assert!(
        !env.account_ids(&read_client(), &u.read_at)
            .contains(&instagram)
    );
    let done = env.wait_done(&u.read_at, &env.trigger(&u.read_at));
    assert_eq!(services(&done), ["fitbit"]);
    assert!(
        done["status"]["details"].get(&instagram).is_none(),
        "{done}"
    );
    let names = file_names(&done);
    assert!(
        !names.contains(&tagged) && names.contains(&other),
        "{names:?}"
    );
    env.revoke_url(&read_client(), &u.read_at, &instagram, redirect)
        .error(404, "AccountNotFound");
    env.delete_account(&read_client(), &u.read_at, Some(&instagram))
        .error(404, "AccountNotFound");
    // Still there for the write contract and in the library.
    assert!(
        env.account_ids(&write_client(), &u.write_at)
            .contains(&instagram)
    );
    let control = env.control_get(&format!("users/{}/accounts", u.id)).ok(200);
    assert_eq!(control["revoked"], json!({ read_client(): [instagram] }));
    assert_eq!(env.stored(&u.id).len(), 2);

    // Onboarding the service again through the read contract shares it again.
    let (code, _) = env.reference_code(&read_client(), &u.read_at, json!({}));
    let url = env.onboard(&format!("onboard?code={code}&sourceType=pull&service=5"));
    let (_, q) = env.decide(&url, "allow").redirect();
    assert_eq!(param(&q, "success").as_deref(), Some("true"));
    let ids = env.account_ids(&read_client(), &u.read_at);
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&instagram), "the same account, not a new one");
}

#[test]
fn deleting_an_account_removes_it_and_its_files() {
    let env = env(ConsentMode::Auto);
    let u = env.user();
    let fitbit = env.account(&read_client(), &u.read_at, 12)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let tagged = env.push(&u, &["acc-1", &fitbit]);
    let other = env.push(&u, &["acc-1"]);
    env.control_post(&format!("users/{}/accounts/{fitbit}/fail", u.id), json!({}))
        .ok(200);

    env.delete_account(&read_client(), &u.read_at, None)
        .error(404, "AccountNotFound");
    let m = env
        .delete_account(&read_client(), &u.read_at, Some("12_nope"))
        .error(404, "AccountNotFound");
    assert_eq!(m, "The account (12_nope) was not found");
    env.delete_account(&read_client(), "at_made_up", Some(&fitbit))
        .error(401, "InvalidToken");

    let v = env
        .delete_account(&write_client(), &u.write_at, Some(&fitbit))
        .ok(200);
    assert_eq!(v, json!({"deleted": true}));
    for (client, at) in [(read_client(), &u.read_at), (write_client(), &u.write_at)] {
        assert!(!env.account_ids(&client, at).contains(&fitbit));
    }
    let done = env.wait_done(&u.read_at, &env.trigger(&u.read_at));
    assert_eq!(
        done["status"]["state"], "completed",
        "its failure went with it"
    );
    assert_eq!(services(&done), ["instagram"]);
    assert!(done["status"]["details"].get(&fitbit).is_none());
    let names = file_names(&done);
    assert!(
        !names.contains(&tagged) && names.contains(&other),
        "{names:?}"
    );
    assert_eq!(env.stored(&u.id), std::slice::from_ref(&other));
    assert!(!env.library_dir(&u.id).join(&tagged).exists());
    assert!(env.library_dir(&u.id).join(&other).exists());
    let control = env.control_get(&format!("users/{}/accounts", u.id)).ok(200);
    assert_eq!(control["failures"], json!({}));
    env.delete_account(&read_client(), &u.read_at, Some(&fitbit))
        .error(404, "AccountNotFound");
    env.control_post(&format!("users/{}/accounts/{fitbit}/fail", u.id), json!({}))
        .error(404, "NotFound");
}

#[test]
fn deleting_the_user_kills_every_token_and_the_library() {
    let env = env(ConsentMode::Auto);
    let u = env.user();
    let pushed = env.push(&u, &["acc-1"]);
    let dir = env.library_dir(&u.id);
    assert!(dir.join(&pushed).exists());
    let (_, challenge) = pkce();
    let (reauth, _) = env.reference_code(
        &read_client(),
        &u.read_at,
        json!({"code_challenge": challenge, "code_challenge_method": "S256"}),
    );

    // The sandbox's disk fails (its trash is a file): 500, and nothing changed.
    let trash = env.state_dir().join("trash");
    std::fs::write(&trash, b"in the way").unwrap();
    env.delete_user(&read_client(), &u.read_at)
        .error(500, "InternalError");
    assert!(dir.join(&pushed).exists());
    assert_eq!(env.account_ids(&read_client(), &u.read_at).len(), 2);
    assert_eq!(env.stored(&u.id), std::slice::from_ref(&pushed));
    std::fs::remove_file(&trash).unwrap();

    let v = env.delete_user(&read_client(), &u.read_at).ok(200);
    assert_eq!(v, json!({"deleted": true}));
    assert!(!dir.exists(), "the library is gone from disk");
    let left: Vec<_> = std::fs::read_dir(&trash).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    for (client, at) in [(read_client(), &u.read_at), (write_client(), &u.write_at)] {
        let m = env.accounts_reply(&client, at).error(401, "InvalidToken");
        assert_eq!(m, "The token (access_token) is invalid");
        env.delete_user(&client, at).error(401, "InvalidToken");
    }
    let m = env
        .refresh(&read_client(), &u.read_rt)
        .error(401, "InvalidToken");
    assert_eq!(m, "The token (refresh_token) is invalid");
    env.token_reference(
        &read_client(),
        &u.read_at,
        json!({"code_challenge": challenge, "code_challenge_method": "S256"}),
    )
    .error(401, "InvalidToken");
    // Its codes are gone too, and the control API no longer knows the user.
    let r = env.get(&env.onboard(&format!("user-reauth?code={reauth}")));
    assert_eq!(r.status, 400);
    env.control_get(&format!("users/{}/accounts", u.id))
        .error(404, "NotFound");
    let users = env.control_get("users").ok(200);
    assert!(users["users"].as_array().unwrap().is_empty(), "{users}");
    // Another user is untouched.
    let other = env.user();
    assert_eq!(env.account_ids(&read_client(), &other.read_at).len(), 2);
}

#[test]
fn the_account_set_and_withdrawals_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let persistent = || SandboxConfig {
        state_dir: Some(dir.path().to_path_buf()),
        ..config(ConsentMode::Auto)
    };
    let (u, before) = {
        let env = start(persistent());
        let u = env.user();
        let (code, _) = env.reference_code(&read_client(), &u.read_at, json!({}));
        env.get(&env.onboard(&format!("onboard?code={code}&sourceType=pull&service=30")))
            .redirect();
        let fitbit = env.account(&read_client(), &u.read_at, 12)["id"]
            .as_str()
            .unwrap()
            .to_owned();
        env.delete_account(&read_client(), &u.read_at, Some(&fitbit))
            .ok(200);
        let instagram = env.account(&read_client(), &u.read_at, 4)["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let page = env
            .revoke_url(&write_client(), &u.write_at, &instagram, CALLBACK)
            .ok(201)["location"]
            .as_str()
            .unwrap()
            .to_owned();
        env.get(&page).redirect();
        let before = env.accounts_reply(&read_client(), &u.read_at).ok(200);
        let garmin = before
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["serviceTypeId"] == 20);
        assert!(garmin.is_some(), "{before}");
        assert_eq!(before.as_array().unwrap().len(), 2);
        (u, before)
    };
    let env = start(persistent());
    let after = env.accounts_reply(&read_client(), &u.read_at).ok(200);
    // The same accounts (the last-sync time aside).
    let strip = |v: &Value| -> Vec<Value> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|a| {
                let mut a = a.clone();
                a.as_object_mut().unwrap().remove("updatedDate");
                a
            })
            .collect()
    };
    assert_eq!(strip(&after), strip(&before));
    let write_view = env.account_ids(&write_client(), &u.write_at);
    assert_eq!(
        write_view.len(),
        1,
        "instagram stays withdrawn from the write contract"
    );
    let done = env.wait_done(&u.read_at, &env.trigger(&u.read_at));
    assert_eq!(services(&done), ["garmin", "instagram"]);
}

// ---------------------------------------------------------------------------
// The consent pages as a browser sees them, and the testkit's helpers.

/// What a browser posts when the user presses `decision` on a consent page: the form's
/// action resolved against the page URL, and its hidden fields.
fn submit(env: &Env, page_url: &str, html: &str, decision: &str) -> Reply {
    let action = html
        .split("<form method=\"post\" action=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a form");
    let target = url::Url::parse(page_url).unwrap().join(action).unwrap();
    let unescape = |s: &str| {
        s.replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    };
    let mut form = form_urlencoded::Serializer::new(String::new());
    for input in html.split("<input type=\"hidden\" name=\"").skip(1) {
        let (name, rest) = input.split_once('"').unwrap();
        let value = rest
            .split_once("value=\"")
            .and_then(|(_, v)| v.split_once('"'))
            .unwrap()
            .0;
        form.append_pair(&unescape(name), &unescape(value));
    }
    form.append_pair("decision", decision);
    reply(
        env.http
            .post(target.as_str())
            .content_type("application/x-www-form-urlencoded")
            .send(form.finish()),
    )
}

/// `oauth/authorize` as `client` with the PKCE `challenge`, `state` and `extra` claims,
/// and `actions` in the body: the answer (201), and the verified server token's payload.
fn preauthorize(
    env: &Env,
    client: &str,
    challenge: &str,
    state: &str,
    extra: Value,
    actions: Option<Value>,
) -> (Value, Value) {
    let mut claims = json!({"response_type": "code", "response_mode": "query",
        "code_challenge_method": "S256", "code_challenge": challenge,
        "redirect_uri": CALLBACK, "state": state});
    if let (Some(c), Value::Object(more)) = (claims.as_object_mut(), extra) {
        c.extend(more);
    }
    let mut body = json!({"agent": agent()});
    if let Some(a) = actions {
        body["actions"] = a;
    }
    let answer = reply(
        env.http
            .post(&env.api("oauth/authorize"))
            .header("authorization", env.bearer(client, claims))
            .content_type("application/json")
            .send(body.to_string()),
    )
    .ok(201);
    let pre = env.server_payload(answer["token"].as_str().unwrap(), &env.api("jwks/oauth"));
    (answer, pre)
}

#[test]
fn every_consent_page_posts_its_own_form() {
    let env = env(ConsentMode::Page);
    let u = env.user();
    // authorize
    let (_, challenge) = pkce();
    let (_, pre) = preauthorize(&env, &read_client(), &challenge, "a&b", json!({}), None);
    let authorize = env.onboard(&format!(
        "authorize?code={}&sourceType=pull&lng=nl",
        pre["preauthorization_code"].as_str().unwrap()
    ));
    // The authorize page's link is checked as the onboard page's is.
    for bad in [
        "lng=x",
        "triggerQuery=yes",
        "service=fitbit",
        "sourceType=both",
    ] {
        let r = env.get(&env.onboard(&format!(
            "authorize?code={}&{bad}",
            pre["preauthorization_code"].as_str().unwrap()
        )));
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.text().contains("ONBOARD_ERROR"), "{bad}");
    }
    // user-reauth, onboard, reauthorize, revoke
    let (code, _) = env.reference_code(
        &read_client(),
        &u.read_at,
        json!({"code_challenge": challenge, "code_challenge_method": "S256", "state": "\"q\""}),
    );
    let reauth = env.onboard(&format!("user-reauth?code={code}&lng=en-GB"));
    let (code, _) = env.reference_code(&read_client(), &u.read_at, json!({}));
    let onboard = env.onboard(&format!("onboard?code={code}&sourceType=pull&service=30"));
    let instagram = env.account(&read_client(), &u.read_at, 4)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let reference = env
        .reference(
            &read_client(),
            json!({"type": "accountId", "value": instagram}),
        )
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (code, _) = env.reference_code(&read_client(), &u.read_at, json!({}));
    let reauthorize = env.onboard(&format!("reauthorize?code={code}&accountRef={reference}"));
    let revoke = env
        .revoke_url(&read_client(), &u.read_at, &instagram, CALLBACK)
        .json()["location"]
        .as_str()
        .unwrap()
        .to_owned();

    let expected: [(&str, &[(&str, &str)]); 5] = [
        (&authorize, &[("success", "true"), ("state", "a&b")]),
        (&reauth, &[("success", "true"), ("state", "\"q\"")]),
        (&onboard, &[("success", "true")]),
        (&reauthorize, &[("success", "true")]),
        (&revoke, &[("result", "success")]),
    ];
    for (url, wanted) in expected {
        let page = env.get(url);
        assert_eq!(page.status, 200, "{url}: {}", page.text());
        let (_, q) = submit(&env, url, &page.text(), "allow").redirect();
        for (k, v) in wanted {
            assert_eq!(param(&q, k).as_deref(), Some(*v), "{url}: {q:?}");
        }
        assert_eq!(param(&q, "keep").as_deref(), Some("1"));
    }
    env.account(&read_client(), &u.read_at, 20);
    assert!(
        !env.account_ids(&read_client(), &u.read_at)
            .contains(&instagram)
    );
}

#[test]
fn the_testkit_control_drives_every_page() {
    use digime_testkit::control::Control;
    let env = env(ConsentMode::Page);
    let control = Control::new(env.sandbox.info());
    let u = env.user();
    assert!(control.user_exists(&u.id));
    assert_eq!(control.account_ids(&u.id).len(), 2);
    let instagram = control.account_of(&u.id, 4).unwrap();
    assert_eq!(control.account_of(&u.id, 19), None);

    control.fail_account(&u.id, &instagram);
    assert_eq!(
        control.account_state(&u.id)["failures"][&instagram]["statusCode"],
        511
    );
    let done = env.wait_done(&u.read_at, &env.trigger(&u.read_at));
    assert_eq!(done["status"]["details"][&instagram]["state"], "partial");
    assert!(control.heal_account(&u.id, &instagram));
    assert!(!control.heal_account(&u.id, &instagram));
    control.fail_account(&u.id, &instagram);

    let reference = env
        .reference(
            &read_client(),
            json!({"type": "accountId", "value": instagram}),
        )
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (code, _) = env.reference_code(&read_client(), &u.read_at, json!({}));
    let url = env.onboard(&format!("reauthorize?code={code}&accountRef={reference}"));
    assert!(control.consent_page(&url).contains("Instagram"));
    let (status, location) = control.decide_on(&url, "allow");
    assert_eq!(status, 302);
    assert!(location.unwrap().ends_with("keep=1&success=true"));
    assert_eq!(control.account_state(&u.id)["failures"], json!({}));

    let (code, _) = env.reference_code(&read_client(), &u.read_at, json!({"state": "s"}));
    let url = env.onboard(&format!("onboard?code={code}&sourceType=pull&service=29"));
    let (_, location) = control.decide_on(&url, "deny");
    assert!(
        location
            .unwrap()
            .ends_with("success=false&errorCode=USER_CANCEL&state=s")
    );
    assert_eq!(control.account_of(&u.id, 19), None);

    // `decide` (a bare preauthorization code) still works.
    assert_eq!(control.decide("PRE_unknown", "allow").0, 400);

    let pushed = env.push(&u, &["acc-1"]);
    assert!(control.library_dir(&u.id).join(pushed).exists());
    env.delete_user(&read_client(), &u.read_at).ok(200);
    assert!(!control.user_exists(&u.id));
    assert!(!control.library_dir(&u.id).exists());
}

#[test]
fn the_control_api_lists_live_refresh_tokens_by_hash_only() {
    let env = env(ConsentMode::Auto);
    let user = env.user();
    let hashes = |env: &Env| -> Vec<String> {
        env.control_json(&format!("users/{}/refresh-tokens", user.id))["refreshTokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["sha256"].as_str().unwrap().to_owned())
            .collect()
    };
    let sha = |t: &str| -> String {
        digime_crypto::sha256(t.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let before = hashes(&env);
    assert_eq!(before.len(), 2, "one per demo contract");
    assert!(before.contains(&sha(&user.read_rt)));
    let listed = env.control_get(&format!("users/{}/refresh-tokens", user.id));
    assert!(
        !listed.text().contains(&user.read_rt),
        "never the token itself"
    );
    // A refresh rotates it: the old one leaves the list, the new one joins it.
    let v = env.refresh(&read_client(), &user.read_rt).ok(201);
    let payload = env.server_payload(v["token"].as_str().unwrap(), &env.api("jwks/oauth"));
    let new_rt = payload["refresh_token"]["value"].as_str().unwrap();
    let after = hashes(&env);
    assert_eq!(after.len(), 2);
    assert!(!after.contains(&sha(&user.read_rt)) && after.contains(&sha(new_rt)));
    env.control_get("users/nobody/refresh-tokens")
        .error(404, "NotFound");
}

#[test]
fn the_authorize_page_shows_what_a_person_decides_on_and_its_scope_is_the_sessions() {
    let env = env(ConsentMode::Page);
    let u = env.user();
    let (verifier, challenge) = pkce();
    // A read contract linked to an existing user, asking for one service of one group,
    // since 2025.
    let actions = json!({"pull": {"scope": {
        "timeRanges": [{"from": 1_735_689_600u64}],
        "serviceGroups": [{"id": 4, "serviceTypes": [{"id": 12}]}],
    }}});
    let (answer, pre) = preauthorize(
        &env,
        &read_client(),
        &challenge,
        "s1",
        json!({"access_token": u.read_at}),
        Some(actions),
    );
    let session = answer["session"]["key"].as_str().unwrap().to_owned();
    let page_url = env.onboard(&format!(
        "authorize?code={}&sourceType=pull",
        pre["preauthorization_code"].as_str().unwrap()
    ));
    let page = env.get(&page_url);
    assert_eq!(page.status, 200);
    let html = page.text();
    for expected in [
        // The app, the contract, and what it may do.
        "sandbox-demo-app",
        "demo-read",
        "reads your data (it cannot change your library)",
        // The scope and the time range.
        "from Wed, 01 Jan 2025 00:00:00 GMT",
        "Health &amp; Fitness: services 12",
        // Linked to the user's library.
        "your existing digi.me library",
        // Phone width, and two alike buttons.
        r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#,
        r#"<button type="submit" name="decision" value="allow">Allow</button>"#,
        r#"<button type="submit" name="decision" value="deny">Deny</button>"#,
    ] {
        assert!(html.contains(expected), "{expected}\n{html}");
    }
    // Allowed: the session the authorization handed out reads only that service (of
    // the mapped data; raw files are scoped by criteria).
    let (_, q) = env.decide(&page_url, "allow").redirect();
    let code = q.iter().find(|(k, _)| k == "code").unwrap().1.clone();
    let at = env.access_token_of(&read_client(), &code, &verifier);
    let done = env.wait_done(&at, &session);
    assert_eq!(services(&done), ["fitbit"], "{done}");

    // A write contract, new user: it says so, and asks for no read scope.
    let (_, pre) = preauthorize(&env, &write_client(), &pkce().1, "s2", json!({}), None);
    let html = env
        .get(&env.onboard(&format!(
            "authorize?code={}&sourceType=pull&service=29",
            pre["preauthorization_code"].as_str().unwrap()
        )))
        .text();
    for expected in [
        "writes data into your library (it cannot read it)",
        "a new digi.me library",
        "Spotify",
    ] {
        assert!(html.contains(expected), "{expected}\n{html}");
    }
    assert!(!html.contains("Time range"), "{html}");
}
