//! Discovery, sample data sets, push accounts, push to provider and the portability
//! report, exercised as a server: raw HTTP, request JWTs signed by hand, answers
//! checked on the wire. `discovery/{sources,countries,platforms,categories}`,
//! `permission-access/sample/datasets/{sourceId}`, `sampleDataSet` and `sourceType=push`
//! on the `authorize` and `onboard` pages, `permission-access/import/h:accountId/fhir/…`
//! and `export/medmij/report`.

mod support;

use digime_sandbox::{ConsentMode, SandboxConfig};
use serde_json::{Value, json};
use support::pkce;
use support::{
    Env, Reply, User, agent, bearer, claims, config, file_names, nonce, now_ms, param, read_client,
    reply, start, write_client,
};

const CALLBACK: &str = "http://localhost:9999/cb?keep=1";

/// The approved sources, by id: 14 pull and 4 push.
const APPROVED: [u64; 18] = [
    1, 2, 4, 5, 7, 16, 17, 18, 29, 30, 31, 40, 41, 42, 50, 51, 52, 55,
];

fn env() -> Env {
    start(config(ConsentMode::Page))
}

fn ids(v: &Value) -> Vec<u64> {
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_u64().unwrap())
        .collect()
}

impl Env {
    /// A discovery call of the demo read contract (a client-only bearer) with `body`
    /// as it is, `None` for none at all.
    fn discover_raw(&self, what: &str, body: Option<&str>) -> Reply {
        let req = self
            .http
            .post(&self.api(&format!("discovery/{what}")))
            .header("authorization", self.bearer(&read_client(), json!({})))
            .header("accept", "application/json")
            .content_type("application/json");
        reply(match body {
            Some(b) => req.send(b),
            None => req.send_empty(),
        })
    }
    fn discover(&self, what: &str, body: Value) -> Reply {
        self.discover_raw(what, Some(&body.to_string()))
    }
    fn sources(&self, body: Value) -> Value {
        self.discover("sources", body).ok(200)
    }
    fn datasets(&self, source: &str) -> Reply {
        reply(
            self.http
                .get(&self.api(&format!("permission-access/sample/datasets/{source}")))
                .header("authorization", self.bearer(&read_client(), json!({})))
                .call(),
        )
    }

    /// `oauth/authorize` for `client`: `(preauthorization code, session key, verifier)`.
    fn preauthorize(&self, client: &str) -> (String, String, String) {
        let (verifier, challenge) = pkce();
        let r = reply(
            self.http
                .post(&self.api("oauth/authorize"))
                .header(
                    "authorization",
                    self.bearer(
                        client,
                        json!({"response_type": "code", "response_mode": "query",
                            "code_challenge_method": "S256", "code_challenge": challenge,
                            "redirect_uri": CALLBACK, "state": "st-1"}),
                    ),
                )
                .content_type("application/json")
                .send(json!({"agent": agent()}).to_string()),
        );
        let v = r.ok(201);
        let pre = self.server_payload(v["token"].as_str().unwrap(), &self.api("jwks/oauth"));
        (
            pre["preauthorization_code"].as_str().unwrap().to_owned(),
            v["session"]["key"].as_str().unwrap().to_owned(),
            verifier,
        )
    }

    /// An `oauth/token/reference` code (for the `onboard` page) of `client`.
    fn reference_code(&self, client: &str, at: &str) -> String {
        let r = reply(
            self.http
                .post(&self.api("oauth/token/reference"))
                .header(
                    "authorization",
                    self.bearer(
                        client,
                        json!({"access_token": at, "redirect_uri": CALLBACK}),
                    ),
                )
                .content_type("application/json")
                .send(json!({"agent": agent()}).to_string()),
        );
        let v = r.ok(201);
        let payload = self.server_payload(v["token"].as_str().unwrap(), &self.api("jwks/oauth"));
        payload["reference_code"].as_str().unwrap().to_owned()
    }

    /// Opens an onboard page and, if it shows the consent page, allows: the callback.
    fn allow(&self, page_url: &str) -> url::Url {
        let r = self.get(page_url);
        if r.status == 302 {
            return r.location();
        }
        assert_eq!(r.status, 200, "{}", r.text());
        self.decide(page_url, "allow").location()
    }

    fn accounts(&self, client: &str, at: &str) -> Vec<Value> {
        self.accounts_reply(client, at)
            .ok(200)
            .as_array()
            .unwrap()
            .clone()
    }

    fn trigger(&self, at: &str) -> String {
        let r = reply(
            self.http
                .post(&self.api("permission-access/trigger"))
                .header("authorization", self.read_bearer(at))
                .content_type("application/json")
                .send(json!({"agent": agent()}).to_string()),
        );
        r.ok(202)["session"]["key"].as_str().unwrap().to_owned()
    }

    /// A FHIR push with `bearer`, to `account` (no header with `None`).
    fn fhir_with(
        &self,
        bearer: &str,
        path: &str,
        account: Option<&str>,
        content_type: &str,
        body: &[u8],
    ) -> Reply {
        let mut req = self
            .http
            .post(&self.api(&format!("permission-access/import/h:accountId/{path}")))
            .header("authorization", bearer)
            .header("accept", "application/json")
            .content_type(content_type);
        if let Some(a) = account {
            req = req.header("accountId", a);
        }
        reply(req.send(body))
    }
    fn fhir(&self, write_at: &str, account: &str, body: &Value) -> Reply {
        self.fhir_with(
            &self.user_bearer(&write_client(), write_at),
            "fhir/stu3",
            Some(account),
            "application/json",
            body.to_string().as_bytes(),
        )
    }

    fn report(&self, client: &str, at: &str, query: &str) -> Reply {
        reply(
            self.http
                .get(&self.api(&format!("export/medmij/report?{query}")))
                .header("authorization", self.user_bearer(client, at))
                .header("accept", "application/octet-stream")
                .call(),
        )
    }

    /// The push account of a user made through the `authorize` page with the write
    /// contract: `(write access token, account id, accountReference)`.
    fn push_account(&self, source: u64) -> (String, String, String) {
        let (pre, _, verifier) = self.preauthorize(&write_client());
        let back = self.allow(&self.onboard(&format!(
            "authorize?code={pre}&sourceType=push&service={source}"
        )));
        assert_eq!(param(&back, "success").as_deref(), Some("true"), "{back}");
        let reference = param(&back, "accountReference").expect("accountReference");
        let at = self.access_token_of(&write_client(), &param(&back, "code").unwrap(), &verifier);
        let account = self
            .accounts(&write_client(), &at)
            .into_iter()
            .find(|a| a["reference"] == reference.as_str())
            .expect("the account the reference names");
        assert_eq!(account["type"], "PUSH");
        assert_eq!(account["sourceId"], source);
        (at, account["id"].as_str().unwrap().to_owned(), reference)
    }

