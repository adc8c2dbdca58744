//! Writing into a user's library: `permission-access/import` (docs/protocol.md, "Library push").

use crate::error::Error;
use serde::{Deserialize, Serialize};

/// The largest FileDescriptor JWT sent; the server accepts headers of at least 64 KiB.
pub const MAX_DESCRIPTOR_HEADER: usize = 64 * 1024;

/// An account of the user in the pushing app's own system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountRef {
    /// The account id.
    pub account_id: String,
}

/// Describes a pushed file (docs/protocol.md, "Library push"). Only these four fields are signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileDescriptor {
    /// The file's MIME type, e.g. `application/json`.
    pub mime_type: String,
    /// The user's accounts in the app's system (may be empty).
    pub accounts: Vec<AccountRef>,
    /// Free-form references, e.g. the file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Vec<String>>,
    /// Labels to find the file again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

impl FileDescriptor {
    /// A descriptor with a MIME type and no accounts, references or tags.
    pub fn new(mime_type: impl Into<String>) -> Self {
        FileDescriptor {
            mime_type: mime_type.into(),
            accounts: Vec::new(),
            reference: None,
            tags: None,
        }
    }

    /// The FileDescriptor JWT payload, `{"metadata":{...}}`, fields in the SDK's order.
    pub fn jwt_payload(&self) -> Result<Vec<u8>, Error> {
        #[derive(Serialize)]
        struct Payload<'a> {
            metadata: &'a FileDescriptor,
        }
        serde_json::to_vec(&Payload { metadata: self })
            .map_err(|e| Error::InvalidInput(e.to_string()))
    }

    /// Checks the descriptor before anything is sent: a `type/subtype` MIME type,
    /// non-empty account ids, and a size that fits in a request header.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::InvalidInput(format!("file descriptor: {m}")));
        let token_ok = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
        };
        let essence = self.mime_type.split(';').next().unwrap_or("").trim();
        match essence.split_once('/') {
            Some((t, s)) if token_ok(t) && token_ok(s) => {}
            _ => return bad(format!("mimeType {:?} is not a MIME type", self.mime_type)),
        }
        if self.mime_type.chars().any(char::is_control) {
            return bad("mimeType contains control characters".into());
        }
        if self.accounts.iter().any(|a| a.account_id.is_empty()) {
            return bad("an accountId is empty".into());
        }
        let size = serde_json::to_vec(self)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        // base64url grows by 4/3, plus header and a 342-character signature.
        if size.saturating_mul(4) / 3 + 400 > MAX_DESCRIPTOR_HEADER {
            return bad(format!(
                "{size} bytes of metadata do not fit in a request header"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_the_worked_example_bytes() {
        let d = FileDescriptor {
            mime_type: "application/json".into(),
            accounts: vec![AccountRef {
                account_id: "acc-001".into(),
            }],
            reference: Some(vec!["receipt-42.json".into()]),
            tags: Some(vec!["receipt".into()]),
        };
        let payload = d.jwt_payload().unwrap();
        assert_eq!(
            digime_crypto::b64url_encode(&payload),
            "eyJtZXRhZGF0YSI6eyJtaW1lVHlwZSI6ImFwcGxpY2F0aW9uL2pzb24iLCJhY2NvdW50cyI6W3siYWNjb3VudElkIjoiYWNjLTAwMSJ9XSwicmVmZXJlbmNlIjpbInJlY2VpcHQtNDIuanNvbiJdLCJ0YWdzIjpbInJlY2VpcHQiXX19"
        );
        d.validate().unwrap();
    }

    #[test]
    fn validation() {
        assert!(
            FileDescriptor::new("text/plain; charset=utf-8")
                .validate()
                .is_ok()
        );
        for m in ["", "json", "/x", "a/", "a b/c", "text/plain\n"] {
            assert!(FileDescriptor::new(m).validate().is_err(), "{m:?}");
        }
        let mut d = FileDescriptor::new("text/plain");
        d.accounts.push(AccountRef {
            account_id: String::new(),
        });
        assert!(d.validate().is_err());
        let mut big = FileDescriptor::new("text/plain");
        big.tags = Some(vec!["x".repeat(60_000)]);
        assert!(big.validate().is_err());
    }
}

/// The library push operation (a [`crate::flow::UserOperation`]).
#[derive(Debug, Clone)]
pub struct PushToLibrary {
    descriptor: FileDescriptor,
}

impl PushToLibrary {
    pub(crate) fn new(descriptor: FileDescriptor) -> Self {
        PushToLibrary { descriptor }
    }
}

impl crate::flow::UserOperation for PushToLibrary {
    type Output = ();

    fn method(&self) -> http::Method {
        http::Method::POST
    }

    fn retry_policy(&self, sdk: &crate::Sdk) -> crate::RetryPolicy {
        // Retried only when it was not processed (docs/protocol.md, "Retries").
        sdk.config().retry.unprocessed_only()
    }

    fn build(
        &self,
        sdk: &crate::Sdk,
        contract: &crate::Contract,
        token: &crate::UserAccessToken,
        now: std::time::SystemTime,
    ) -> Result<http::Request<crate::wire::Body>, Error> {
        use crate::wire;
        let payload = self.descriptor.jwt_payload()?;
        let descriptor_jwt =
            digime_crypto::jws::sign(wire::REQUEST_JWT_HEADER, &payload, contract.key())?;
        let mut claims = serde_json::Map::new();
        claims.insert(
            "access_token".into(),
            token.access_token.value.expose().into(),
        );
        let config = sdk.config();
        let jwt = wire::sign_request_jwt(config, contract, now, claims)?;
        let mut req = wire::request(
            http::Method::POST,
            &config.api("permission-access/import"),
            Some(&jwt),
            wire::Body::Upload(crate::upload::Upload::plain()),
        )?;
        let headers = req.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/octet-stream"),
        );
        headers.insert(
            "FileDescriptor",
            http::HeaderValue::from_str(&descriptor_jwt)
                .map_err(|e| Error::InvalidInput(e.to_string()))?,
        );
        Ok(req)
    }

    fn parse(&self, _response: http::Response<Vec<u8>>) -> Result<(), Error> {
        Ok(())
    }

    fn refresh_on_any_401(&self) -> bool {
        true
    }
}
