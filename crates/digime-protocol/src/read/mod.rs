//! Reading a user's library (`docs/protocol.md`, "Reading"), one module per
//! endpoint:
//!
//! | module | endpoint |
//! |---|---|
//! | [`trigger`] | POST `permission-access/trigger`: a read session |
//! | [`file_list`] | GET `permission-access/query/{session}`: the file list and sync status |
//! | [`file`](mod@file) | GET and HEAD `permission-access/query/{session}/{file}`: a file, streamed and decrypted |
//! | [`accounts`] | GET `permission-access/accounts` |
//!
//! Every read call refreshes on 401 through [`crate::refresh`]: the trigger, the file
//! list and accounts on `InvalidToken` or a 401 that is not a standard error; file
//! downloads and `HEAD` on any 401. The polling loop is [`crate::read_all`].

pub mod accounts;
pub mod file;
pub mod file_list;
pub mod trigger;

pub use accounts::{AccessTokenStatus, Account, AccountType, ReadAccounts, parse_accounts};
pub use file::{
    Compression, Download, FileAttempt, FileData, FileHead, FileMetadata, MappedFileMetadata,
    Output, RawAccount, RawFileMetadata, RawObjectType, ReadFile, ReadFileMetadata, XMetadata,
    parse_file_head,
};
pub use file_list::{
    AccountSyncStatus, FileList, FileListEntry, ObjectTypeError, ObjectTypeErrorDetail,
    PartialError, ReadFileList, Schema, SchemaStandard, SyncState, SyncStatus,
};
pub use trigger::ReadSession;

use crate::config::{Config, Contract, SessionKey};
use crate::error::Error;
use crate::sdk::Sdk;
use crate::token::UserAccessToken;
use crate::wire::{self, Body};
use http::{Method, Request};
use serde_json::Map;
use std::time::SystemTime;

pub(crate) fn decode_json<T: serde::de::DeserializeOwned>(
    body: &[u8],
    context: &'static str,
) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|e| Error::Decode {
        context,
        detail: e.to_string(),
    })
}

/// Percent-encodes one path segment (everything but RFC 3986 unreserved characters).
pub fn encode_path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One path segment of a request, percent-encoded; `what` names it for the error. An
/// empty segment and the dot segments `.` and `..` are refused: a server-supplied
/// session key, file name or postbox id of `..` would reroute the request on the same
/// host (URL parsers treat `%2E%2E` as `..` too, so encoding cannot help).
pub fn path_segment(s: &str, what: &str) -> Result<String, Error> {
    if s.is_empty() || s == "." || s == ".." {
        return Err(Error::InvalidInput(format!(
            "{what} {s:?} cannot be a path segment"
        )));
    }
    Ok(encode_path_segment(s))
}

pub(crate) fn user_jwt(
    config: &Config,
    contract: &Contract,
    token: &UserAccessToken,
    now: SystemTime,
) -> Result<String, Error> {
    let mut claims = Map::new();
    claims.insert(
        "access_token".into(),
        token.access_token.value.expose().into(),
    );
    wire::sign_request_jwt(config, contract, now, claims)
}

pub(crate) fn user_request(
    sdk: &Sdk,
    contract: &Contract,
    token: &UserAccessToken,
    now: SystemTime,
    method: Method,
    path: &str,
    body: Body,
) -> Result<Request<Body>, Error> {
    let config = sdk.config();
    let jwt = user_jwt(config, contract, token, now)?;
    wire::request(method, &config.api(path), Some(&jwt), body)
}

pub(crate) fn file_path(session: &SessionKey, file_name: &str) -> Result<String, Error> {
    Ok(format!(
        "permission-access/query/{}/{}",
        path_segment(session.as_str(), "session key")?,
        path_segment(file_name, "file name")?
    ))
}