    fn pushes(&self, user: &str) -> Vec<Value> {
        self.control_json(&format!("users/{user}/provider-pushes"))["pushes"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// The user an access token is of (the control API's view of the users).
    fn newest_user(&self) -> String {
        let users = self.control_json("users");
        users["users"].as_array().unwrap().last().unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

// ---------------------------------------------------------------------------
// discovery/sources

#[test]
fn sources_by_default_are_the_published_ones_of_both_types_in_id_order() {
    let env = env();
    for body in [None, Some(""), Some("{}")] {
        let v = env.discover_raw("sources", body).ok(200);
        assert_eq!(ids(&v), APPROVED, "{body:?}");
        assert_eq!(v["total"], APPROVED.len());
        assert_eq!(v["limit"], 100);
        assert_eq!(v["offset"], 0);
        assert_eq!(v.as_object().unwrap().len(), 4);
    }
    let v = env.sources(json!({"query": {"filter": {"id": [16, 50]}}}));
    let fitbit = &v["data"][0];
    assert_eq!(fitbit["name"], "Fitbit");
    assert_eq!(fitbit["reference"], "fitbit");
    assert_eq!(fitbit["publishedStatus"], "approved");
    assert!(fitbit["publishedDate"].as_u64().unwrap() > 1_400_000_000_000);
    assert_eq!(fitbit["onboardable"], true);
    assert_eq!(fitbit["dynamic"], false);
    assert_eq!(
        fitbit["type"],
        json!({"id": 1, "name": "pull", "reference": "pull"})
    );
    assert_eq!(fitbit["service"]["id"], 12);
    assert_eq!(fitbit["service"]["name"], "Fitbit");
    assert_eq!(fitbit["service"]["publishedStatus"], "approved");
    assert_eq!(
        fitbit["category"],
        json!([{"id": 4, "name": "Health & Fitness", "reference": "health"}])
    );
    assert!(
        fitbit["country"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["code"] == "NL")
    );
    assert_eq!(fitbit["platform"].as_array().unwrap().len(), 4);
    assert_eq!(fitbit["resource"]["mimetype"], "image/png");
    assert_eq!(fitbit["json"], json!({"authorisation": {"type": "saas"}}));
    assert!(fitbit.get("medicalCenter").is_none());
    let provider = &v["data"][1];
    assert_eq!(provider["type"]["id"], 2);
    assert_eq!(provider["service"]["reference"], "medmij");
    assert_eq!(provider["category"][0]["name"], "Medical");
    assert!(!provider["medicalCenter"].as_array().unwrap().is_empty());
    assert!(!provider["practitioner"].as_array().unwrap().is_empty());
    // The ids the demo library uses.
    let v = env.sources(json!({"query": {"filter": {"id": [16, 5, 29, 30]}}}));
    let services: Vec<(u64, u64)> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_u64().unwrap(),
                s["service"]["id"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(services, [(5, 4), (16, 12), (29, 19), (30, 20)]);
}

#[test]
fn sources_filters_are_anded_and_any_value_of_a_list_matches() {
    let env = env();
    let f = |filter: Value| ids(&env.sources(json!({"query": {"filter": filter}})));
    let all = json!([
        "approved",
        "pending",
        "deprecated",
        "blocked",
        "sampledataonly"
    ]);
    assert_eq!(f(json!({"publishedStatus": all})).len(), 30);
    assert_eq!(f(json!({"publishedStatus": ["pending"]})), [6, 32, 43, 53]);
    assert_eq!(
        f(json!({"publishedStatus": ["deprecated", "blocked"]})),
        [3, 19, 21, 54, 56]
    );
    assert_eq!(
        f(json!({"publishedStatus": ["sampledataonly"]})),
        [20, 33, 44]
    );
    // What the Node client sends by default: pull, published.
    assert_eq!(
        f(json!({"type": {"id": [1]}, "publishedStatus": ["approved"]})),
        APPROVED[..14]
    );
    assert_eq!(f(json!({"type": {"id": [2]}})), [50, 51, 52, 55]);
    assert_eq!(f(json!({"type": {"id": [1, 2]}})), APPROVED);
    assert_eq!(
        f(json!({"type": {"id": [2]}, "publishedStatus": all})),
        [50, 51, 52, 53, 54, 55, 56]
    );
    assert_eq!(f(json!({"service": {"id": [40]}})), [50, 51, 52, 55]);
    assert_eq!(f(json!({"service": {"id": [12, 19]}})), [16, 29]);
    assert_eq!(f(json!({"category": {"id": [3]}})), [40, 41, 42]);
    assert_eq!(
        f(json!({"country": {"id": [3]}, "category": {"id": [3]}})),
        [42]
    );
    assert_eq!(
        f(json!({"country": {"id": [2]}, "type": {"id": [1]}, "category": {"id": [3]}})),
        [41]
    );
    assert_eq!(f(json!({"platform": {"id": [4]}})), [16, 17, 18, 30]);
    assert_eq!(f(json!({"id": [5, 16, 6]})), [5, 16]);
    assert_eq!(f(json!({"id": [6], "publishedStatus": ["pending"]})), [6]);
    assert_eq!(f(json!({"sourceId": 29})), [29]);
    assert_eq!(f(json!({"sourceId": 6})), Vec::<u64>::new());
    assert_eq!(f(json!({"reference": ["garmin", "spotify"]})), [29, 30]);
    assert_eq!(f(json!({"alias": ["insta"]})), [5]);
    assert_eq!(f(json!({"alias": ["nothing"]})), Vec::<u64>::new());
    // An empty list is as if absent.
    assert_eq!(f(json!({"id": [], "country": {"id": []}})), APPROVED);
}

#[test]
fn sources_search_and_query_string_are_case_insensitive_substrings() {
    let env = env();
    let s = |query: Value| ids(&env.sources(json!({ "query": query })));
    // "Google Fit" matches too, but is deprecated.
    assert_eq!(s(json!({"search": {"name": ["FIT"]}})), [16]);
    assert_eq!(s(json!({"search": {"name": ["fit", "spot"]}})), [16, 29]);
    assert_eq!(s(json!({"search": {"abbreviation": ["ing"]}})), [41]);
    assert_eq!(
        s(
            json!({"search": {"alias": ["ring"]}, "filter": {"publishedStatus": ["sampledataonly"]}})
        ),
        [20]
    );
    assert_eq!(s(json!({"search": {"medicalCenter": ["amstel"]}})), [51]);
    assert_eq!(s(json!({"search": {"practitioner": ["JANSEN"]}})), [50]);
    // Every search field must match.
    assert_eq!(
        s(json!({"search": {"name": ["ziekenhuis"], "practitioner": ["jansen"]}})),
        Vec::<u64>::new()
    );
    // queryString: name, alias, abbreviation, service name, medical centre.
    assert_eq!(s(json!({"queryString": "medmij"})), [50, 51, 52, 55]);
    assert_eq!(s(json!({"queryString": "meta"})), [1]);
    assert_eq!(s(json!({"queryString": "GGZN"})), [55]);
    assert_eq!(s(json!({"queryString": "utrecht"})), [50]);
    assert_eq!(
        s(json!({"queryString": "garmin", "filter": {"type": {"id": [1]}}})),
        [30]
    );
    assert_eq!(
        s(json!({"queryString": "no such thing"})),
        Vec::<u64>::new()
    );
}

#[test]
fn sources_include_sort_and_paging() {
    let env = env();
    let v = env.sources(
        json!({"query": {"include": ["name", "service.name", "category", "country.code"]}}),
    );
    for s in v["data"].as_array().unwrap() {
        let mut keys: Vec<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["category", "country", "id", "name", "service"],
            "{s}"
        );
        assert_eq!(s["service"].as_object().unwrap().len(), 1, "{s}");
        assert!(s["category"][0]["reference"].is_string(), "{s}");
        assert!(
            s["country"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| { c.as_object().unwrap().len() == 1 && c["code"].is_string() })
        );
    }
    let v =
        env.sources(json!({"query": {"include": ["abbreviation"], "filter": {"id": [16, 41]}}}));
    assert_eq!(
        v["data"],
        json!([{"id": 16}, {"id": 41, "abbreviation": "ING"}])
    );

    let names = |v: &Value| -> Vec<String> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let asc = names(&env.sources(json!({"sort": {"name": "asc"}})));
    let mut sorted = asc.clone();
    sorted.sort_by_key(|n| n.to_lowercase());
    assert_eq!(asc, sorted);
    assert_eq!(asc[0], "Apotheek Centrum");
    let mut desc = names(&env.sources(json!({"sort": {"name": "desc"}})));
    desc.reverse();
    assert_eq!(desc, asc);

    let whole = ids(&env.sources(json!({})));
    let page = env.sources(json!({"limit": 5, "offset": 5}));
    assert_eq!(ids(&page), whole[5..10]);
    assert_eq!(page["total"], 18);
    assert_eq!(page["limit"], 5);
    assert_eq!(page["offset"], 5);
    let last = env.sources(json!({"limit": 5, "offset": 15}));
    assert_eq!(ids(&last), whole[15..]);
    let past = env.sources(json!({"offset": 100}));
    assert_eq!(ids(&past), Vec::<u64>::new());
    assert_eq!(past["total"], 18);
    let big = env.sources(
        json!({"limit": 1000, "query": {"filter": {"publishedStatus": ["approved", "pending"]}}}),
    );
    assert_eq!(big["total"], 22);
    let paged = env.sources(json!({"limit": 1, "offset": 0, "sort": {"name": "desc"}}));
    assert_eq!(names(&paged), [asc.last().unwrap().clone()]);
}

#[test]
fn sources_refuse_bad_bodies_and_bad_bearers() {
    let env = env();
    for body in [
        json!({"limit": 0}),
        json!({"limit": 1001}),
        json!({"limit": "10"}),
        json!({"limit": 1.5}),
        json!({"offset": -1}),
        json!({"offset": "0"}),
        json!({"page": 1}),
        json!({"sort": "asc"}),
        json!({"sort": {}}),
        json!({"sort": {"name": "up"}}),
        json!({"sort": {"name": "asc", "by": "id"}}),
        json!({"query": []}),
        json!({"query": {"foo": 1}}),
        json!({"query": {"queryString": 5}}),
        json!({"query": {"search": {"name": "fit"}}}),
        json!({"query": {"search": {"title": ["x"]}}}),
        json!({"query": {"search": {"name": [1]}}}),
        json!({"query": {"include": "name"}}),
        json!({"query": {"include": ["nope"]}}),
        json!({"query": {"include": ["service.nope"]}}),
        json!({"query": {"filter": []}}),
        json!({"query": {"filter": {"foo": [1]}}}),
        json!({"query": {"filter": {"id": "1"}}}),
        json!({"query": {"filter": {"id": ["1"]}}}),
        json!({"query": {"filter": {"id": [-1]}}}),
        json!({"query": {"filter": {"type": {"id": [3]}}}}),
        json!({"query": {"filter": {"type": {"ids": [1]}}}}),
        json!({"query": {"filter": {"type": [1]}}}),
        json!({"query": {"filter": {"publishedStatus": ["live"]}}}),
        json!({"query": {"filter": {"publishedStatus": "approved"}}}),
        json!({"query": {"filter": {"sourceId": "16"}}}),
        json!({"query": {"filter": {"sourceId": [16]}}}),
        json!({"query": {"filter": {"reference": "fitbit"}}}),
        json!({"query": {"filter": {"alias": [true]}}}),
        json!({"query": {"filter": {"country": {"id": [1], "code": ["GB"]}}}}),
    ] {
        let msg = env
            .discover("sources", body.clone())
            .error(400, "ValidationErrors");
        assert!(
            msg.starts_with("Parameter validation errors"),
            "{body}: {msg}"
        );
    }
    for raw in ["nope", "[]", "7", "{\"limit\": 1"] {
        env.discover_raw("sources", Some(raw))
            .error(400, "ValidationErrors");
    }
    // A body that is not JSON by its type.
    let r = reply(
        env.http
            .post(&env.api("discovery/sources"))
            .header("authorization", env.bearer(&read_client(), json!({})))
            .content_type("text/plain")
            .send("{}"),
    );
    r.error(400, "ValidationErrors");
    // Bounded.
    let huge = json!({"query": {"queryString": "x".repeat(70 * 1024)}});
    env.discover("sources", huge).error(413, "PayloadTooLarge");
    // The bearer, as on every call.
    let url = env.api("discovery/sources");
    let r = reply(
        env.http
            .post(&url)
            .content_type("application/json")
            .send("{}"),
    );
    r.error(406, "ValidationErrors");
    let unknown = claims("nobody_nothing", json!({}));
    let r = reply(
        env.http
            .post(&url)
            .header("authorization", bearer(&env.read_key, &unknown))
            .content_type("application/json")
            .send("{}"),
    );
    r.error(400, "InvalidClient");
    let once = claims(&read_client(), json!({"nonce": nonce()}));
    let auth = bearer(&env.read_key, &once);
    let send = || {
        reply(
            env.http
                .post(&url)
                .header("authorization", &auth)
                .content_type("application/json")
                .send("{}"),
        )
    };
    send().ok(200);
    send().error(406, "InvalidRequest");
    // A user bearer will do: the access token is not looked at.
    let u = env.user();
    let r = reply(
        env.http
            .post(&url)
            .header("authorization", env.read_bearer(&u.read_at))
            .content_type("application/json")
            .send("{}"),
    );
    assert_eq!(ids(&r.ok(200)), APPROVED);
    // Only POST.
    let r = reply(
        env.http
            .get(&url)
            .header("authorization", env.bearer(&read_client(), json!({})))
            .call(),
    );
    r.error(405, "MethodNotAllowed");
}

// ---------------------------------------------------------------------------
// countries, platforms, categories

#[test]
fn countries_platforms_and_categories() {
    let env = env();
    let codes = |v: &Value| -> Vec<String> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["code"].as_str().unwrap().to_owned())
            .collect()
    };
    // No body at all, as the Node client sends without params.
    let v = env.discover_raw("countries", None).ok(200);
    assert_eq!(codes(&v), ["GB", "NL", "US", "DE", "FR", "IE", "BE", "ES"]);
    assert_eq!(v["data"][0]["name"], "United Kingdom");
    assert_eq!(v["data"][0]["resource"]["mimetype"], "image/png");
    let v = env
        .discover(
            "countries",
            json!({"query": {"include": ["code"], "filter": {"id": [2, 4]}}}),
        )
        .ok(200);
    assert_eq!(
        v["data"],
        json!([{"id": 2, "code": "NL"}, {"id": 4, "code": "DE"}])
    );
    let v = env
        .discover(
            "countries",
            json!({"query": {"include": ["resource.url"], "filter": {"id": [1]}}}),
        )
        .ok(200);
    assert_eq!(v["data"][0].as_object().unwrap().len(), 2);
    assert!(
        v["data"][0]["resource"]["url"]
            .as_str()
            .unwrap()
            .ends_with("gb.png")
    );

    let v = env.discover_raw("platforms", None).ok(200);
    let refs: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["reference"].as_str().unwrap())
        .collect();
    assert_eq!(refs, ["web", "ios", "android", "wearable"]);
    let v = env
        .discover("platforms", json!({"query": {"filter": {"id": [3]}}}))
        .ok(200);
    assert_eq!(
        v["data"],
        json!([{"id": 3, "name": "Android", "reference": "android"}])
    );

    let v = env.discover("categories", json!({})).ok(200);
    let names: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "Social",
            "Medical",
            "Finance",
            "Health & Fitness",
            "Entertainment"
        ]
    );
    let c = &v["data"][3];
    assert_eq!(c["id"], 4);
    assert_eq!(c["reference"], "health");
    assert_eq!(c["categoryTypeId"], 1);
    assert!(c["title"].is_string() && c["subTitle"].is_string());
    let v = env
        .discover("categories", json!({"query": {"include": ["name"]}}))
        .ok(200);
    assert!(
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c.as_object().unwrap().len() == 2)
    );
    // The category ids are the sources' (and the read scope's service groups).
    let health = ids(&env.sources(json!({"query": {"filter": {"category": {"id": [4]}}}})));
    assert_eq!(health, [16, 17, 18, 30]);

    for (what, body) in [
        ("countries", json!({"query": {"include": "code"}})),
        ("countries", json!({"query": {"include": ["flag"]}})),
        ("countries", json!({"query": {"filter": {"id": ["1"]}}})),
        ("countries", json!({"query": {"filter": {"code": ["GB"]}}})),
        ("platforms", json!({"other": 1})),
        ("platforms", json!({"query": {"include": ["code"]}})),
        ("platforms", json!({"query": 1})),
        ("categories", json!({"query": {"filter": {"id": 4}}})),
        ("categories", json!({"query": {"sort": {}}})),
    ] {
        env.discover(what, body.clone())
            .error(400, "ValidationErrors");
    }
    env.discover_raw("categories", Some("[1]"))
        .error(400, "ValidationErrors");
    let r = reply(env.http.post(&env.api("discovery/platforms")).send_empty());
    r.error(406, "ValidationErrors");
}

