//! `UserAccessToken`, the object apps persist (docs/protocol.md, "Token"). The JSON field names are
//! the official SDK's, lower-case `consentid` included, so tokens stored by other
//! SDKs load here and the other way round.

use digime_crypto::SecretString;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::SystemTime;

/// The longest token value the SDK takes from a server (16 KiB): every request
/// carries the access token in its JWT, and real ones are a few hundred bytes. A
/// longer one is a `Decode` error when the token answer is read (docs/protocol.md,
/// "Token").
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A token value from a server, if it is not longer than [`MAX_TOKEN_BYTES`].
pub(crate) fn bounded_token_value(name: &str, value: &str) -> Result<SecretString, crate::Error> {
    if value.len() > MAX_TOKEN_BYTES {
        return Err(crate::Error::Decode {
            context: "token",
            detail: format!(
                "{name} of {} bytes, longer than the {MAX_TOKEN_BYTES} a token may be",
                value.len()
            ),
        });
    }
    Ok(SecretString::new(value))
}

/// An opaque token value with its expiry (Unix seconds).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// The opaque value.
    #[serde(with = "secret_string")]
    pub value: SecretString,
    /// Expiry, Unix seconds.
    pub expiry: u64,
}

impl Token {
    /// Whether the expiry has passed at `now`.
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        let secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.expiry <= secs
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("value", &self.value)
            .field("expiry", &self.expiry)
            .finish()
    }
}

/// The digi.me user behind a token.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct User {
    /// The user id (`sub` of the token response).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// The user's tokens for one contract. Persist it (serde JSON) against the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserAccessToken {
    /// The access token.
    pub access_token: Token,
    /// The refresh token.
    pub refresh_token: Token,
    /// The user.
    #[serde(default)]
    pub user: User,
    /// The consent id.
    #[serde(default, rename = "consentid", skip_serializing_if = "Option::is_none")]
    pub consent_id: Option<String>,
}

impl UserAccessToken {
    /// The user id, when the server sent one.
    pub fn user_id(&self) -> Option<&str> {
        self.user.id.as_deref()
    }
}

mod secret_string {
    use digime_crypto::SecretString;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &SecretString, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.expose())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
        String::deserialize(d).map(SecretString::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_matches_the_official_shape() {
        let json = r#"{"accessToken":{"value":"at_Qm3v","expiry":1718086400},"refreshToken":{"value":"rt_6a1f","expiry":1725862400},"user":{"id":"usr_4f0c"},"consentid":"cns_81b2"}"#;
        let t: UserAccessToken = serde_json::from_str(json).unwrap();
        assert_eq!(t.access_token.value.expose(), "at_Qm3v");
        assert_eq!(t.user_id(), Some("usr_4f0c"));
        assert_eq!(serde_json::to_string(&t).unwrap(), json);
        // Tokens stored before v12 have neither user nor consentid.
        let old =
            r#"{"accessToken":{"value":"a","expiry":1},"refreshToken":{"value":"r","expiry":2}}"#;
        let t: UserAccessToken = serde_json::from_str(old).unwrap();
        assert_eq!(t.user_id(), None);
        let shown = format!("{t:?}");
        assert!(!shown.contains("\"a\"") && shown.contains("redacted"));
    }
}