/// Marks a request whose 2xx body the driver must stream (see [`crate::flow::Step::Receive`])
/// instead of reading it whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamResponse;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::PullOptions;
    use base64::Engine;
    use serde_json::Value;

    fn fixture(path: &str) -> Vec<Value> {
        let p = format!(
            "{}/../../fixtures/network/{path}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
    }

    #[test]
    fn every_file_list_fixture_parses_and_the_invalid_one_does_not() {
        for (name, state) in [
            ("file-list-pending.json", SyncState::Pending),
            ("file-list-running.json", SyncState::Running),
            ("file-list-partial.json", SyncState::Partial),
            ("file-list-completed.json", SyncState::Completed),
        ] {
            let mocks = fixture(&format!("get-file-list/{name}"));
            assert!(!mocks.is_empty());
            for m in mocks {
                let body = serde_json::to_vec(&m["response"]).unwrap();
                let list = FileList::parse(&body).unwrap();
                assert_eq!(list.status.state, state, "{name}");
                if state == SyncState::Running {
                    assert_eq!(list.file_list.len(), 3);
                    assert_eq!(list.file_list[0].name, "file1.json");
                    assert_eq!(list.file_list[0].updated_date, 1568716294874);
                    assert!(matches!(
                        list.status.details["test-account-id"],
                        AccountSyncStatus::Running
                    ));
                }
            }
        }
        for m in fixture("get-file-list/invalid-missing-status.json") {
            let body = serde_json::to_vec(&m["response"]).unwrap();
            assert!(matches!(FileList::parse(&body), Err(Error::Decode { .. })));
        }
    }

    #[test]
    fn file_list_shapes() {
        let partial = br#"{"status":{"state":"partial","details":{
            "1_a":{"state":"completed"},
            "40_b":{"state":"partial","error":{"code":"ServiceAuthorizationError","statusCode":511,
                "message":"Service authorization required","reauth":true,
                "objectTypeErrors":[{"error":{"code":"X","message":"m","statusCode":500},"objectType":2}]}}}},
            "fileList":[{"name":"f","updatedDate":1718000000123,"schema":{"standard":"digime","version":"1.0.0"},
              "serviceGroup":"social","serviceName":"facebook","objectType":"post","objectCount":250,"objectVersion":"1.0.0"}]}"#;
        let list = FileList::parse(partial).unwrap();
        let AccountSyncStatus::Partial { error } = &list.status.details["40_b"] else {
            panic!()
        };
        assert_eq!(error.status_code, 511);
        assert_eq!(error.reauth, Some(true));
        assert_eq!(error.object_type_errors.as_ref().unwrap()[0].object_type, 2);
        assert_eq!(list.file_list[0].object_count, Some(250));
        // The documented nested variant is accepted too.
        let nested = br#"{"status":{"state":"partial","details":{"x":{"state":"partial","error":
            {"code":"ServiceAuthorizationError","error":{"message":"m","reauth":true},"statusCode":511}}}}}"#;
        assert!(FileList::parse(nested).is_ok());
        for bad in [
            &br#"{"status":{}}"#[..],
            br#"{"status":{"state":"done"}}"#,
            br#"{"status":{"state":"running","details":{"a":{"state":"pending"}}}}"#,
            br#"{"status":{"state":"running","details":{"a":{"state":"partial"}}}}"#,
            br#"{"status":{"state":"running"},"fileList":{}}"#,
            br#"{"status":{"state":"running"},"fileList":[{"name":"a"}]}"#,
            br#"{"status":{"state":"running"},"fileList":[{"updatedDate":1}]}"#,
            br#"{"status":{"state":"running"},"fileList":[{"name":"a","updatedDate":1,"schema":{"standard":"x","version":"1"}}]}"#,
            b"[]",
            b"",
        ] {
            assert!(FileList::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn x_metadata_worked_examples() {
        let mapped = XMetadata::parse(b"eyJtZXRhZGF0YSI6eyJvYmplY3RDb3VudCI6MSwib2JqZWN0VHlwZSI6Im1lZGlhIiwic2VydmljZUdyb3VwIjoic29jaWFsIiwic2VydmljZU5hbWUiOiJpbnN0YWdyYW0iLCJzY2hlbWEiOnsic3RhbmRhcmQiOiJmaGlyIiwidmVyc2lvbiI6IjMuMC4wIn19LCJjb21wcmVzc2lvbiI6ImJyb3RsaSJ9").unwrap();
        assert_eq!(mapped.compression, Compression::Brotli);
        let FileMetadata::Mapped(m) = &mapped.metadata else {
            panic!()
        };
        assert_eq!(m.service_name, "instagram");
        assert_eq!(m.schema.standard, SchemaStandard::Fhir);
        let raw = XMetadata::parse(b"eyJtZXRhZGF0YSI6eyJtaW1ldHlwZSI6InRleHQvcGxhaW4iLCJhY2NvdW50cyI6W3siYWNjb3VudGlkIjoidGVzdC1hY2NvdW50LTEifSx7ImFjY291bnRpZCI6InRlc3QtYWNjb3VudC0yIn1dfSwiY29tcHJlc3Npb24iOiJnemlwIn0").unwrap();
        assert_eq!(raw.compression, Compression::Gzip);
        let FileMetadata::Raw(r) = &raw.metadata else {
            panic!()
        };
        assert_eq!(r.accounts[1].accountid, "test-account-2");
        // Round trip, and the padded / standard-alphabet forms decode the same.
        assert_eq!(XMetadata::parse(raw.encode().as_bytes()).unwrap(), raw);
        let std_padded = base64::engine::general_purpose::STANDARD
            .encode(br#"{"metadata":{"mimetype":"a/b","accounts":[]},"compression":"zstd?"}"#);
        let odd = XMetadata::parse(std_padded.as_bytes()).unwrap();
        assert_eq!(odd.compression, Compression::Unknown("zstd?".into()));
        for bad in [
            "",
            "!!!",
            &digime_crypto::b64url_encode(b"not json"),
            &digime_crypto::b64url_encode(br#"{"metadata":{}}"#),
            &digime_crypto::b64url_encode(br#"{"metadata":{"mimetype":"a"}}"#),
            &digime_crypto::b64url_encode(
                br#"{"metadata":{"mimetype":"a","accounts":[]},"compression":1}"#,
            ),
        ] {
            assert!(XMetadata::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn fixture_file_metadata_parses() {
        for name in [
            "valid-files.json",
            "valid-files-compression-gzip.json",
            "valid-files-compression-brotli.json",
        ] {
            for m in fixture(&format!("get-file/{name}")) {
                let Some(x) = m["rawHeaders"]["x-metadata"].as_object() else {
                    continue;
                };
                let encoded =
                    digime_crypto::b64url_encode(Value::Object(x.clone()).to_string().as_bytes());
                XMetadata::parse(encoded.as_bytes()).unwrap();
            }
        }
    }

    #[test]
    fn accounts_parse() {
        let body = br#"[{"createdDate":1693931692826,"id":"40_XXXX","providerFavIcon":"f","providerLogo":"l",
            "reference":"x","serviceGroupId":1,"serviceGroupName":"Social","serviceTypeId":40,
            "serviceTypeName":"Instagram","serviceTypeReference":"instagram","sourceId":420,"type":"USER",
            "updatedDate":1693931704516,"accessTokenStatus":{"authorized":true},"newField":1}]"#;
        let a = parse_accounts(body).unwrap();
        assert_eq!(a[0].account_type, AccountType::User);
        assert_eq!(a[0].extra["newField"], 1);
        assert!(parse_accounts(b"[]").unwrap().is_empty());
        assert!(parse_accounts(br#"{"accounts":[]}"#).is_err());
        assert!(parse_accounts(br#"[{"id":"x"}]"#).is_err());
    }

    /// An unknown field keeps the server's number exactly: serialised and parsed again it
    /// is the same value. serde_json's default float parsing is off by one bit on some
    /// long mantissas (found by the `accounts` fuzz target); `float_roundtrip` is on.
    #[test]
    fn unknown_float_fields_survive_a_round_trip() {
        let body = br#"[{"createdDate":1,"id":"40_X","reference":"x","serviceGroupId":1,
            "serviceGroupName":"Social","serviceTypeId":40,"serviceTypeName":"Instagram",
            "serviceTypeReference":"instagram","sourceId":420,"type":"USER","updatedDate":2,
            "x":5.91417776317066907e-66}]"#;
        let accounts = parse_accounts(body).unwrap();
        assert_eq!(
            accounts[0].extra["x"].as_f64(),
            Some(5.914_177_763_170_669e-66)
        );
        let again = parse_accounts(&serde_json::to_vec(&accounts).unwrap()).unwrap();
        assert_eq!(again, accounts);
    }

    #[test]
    fn trigger_body_puts_agent_last_and_drops_a_caller_agent() {
        let config = Config::new("app").unwrap();
        let mut options = PullOptions {
            source_fetch: Some(false),
            ..Default::default()
        };
        options.limits = Some(crate::auth::Limits {
            duration: crate::auth::DurationLimits { source_fetch: 30 },
        });
        let body = ReadSession::new(options).body(&config).unwrap();
        let text = String::from_utf8(body).unwrap();
        assert!(
            text.starts_with(
                r#"{"limits":{"duration":{"sourceFetch":30}},"sourceFetch":false,"agent":{"sdk":"#
            ),
            "{text}"
        );
        assert!(text.contains(r#""name":"rust""#), "{text}");
        let empty = ReadSession::new(PullOptions::default())
            .body(&config)
            .unwrap();
        assert!(
            String::from_utf8(empty)
                .unwrap()
                .starts_with(r#"{"agent":"#)
        );
    }

    #[test]
    fn dot_segments_are_refused() {
        for bad in ["", ".", ".."] {
            assert!(path_segment(bad, "session key").is_err(), "{bad:?}");
        }
        assert_eq!(path_segment("...", "x").unwrap(), "...");
        assert_eq!(path_segment("a/..", "x").unwrap(), "a%2F..");
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(
            encode_path_segment("a b/c?d#e.json"),
            "a%20b%2Fc%3Fd%23e.json"
        );
        assert_eq!(
            encode_path_segment("1_1_2_202401_1.json"),
            "1_1_2_202401_1.json"
        );
    }
}