// ---------------------------------------------------------------------------
// Sample data sets

#[test]
fn sample_data_sets_of_a_source() {
    let env = env();
    for source in ["16", "5"] {
        let v = env.datasets(source).ok(200);
        let mut keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        keys.sort_unstable();
        assert_eq!(keys, ["default", "test"], "{source}");
        assert_eq!(v["default"]["name"], "default");
        assert!(v["test"]["description"].is_string());
        assert_eq!(v["test"].as_object().unwrap().len(), 2);
    }
    assert_eq!(env.datasets("29").ok(200), json!({}));
    assert_eq!(env.datasets("50").ok(200), json!({}));
    // A source with sample data only has a default set.
    assert_eq!(
        env.datasets("20")
            .ok(200)
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["default"]
    );
    env.datasets("999").error(404, "SourceNotFound");
    env.datasets("99999999999999999999999")
        .error(404, "SourceNotFound");
    for bad in ["abc", "16x", "-1", "1.5"] {
        env.datasets(bad).error(400, "ValidationErrors");
    }
    let r = env.get(&env.api("permission-access/sample/datasets/16"));
    r.error(406, "ValidationErrors");
}

#[test]
fn a_sample_data_set_onboarded_on_the_onboard_page_is_a_sample_account() {
    let env = env();
    let u = env.user();
    let before = env.accounts(&read_client(), &u.read_at);
    let code = env.reference_code(&read_client(), &u.read_at);
    let url = env.onboard(&format!(
        "onboard?code={code}&sourceType=pull&service=16&sampleDataSet=test"
    ));
    let page = env.get(&url);
    assert_eq!(page.status, 200);
    assert!(
        page.text().contains("sample data set test"),
        "{}",
        page.text()
    );
    let back = env.decide(&url, "allow").location();
    assert_eq!(param(&back, "success").as_deref(), Some("true"));
    assert_eq!(param(&back, "accountReference"), None);
    let after = env.accounts(&read_client(), &u.read_at);
    assert_eq!(after.len(), before.len() + 1);
    let sample = after.last().unwrap();
    assert_eq!(sample["sample"], true);
    assert_eq!(sample["serviceTypeId"], 12);
    assert_eq!(sample["sourceId"], 16);
    assert_eq!(sample["type"], "USER");
    // The live Fitbit account is still there, not a sample.
    assert!(
        after
            .iter()
            .any(|a| a["serviceTypeId"] == 12 && a.get("sample").is_none())
    );
    let sample_id = sample["id"].as_str().unwrap().to_owned();

    // Its files are the set's: in the next sync, named after the set.
    let key = env.trigger(&u.read_at);
    let done = env.wait_done(&u.read_at, &key);
    let names = file_names(&done);
    let set_files: Vec<&String> = names
        .iter()
        .filter(|n| n.contains("_sample-test_"))
        .collect();
    assert!(!set_files.is_empty(), "{names:?}");
    assert!(
        set_files.iter().all(|n| n.starts_with("4_12_")),
        "{set_files:?}"
    );
    assert!(
        done["status"]["details"][&sample_id]["state"] == "completed",
        "{done}"
    );
    // The control view: the same set is the same bytes for every user.
    let demo_of = |user: &str| -> Vec<(String, String)> {
        env.control_json(&format!("users/{user}/files"))["demo"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["name"].as_str().unwrap().contains("_sample-"))
            .map(|f| {
                (
                    f["name"].as_str().unwrap().to_owned(),
                    f["sha256"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let mine = demo_of(&u.id);
    assert_eq!(mine.len(), set_files.len());
    let other = env.user();
    let code = env.reference_code(&read_client(), &other.read_at);
    // With sampleDataAutoOnboard the page does not ask.
    let back = env
        .get(&env.onboard(&format!(
            "onboard?code={code}&sourceType=pull&service=16&sampleDataSet=test&sampleDataAutoOnboard=true"
        )))
        .location();
    assert_eq!(param(&back, "success").as_deref(), Some("true"));
    assert_eq!(demo_of(&other.id), mine);

    // Onboarding the same set again adds nothing; another set is another account.
    let code = env.reference_code(&read_client(), &u.read_at);
    env.allow(&env.onboard(&format!(
        "onboard?code={code}&sourceType=pull&service=16&sampleDataSet=test"
    )));
    assert_eq!(env.accounts(&read_client(), &u.read_at).len(), after.len());
    let code = env.reference_code(&read_client(), &u.read_at);
    env.allow(&env.onboard(&format!(
        "onboard?code={code}&sourceType=pull&service=5&sampleDataSet=default&sampleDataAutoOnboard=true"
    )));
    let last = env.accounts(&read_client(), &u.read_at);
    assert_eq!(last.len(), after.len() + 1);
    assert_eq!(last.last().unwrap()["serviceTypeId"], 4);
    assert_eq!(last.last().unwrap()["sample"], true);
    // A source with sample data only onboards with its set, and only so.
    let code = env.reference_code(&read_client(), &u.read_at);
    let back = env.allow(&env.onboard(&format!(
        "onboard?code={code}&sourceType=pull&service=20&sampleDataSet=default"
    )));
    assert_eq!(param(&back, "success").as_deref(), Some("true"));
    assert!(
        env.accounts(&read_client(), &u.read_at)
            .iter()
            .any(|a| a["sourceId"] == 20 && a["sample"] == true)
    );

    // Links the page cannot carry out: ONBOARD_ERROR at once, the code spent.
    for link in [
        "sourceType=pull&service=16&sampleDataSet=nope",
        "sourceType=pull&sampleDataSet=default",
        "sourceType=pull&service=29&sampleDataSet=default",
        "sourceType=pull&service=20",
        "sourceType=pull&service=33",
        "sourceType=pull&service=3",
        "sourceType=pull&service=21&sampleDataSet=default",
    ] {
        let code = env.reference_code(&read_client(), &u.read_at);
        let url = env.onboard(&format!("onboard?code={code}&{link}"));
        let back = env.get(&url).location();
        assert_eq!(param(&back, "success").as_deref(), Some("false"), "{link}");
        assert_eq!(
            param(&back, "errorCode").as_deref(),
            Some("ONBOARD_ERROR"),
            "{link}"
        );
        assert_eq!(env.get(&url).status, 400, "{link}: spent");
    }
    // Every approved pull source onboards.
    for source in APPROVED[..14].iter().filter(|s| ![16, 5].contains(*s)) {
        let code = env.reference_code(&read_client(), &u.read_at);
        let back = env.allow(&env.onboard(&format!(
            "onboard?code={code}&sourceType=pull&service={source}&triggerQuery=false"
        )));
        assert_eq!(param(&back, "success").as_deref(), Some("true"), "{source}");
    }
    let accounts = env.accounts(&read_client(), &u.read_at);
    for source in APPROVED[..14].iter() {
        assert!(
            accounts
                .iter()
                .any(|a| a["sourceId"] == *source && a.get("sample").is_none()),
            "{source}"
        );
    }
    let key = env.trigger(&u.read_at);
    let done = env.wait_done(&u.read_at, &key);
    // Finance (3_…) and video (…_407_…) files come from the new sources.
    let names = file_names(&done);
    assert!(
        names.iter().any(|n| n.starts_with("3_30_201_")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("5_13_407_")),
        "{names:?}"
    );
}

#[test]
fn a_sample_data_set_on_the_authorize_page() {
    let env = env();
    let (pre, session, verifier) = env.preauthorize(&read_client());
    // With sampleDataAutoOnboard the authorize page does not ask.
    let back = env
        .get(&env.onboard(&format!(
            "authorize?code={pre}&sourceType=pull&service=5&sampleDataSet=default&sampleDataAutoOnboard=true"
        )))
        .location();
    assert_eq!(param(&back, "success").as_deref(), Some("true"), "{back}");
    assert_eq!(param(&back, "state").as_deref(), Some("st-1"));
    assert_eq!(param(&back, "accountReference"), None);
    let at = env.access_token_of(&read_client(), &param(&back, "code").unwrap(), &verifier);
    let accounts = env.accounts(&read_client(), &at);
    let sample: Vec<&Value> = accounts.iter().filter(|a| a["sample"] == true).collect();
    assert_eq!(sample.len(), 1, "{accounts:?}");
    assert_eq!(sample[0]["serviceTypeId"], 4);
    // The session of the authorization syncs it.
    let done = env.wait_done(&at, &session);
    let names = file_names(&done);
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("1_4_") && n.contains("_sample-default_")),
        "{names:?}"
    );

    // Without sampleDataAutoOnboard: the consent page, which names the set.
    let (pre, _, _) = env.preauthorize(&read_client());
    let url = env.onboard(&format!(
        "authorize?code={pre}&sourceType=pull&service=16&sampleDataSet=test"
    ));
    let page = env.get(&url);
    assert_eq!(page.status, 200);
    assert!(page.text().contains("Fitbit"));
    assert_eq!(
        param(&env.decide(&url, "allow").location(), "success").as_deref(),
        Some("true")
    );
    // A set the service does not have, or no service: ONBOARD_ERROR, the code spent.
    for link in [
        "sourceType=pull&service=16&sampleDataSet=none",
        "sourceType=pull&sampleDataSet=default",
        "sourceType=pull&service=999",
        "sourceType=pull&service=43",
    ] {
        let (pre, _, _) = env.preauthorize(&read_client());
        let url = env.onboard(&format!("authorize?code={pre}&{link}"));
        let back = env.get(&url).location();
        assert_eq!(param(&back, "success").as_deref(), Some("false"), "{link}");
        assert_eq!(
            param(&back, "errorCode").as_deref(),
            Some("ONBOARD_ERROR"),
            "{link}"
        );
        assert_eq!(env.get(&url).status, 400, "{link}: spent");
    }
}

// ---------------------------------------------------------------------------
// Push accounts and push to provider

#[test]
fn a_push_account_takes_fhir_resources() {
    let env = env();
    let (at, account, reference) = env.push_account(50);
    assert!(reference.starts_with("accref_"), "{reference}");
    let user = env.newest_user();
    // It does not sync: it is not in a file list's details.
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Observation", "id": "bp-1",
         "status": "final"}},
        {"resource": {"resourceType": "Patient", "id": "p.1"}}
    ]});
    let r = env.fhir(&at, &account, &bundle);
    assert_eq!(r.ok(200), json!({}));
    let r = env.fhir_with(
        &env.user_bearer(&write_client(), &at),
        "fhir/3.0.2",
        Some(&account),
        "application/json; charset=utf-8",
        br#"{"resourceType":"Observation","status":"final"}"#,
    );
    assert_eq!(r.ok(200), json!({}));
    let pushes = env.pushes(&user);
    assert_eq!(pushes.len(), 2);
    assert_eq!(pushes[0]["accountId"], account.as_str());
    assert_eq!(pushes[0]["sourceId"], 50);
    assert_eq!(pushes[0]["clientId"], write_client());
    assert_eq!(pushes[0]["standard"], "fhir");
    assert_eq!(pushes[0]["version"], "stu3");
    assert_eq!(pushes[0]["resourceType"], "Bundle");
    assert_eq!(pushes[0]["entries"], 2);
    assert_eq!(pushes[1]["version"], "3.0.2");
    assert_eq!(pushes[1]["resourceType"], "Observation");
    assert!(pushes[1].get("entries").is_none());
    let id = pushes[0]["id"].as_str().unwrap();
    let stored = env.control_get(&format!("users/{user}/provider-pushes/{id}"));
    assert_eq!(stored.status, 200);
    assert_eq!(stored.body, bundle.to_string().as_bytes());
    env.control_get(&format!("users/{user}/provider-pushes/fhir_nothing"))
        .error(404, "NotFound");
    env.control_get("users/nobody/provider-pushes")
        .error(404, "NotFound");

    // Bodies that are not an STU3 resource.
    for (body, says) in [
        ("not json", "not JSON"),
        ("[1]", "JSON object"),
        (r#"{"resourceType":"Bundle"}"#, "type is required"),
        (r#"{"resourceType":"Foo"}"#, "not a FHIR STU3 resource type"),
        (
            r#"{"resourceType":"Bundle","type":"transaction","entry":[{"request":{}}]}"#,
            "entry[0].resource is required",
        ),
        (r#"{"id":"x"}"#, "resourceType is required"),
    ] {
        let r = env.fhir_with(
            &env.user_bearer(&write_client(), &at),
            "fhir/stu3",
            Some(&account),
            "application/json",
            body.as_bytes(),
        );
        let msg = r.error(400, "ValidationErrors");
        assert!(msg.contains(says), "{body}: {msg}");
    }
    let push = |path: &str, account: Option<&str>, ct: &str| {
        env.fhir_with(
            &env.user_bearer(&write_client(), &at),
            path,
            account,
            ct,
            bundle.to_string().as_bytes(),
        )
    };
    push("hl7/stu3", Some(&account), "application/json").error(400, "ValidationErrors");
    push("fhir/r4", Some(&account), "application/json").error(400, "ValidationErrors");
    push("fhir/stu3", None, "application/json").error(400, "ValidationErrors");
    push("fhir/stu3", Some(&account), "text/plain").error(400, "ValidationErrors");
    push("fhir/stu3", Some("40_nothing"), "application/json").error(404, "AccountNotFound");
    // A pull account is no provider.
    let fitbit = env
        .accounts(&write_client(), &at)
        .into_iter()
        .find(|a| a["serviceTypeId"] == 12)
        .unwrap();
    push("fhir/stu3", fitbit["id"].as_str(), "application/json").error(404, "AccountNotFound");
    // Too large.
    let big = format!(
        r#"{{"resourceType":"Binary","data":"{}"}}"#,
        "A".repeat(16 << 20)
    );
    env.fhir_with(
        &env.user_bearer(&write_client(), &at),
        "fhir/stu3",
        Some(&account),
        "application/json",
        big.as_bytes(),
    )
    .error(413, "PayloadTooLarge");
    // A read contract may not push.
    let tokens = env
        .control_post("users", json!({"id": user, "clients": [read_client()]}))
        .ok(200);
    let read_at = tokens["tokens"][read_client()]["accessToken"]["value"]
        .as_str()
        .unwrap()
        .to_owned();
    env.fhir_with(
        &env.user_bearer(&read_client(), &read_at),
        "fhir/stu3",
        Some(&account),
        "application/json",
        bundle.to_string().as_bytes(),
    )
    .error(403, "InsufficientScope");
    // The bearer and the token, as everywhere.
    env.fhir_with(
        "Bearer nope",
        "fhir/stu3",
        Some(&account),
        "application/json",
        b"{}",
    )
    .error(406, "ValidationErrors");
    env.fhir_with(
        &env.user_bearer(&write_client(), "unknown"),
        "fhir/stu3",
        Some(&account),
        "application/json",
        b"{}",
    )
    .error(401, "InvalidToken");
    assert_eq!(env.pushes(&user).len(), 2, "nothing refused was stored");

    // The push account lists with the reference, for the read contract too; it does
    // not sync.
    let listed = env.accounts(&read_client(), &read_at);
    let acc = listed.iter().find(|a| a["id"] == account.as_str()).unwrap();
    assert_eq!(acc["reference"], reference.as_str());
    assert_eq!(acc["type"], "PUSH");
    assert_eq!(acc["serviceTypeReference"], "medmij");
    assert_eq!(acc["serviceGroupId"], 2);
    let key = env.trigger(&read_at);
    let done = env.wait_done(&read_at, &key);
    assert!(done["status"]["details"].get(&account).is_none(), "{done}");

    // Deleting the account deletes what was pushed to it.
    let r = reply(
        env.http
            .delete(&env.api("permission-access/service/h:accountId"))
            .header("authorization", env.user_bearer(&write_client(), &at))
            .header("accountId", &account)
            .call(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(env.pushes(&user).is_empty());
    assert!(!env.library_dir(&user).join(format!("{id}.json")).exists());
    env.fhir(&at, &account, &bundle)
        .error(404, "AccountNotFound");
}

#[test]
fn push_accounts_on_the_onboard_page() {
    let env = env();
    let u = env.user();
    let code = env.reference_code(&write_client(), &u.write_at);
    let url = env.onboard(&format!("onboard?code={code}&sourceType=push&service=51"));
    let page = env.get(&url);
    assert!(
        page.text().contains("Ziekenhuis Amstelland"),
        "{}",
        page.text()
    );
    let back = env.decide(&url, "allow").location();
    assert_eq!(param(&back, "success").as_deref(), Some("true"));
    assert_eq!(param(&back, "keep").as_deref(), Some("1"));
    let reference = param(&back, "accountReference").unwrap();
    let accounts = env.accounts(&write_client(), &u.write_at);
    let account = accounts
        .iter()
        .find(|a| a["reference"] == reference.as_str())
        .unwrap();
    assert_eq!(account["type"], "PUSH");
    assert_eq!(account["sourceId"], 51);
    let id = account["id"].as_str().unwrap();
    assert!(id.starts_with("40_"), "{id}");
    env.fhir(&u.write_at, id, &json!({"resourceType": "Patient"}))
        .ok(200);
    // Onboarding the provider again is the same account.
    let code = env.reference_code(&write_client(), &u.write_at);
    let back = env.allow(&env.onboard(&format!("onboard?code={code}&sourceType=push&service=51")));
    assert_eq!(param(&back, "accountReference"), Some(reference));
    assert_eq!(
        env.accounts(&write_client(), &u.write_at).len(),
        accounts.len()
    );
    // A push link names an approved provider; a provider is not a pull source.
    for link in [
        "sourceType=push",
        "sourceType=push&service=53",
        "sourceType=push&service=56",
        "sourceType=push&service=16",
        "sourceType=pull&service=50",
    ] {
        let code = env.reference_code(&write_client(), &u.write_at);
        let back = env
            .get(&env.onboard(&format!("onboard?code={code}&{link}")))
            .location();
        assert_eq!(
            param(&back, "errorCode").as_deref(),
            Some("ONBOARD_ERROR"),
            "{link}"
        );
    }
    let (pre, _, _) = env.preauthorize(&write_client());
    let back = env
        .get(&env.onboard(&format!("authorize?code={pre}&sourceType=push")))
        .location();
    assert_eq!(param(&back, "errorCode").as_deref(), Some("ONBOARD_ERROR"));
}

// ---------------------------------------------------------------------------
// The portability report

fn entry_times(xml: &str) -> Vec<u64> {
    xml.split("<entry ")
        .skip(1)
        .map(|e| {
            let at = e.split("createdDate=\"").nth(1).unwrap();
            at[..at.find('"').unwrap()].parse().unwrap()
        })
        .collect()
}

#[test]
fn the_portability_report_is_the_health_data_in_the_window() {
    let env = env();
    let u: User = env.user();
    let r = env.report(
        &read_client(),
        &u.read_at,
        "format=xml&from=undefined&to=undefined",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/xml"));
    let xml = r.text();
    assert!(
        xml.starts_with(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<portabilityReport serviceType=\"medmij\""
        ),
        "{xml:.200}"
    );
    assert!(xml.trim_end().ends_with("</portabilityReport>"));
    assert!(!xml.contains(" from=") && !xml.contains(" to="));
    // Fitbit (health) is in, Instagram (social) is not.
    assert_eq!(xml.matches("<account ").count(), 1, "{xml:.400}");
    assert_eq!(xml.matches("</account>").count(), 1);
    assert!(xml.contains("serviceTypeId=\"12\""));
    assert!(!xml.contains("serviceTypeId=\"4\""));
    let times = entry_times(&xml);
    assert!(times.len() > 100, "{}", times.len());
    assert_eq!(xml.matches("</entry>").count(), times.len());
    assert!(xml.contains("<field name=\"steps\">"));
    assert!(xml.contains("<field name=\"stages.deep\">"));
    // Absent bounds are unbounded too; the same library is the same report.
    let r = env.report(&read_client(), &u.read_at, "format=xml");
    assert_eq!(r.text(), xml);

    // A window: from and to are seconds, both inclusive.
    let mut sorted = times.clone();
    sorted.sort_unstable();
    let (lo, hi) = (sorted[10] / 1000, sorted[40] / 1000);
    let r = env.report(
        &read_client(),
        &u.read_at,
        &format!("format=xml&from={lo}&to={hi}"),
    );
    let xml = r.text();
    assert!(xml.contains(&format!(" from=\"{lo}\" to=\"{hi}\"")));
    let inside = entry_times(&xml);
    let expected = times
        .iter()
        .filter(|t| (lo..=hi).contains(&(*t / 1000)))
        .count();
    assert_eq!(inside.len(), expected);
    assert!(inside.len() >= 31);
    let r = env.report(
        &read_client(),
        &u.read_at,
        &format!("format=xml&from={}", hi + 1),
    );
    assert!(entry_times(&r.text()).iter().all(|t| t / 1000 > hi));
    let r = env.report(&read_client(), &u.read_at, "format=xml&from=0&to=1");
    assert!(entry_times(&r.text()).is_empty());

    // A write contract reads it too, with its push account's pushes.
    let code = env.reference_code(&write_client(), &u.write_at);
    let back = env.allow(&env.onboard(&format!("onboard?code={code}&sourceType=push&service=52")));
    let reference = param(&back, "accountReference").unwrap();
    let account = env
        .accounts(&write_client(), &u.write_at)
        .into_iter()
        .find(|a| a["reference"] == reference.as_str())
        .unwrap();
    let before = now_ms() / 1000;
    env.fhir(
        &u.write_at,
        account["id"].as_str().unwrap(),
        &json!({"resourceType": "MedicationStatement", "status": "active"}),
    )
    .ok(200);
    let xml = env
        .report(
            &write_client(),
            &u.write_at,
            "format=xml&from=undefined&to=undefined",
        )
        .text();
    assert_eq!(xml.matches("<account ").count(), 2);
    assert!(xml.contains("<entry objectType=\"fhir\""));
    assert!(xml.contains("<field name=\"resourceType\">MedicationStatement</field>"));
    let xml = env
        .report(
            &write_client(),
            &u.write_at,
            &format!("format=xml&from=0&to={}", before - 1),
        )
        .text();
    assert!(!xml.contains("objectType=\"fhir\""));

    // The query, the service type and the bearer.
    for bad in [
        "",
        "format=json",
        "format=xml&from=abc",
        "format=xml&from=-1",
        "format=xml&to=1.5",
        "format=xml&from=20&to=10",
    ] {
        env.report(&read_client(), &u.read_at, bad)
            .error(400, "ValidationErrors");
    }
    let r = reply(
        env.http
            .get(&env.api("export/nhs/report?format=xml"))
            .header("authorization", env.read_bearer(&u.read_at))
            .call(),
    );
    r.error(404, "ServiceTypeNotFound");
    env.report(&read_client(), "unknown", "format=xml")
        .error(401, "InvalidToken");
    let r = env.get(&env.api("export/medmij/report?format=xml"));
    r.error(406, "ValidationErrors");
}

#[test]
fn the_report_of_an_empty_library_has_no_entries() {
    let env = start(SandboxConfig {
        demo_data: false,
        ..config(ConsentMode::Auto)
    });
    let u = env.user();
    let r = env.report(
        &read_client(),
        &u.read_at,
        "format=xml&from=undefined&to=undefined",
    );
    assert_eq!(r.status, 200);
    let xml = r.text();
    assert!(xml.starts_with("<?xml"));
    assert!(xml.contains("<portabilityReport serviceType=\"medmij\" format=\"xml\" generated=\""));
    assert!(xml.trim_end().ends_with("</portabilityReport>"));
    assert!(!xml.contains("<account") && !xml.contains("<entry"));
    // A sample health account is in it once onboarded.
    let code = env.reference_code(&read_client(), &u.read_at);
    env.allow(&env.onboard(&format!(
        "onboard?code={code}&sourceType=pull&service=16&sampleDataSet=test"
    )));
    let xml = env.report(&read_client(), &u.read_at, "format=xml").text();
    assert!(
        xml.contains("sample=\"true\" sampleDataSet=\"test\""),
        "{xml:.500}"
    );
    assert!(!entry_times(&xml).is_empty());
    // Sample data ends before 2025.
    assert!(
        entry_times(&xml)
            .iter()
            .all(|t| *t < 1_735_689_600_000 + 86_400_000)
    );
}

#[test]
fn the_testkit_control_reads_provider_pushes() {
    use digime_testkit::control::Control;
    let env = env();
    let control = Control::new(env.sandbox.info());
    let u = env.user();
    assert!(control.provider_pushes(&u.id).is_empty());
    let code = env.reference_code(&write_client(), &u.write_at);
    let url = env.onboard(&format!("onboard?code={code}&sourceType=push&service=55"));
    assert!(control.consent_page(&url).contains("GGZ Noord"));
    let (status, location) = control.decide_on(&url, "allow");
    assert_eq!(status, 302);
    let back = url::Url::parse(&location.unwrap()).unwrap();
    let reference = param(&back, "accountReference").unwrap();
    let account = control.account_of(&u.id, 40).unwrap();
    assert!(
        control
            .accounts(&u.id)
            .iter()
            .any(|a| a["reference"] == reference.as_str())
    );
    let resource = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Condition", "id": "c1"}}]});
    env.fhir(&u.write_at, &account, &resource).ok(200);
    let pushes = control.provider_pushes(&u.id);
    assert_eq!(pushes.len(), 1);
    assert_eq!(pushes[0]["accountId"], account.as_str());
    assert_eq!(pushes[0]["entries"], 1);
    let id = pushes[0]["id"].as_str().unwrap();
    assert_eq!(control.provider_push(&u.id, id), resource);
    assert_eq!(pushes[0]["resource"], resource);
    // Gone with the user.
    reply(
        env.http
            .delete(&env.api("user"))
            .header(
                "authorization",
                env.user_bearer(&write_client(), &u.write_at),
            )
            .call(),
    )
    .ok(200);
    assert!(!control.user_exists(&u.id));
}

#[test]
fn the_report_and_pushes_see_what_the_contract_sees() {
    let env = env();
    let u = env.user();
    let fitbit = env
        .accounts(&read_client(), &u.read_at)
        .into_iter()
        .find(|a| a["serviceTypeId"] == 12)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The user withdraws Fitbit from the read contract (the revoke page).
    let r = reply(
        env.http
            .get(&env.api("permission-access/revoke/h:accountId"))
            .header("authorization", env.read_bearer(&u.read_at))
            .header("accountId", &fitbit)
            .header("redirectUri", CALLBACK)
            .call(),
    );
    let location = r.ok(201)["location"].as_str().unwrap().to_owned();
    let back = env.allow(&location);
    assert_eq!(param(&back, "result").as_deref(), Some("success"));
    let xml = env.report(&read_client(), &u.read_at, "format=xml").text();
    assert!(!xml.contains("<account "), "{xml:.300}");
    let xml = env
        .report(&write_client(), &u.write_at, "format=xml")
        .text();
    assert!(xml.contains(&format!("<account id=\"{fitbit}\"")));

    // A provider withdrawn from the write contract takes no more pushes from it.
    let code = env.reference_code(&write_client(), &u.write_at);
    let back = env.allow(&env.onboard(&format!("onboard?code={code}&sourceType=push&service=50")));
    let reference = param(&back, "accountReference").unwrap();
    let account = env
        .accounts(&write_client(), &u.write_at)
        .into_iter()
        .find(|a| a["reference"] == reference.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let patient = json!({"resourceType": "Patient"});
    env.fhir(&u.write_at, &account, &patient).ok(200);
    let r = reply(
        env.http
            .get(&env.api("permission-access/revoke/h:accountId"))
            .header(
                "authorization",
                env.user_bearer(&write_client(), &u.write_at),
            )
            .header("accountId", &account)
            .header("redirectUri", CALLBACK)
            .call(),
    );
    let location = r.ok(201)["location"].as_str().unwrap().to_owned();
    env.allow(&location);
    env.fhir(&u.write_at, &account, &patient)
        .error(404, "AccountNotFound");
    assert_eq!(env.pushes(&u.id).len(), 1);
}
