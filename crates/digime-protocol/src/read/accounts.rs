//! GET `permission-access/accounts` (`docs/protocol.md`, "Accounts"): the user's
//! source accounts.

use super::{decode_json, user_request};
use crate::config::Contract;
use crate::error::Error;
use crate::refresh::UserOperation;
use crate::sdk::Sdk;
use crate::token::UserAccessToken;
use crate::wire::{self, Body};
use http::{Method, Request, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::time::SystemTime;

/// An account type (docs/protocol.md, "Accounts").
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AccountType {
    /// `USER`.
    User,
    /// `ADMIN`.
    Admin,
    /// `EVENT`.
    Event,
    /// `GROUP`.
    Group,
    /// `BANK`.
    Bank,
    /// `CREDIT_CARD`.
    CreditCard,
    /// `IMPORTED`.
    Imported,
    /// `INVESTMENT`.
    Investment,
    /// `INSURANCE`.
    Insurance,
    /// `LOAN`.
    Loan,
    /// `REWARD`.
    Reward,
    /// `BILL`.
    Bill,
    /// `PUSH`.
    Push,
}

/// Whether the service's access token of an account is usable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessTokenStatus {
    /// Authorized.
    pub authorized: bool,
    /// Expiry, Unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// One of the user's source accounts (docs/protocol.md, "Accounts").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    /// Account id (keys `status.details`; goes into `delete_account`).
    pub id: String,
    /// Reference.
    pub reference: String,
    /// Type.
    #[serde(rename = "type")]
    pub account_type: AccountType,
    /// Created, Unix ms.
    pub created_date: i64,
    /// Updated, Unix ms.
    pub updated_date: i64,
    /// Service group id.
    pub service_group_id: i64,
    /// Service group name.
    pub service_group_name: String,
    /// Service type id.
    pub service_type_id: i64,
    /// Service type name.
    pub service_type_name: String,
    /// Service type reference.
    pub service_type_reference: String,
    /// Source id.
    pub source_id: i64,
    /// Access token status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_status: Option<AccessTokenStatus>,
    /// Service provider id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_provider_id: Option<i64>,
    /// Service provider name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_provider_name: Option<String>,
    /// Service provider reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_provider_reference: Option<String>,
    /// User name at the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Favicon URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_fav_icon: Option<String>,
    /// Logo URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_logo: Option<String>,
    /// Holds sample data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<bool>,
    /// Anything else the server sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Parses an accounts body: a bare JSON array (docs/protocol.md, "Accounts").
pub fn parse_accounts(body: &[u8]) -> Result<Vec<Account>, Error> {
    decode_json(body, "accounts")
}

/// `GET permission-access/accounts` (docs/protocol.md, "Accounts").
#[derive(Debug, Clone, Default)]
pub struct ReadAccounts;

impl UserOperation for ReadAccounts {
    type Output = Vec<Account>;
    fn method(&self) -> Method {
        Method::GET
    }
    fn build(
        &self,
        sdk: &Sdk,
        contract: &Contract,
        token: &UserAccessToken,
        now: SystemTime,
    ) -> Result<Request<Body>, Error> {
        let req = user_request(
            sdk,
            contract,
            token,
            now,
            Method::GET,
            "permission-access/accounts",
            Body::Empty,
        )?;
        Ok(wire::accept_json(req))
    }
    fn parse(&self, response: Response<Vec<u8>>) -> Result<Vec<Account>, Error> {
        parse_accounts(response.body())
    }
    fn refresh_on_any_401(&self) -> bool {
        false
    }
}
