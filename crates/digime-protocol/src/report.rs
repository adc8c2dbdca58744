//! GET `export/{serviceType}/report?format=&from=&to=` (`docs/protocol.md`,
//! "Portability report"): the user's data as a portability report (a MedMij XML
//! export), streamed to the caller's sink as it arrives.

use crate::config::Contract;
use crate::error::Error;
use crate::read::{StreamResponse, user_request};
use crate::refresh::{AuthedCall, UserOperation};
use crate::sdk::Sdk;
use crate::stream::{Plain, Streamed};
use crate::token::UserAccessToken;
use crate::wire::Body;
use http::{HeaderValue, Method, Request, Response, header};
use std::time::SystemTime;

/// The kind of report (`serviceType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReportServiceType {
    /// `medmij`: the Dutch health data standard.
    #[default]
    Medmij,
}

/// The report's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReportFormat {
    /// `xml`.
    #[default]
    Xml,
}

/// The options of [`crate::Sdk::portability_report`]: a MedMij XML report of all the
/// user's data by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortabilityReportOptions {
    /// The kind of report.
    pub service_type: ReportServiceType,
    /// Its format.
    pub format: ReportFormat,
    /// Data from this time on (sent in Unix seconds); `None`: from the start.
    pub from: Option<SystemTime>,
    /// Data up to this time (Unix seconds); `None`: up to now.
    pub to: Option<SystemTime>,
}

fn unix_secs(t: Option<SystemTime>) -> String {
    // The official SDK sends the literal `undefined` for a bound it was not given;
    // the service takes it as "no bound". Sent the same, so the server sees nothing new.
    match t {
        Some(t) => crate::wire::unix_secs(t).to_string(),
        None => "undefined".into(),
    }
}

/// The GET of a report (a [`UserOperation`] whose 2xx body the driver streams);
/// refreshes on 401 `InvalidToken` like every call with a user's token.
#[derive(Debug, Clone)]
pub struct ReportRequest {
    path: String,
}

impl ReportRequest {
    /// The request of `options`; `from` after `to` is refused.
    pub fn new(options: &PortabilityReportOptions) -> Result<Self, Error> {
        if let (Some(from), Some(to)) = (options.from, options.to)
            && from > to
        {
            return Err(Error::InvalidInput(
                "portability report: `from` is after `to`".into(),
            ));
        }
        let service_type = match options.service_type {
            ReportServiceType::Medmij => "medmij",
        };
        let format = match options.format {
            ReportFormat::Xml => "xml",
        };
        let path = format!(
            "export/{service_type}/report?format={format}&from={}&to={}",
            unix_secs(options.from),
            unix_secs(options.to)
        );
        Ok(ReportRequest { path })
    }
}

impl UserOperation for ReportRequest {
    type Output = ();

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
        let mut req = user_request(
            sdk,
            contract,
            token,
            now,
            Method::GET,
            &self.path,
            Body::Empty,
        )?;
        req.headers_mut().insert(
            header::ACCEPT,
            HeaderValue::from_static("application/octet-stream"),
        );
        req.extensions_mut().insert(StreamResponse);
        Ok(req)
    }

    fn parse(&self, _: Response<Vec<u8>>) -> Result<(), Error> {
        Ok(())
    }

    fn refresh_on_any_401(&self) -> bool {
        false
    }
}

/// The largest report the drivers' in-memory `portability_report` reads; a larger one
/// fails with [`crate::TransportErrorKind::ResponseTooLarge`] (stream it to a writer
/// with `portability_report_to` instead).
pub const MAX_IN_MEMORY_BYTES: u64 = 64 << 20;

/// The result of a report read into memory: it must be UTF-8 (drivers' buffered
/// `portability_report`).
pub fn into_text(done: crate::Authed<()>, report: Vec<u8>) -> Result<crate::Authed<String>, Error> {
    let value = String::from_utf8(report).map_err(|e| Error::Decode {
        context: "portability report",
        detail: format!("the report is not UTF-8: {e}"),
    })?;
    Ok(crate::Authed {
        value,
        refreshed_token: done.refreshed_token,
    })
}

/// A portability report, streamed to the driver's sink ([`Streamed`]); its result
/// carries a token refreshed on the way.
pub type PortabilityReport = Streamed<AuthedCall<ReportRequest>, Plain>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bounds_are_seconds_or_undefined() {
        let at = |s| Some(SystemTime::UNIX_EPOCH + Duration::from_millis(s));
        let r = ReportRequest::new(&PortabilityReportOptions::default()).unwrap();
        assert_eq!(
            r.path,
            "export/medmij/report?format=xml&from=undefined&to=undefined"
        );
        let r = ReportRequest::new(&PortabilityReportOptions {
            from: at(1_700_000_000_999),
            to: at(1_800_000_000_000),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            r.path,
            "export/medmij/report?format=xml&from=1700000000&to=1800000000"
        );
        let backwards = PortabilityReportOptions {
            from: at(2_000),
            to: at(1_000),
            ..Default::default()
        };
        assert!(matches!(
            ReportRequest::new(&backwards),
            Err(Error::InvalidInput(_))
        ));
    }
}
