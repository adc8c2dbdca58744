//! File-list bodies (`GET permission-access/query/{session}`): every state, per-account
//! details, every entry field. Whatever parses must survive its own JSON unchanged.
#![no_main]

use digime_protocol::FileList;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(list) = FileList::parse(data) {
        let json = serde_json::to_vec(&list).expect("a file list serialises");
        let again = FileList::parse(&json).expect("a serialised file list parses");
        assert_eq!(again, list);
    }
});
