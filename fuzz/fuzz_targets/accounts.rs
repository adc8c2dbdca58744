//! Accounts bodies (`GET permission-access/accounts`, a bare array). Whatever parses
//! must survive its own JSON unchanged.
#![no_main]

use digime_protocol::read::parse_accounts;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(accounts) = parse_accounts(data) {
        let json = serde_json::to_vec(&accounts).expect("accounts serialise");
        let again = parse_accounts(&json).expect("serialised accounts parse");
        assert_eq!(again, accounts);
    }
});
