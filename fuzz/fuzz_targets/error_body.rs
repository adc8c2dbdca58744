//! Error responses: body shapes A and B, the status, and `Retry-After`.
//!
//! Input layout: two bytes of status (big endian), then the rest. The whole rest is
//! parsed as an error body. For the full response, the rest is split at the first
//! `\n`: the line before it becomes a `Retry-After` header (when it is a valid header
//! value) and what follows is the body; without a `\n` there is no header and the
//! rest is the body. `parse_retry_after` also gets that first line, lossily decoded.
#![no_main]

use digime_protocol::Error;
use digime_protocol::http::{HeaderValue, Response, StatusCode, header};
use digime_protocol::retry::parse_retry_after;
use digime_protocol::wire::{error_from_response, parse_error_body};
use libfuzzer_sys::fuzz_target;
use std::time::SystemTime;

fuzz_target!(|data: &[u8]| {
    let Some((status, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let status = u16::from_be_bytes(*status);
    let now = SystemTime::UNIX_EPOCH;

    if let Some(api) = parse_error_body(status, rest) {
        assert_eq!(api.status, status);
        assert!(api.retry_after.is_none());
        let _ = api.to_string();
    }

    let (first_line, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
        None => (None, rest),
    };

    let _ = parse_retry_after(&String::from_utf8_lossy(first_line.unwrap_or(rest)), now);

    // http only has statuses 100..=999.
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut builder = Response::builder().status(status);
    let mut retry_after_value = None;
    if let Some(value) = first_line.and_then(|l| HeaderValue::from_bytes(l).ok()) {
        retry_after_value = Some(value.clone());
        builder = builder.header(header::RETRY_AFTER, value);
    }
    let response = builder.body(body.to_vec()).expect("a valid response");

    let error = error_from_response(&response, now);
    let _ = error.to_string();
    let expected_retry_after = retry_after_value
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, now));
    assert_eq!(error.retry_after(), expected_retry_after);
    let recognised = parse_error_body(status.as_u16(), body);
    match &error {
        Error::Api(api) => {
            assert_eq!(api.status, status.as_u16());
            let mut expected = recognised.expect("an Api error comes from a recognised body");
            expected.retry_after = expected_retry_after;
            assert_eq!(api, &expected);
        }
        Error::UnexpectedStatus { status: s, .. } => {
            assert_eq!(*s, status.as_u16());
            assert!(recognised.is_none());
        }
        other => panic!("error_from_response returned {other:?}"),
    }
});
