//! Stream values and log entries from arbitrary bytes (what a damaged
//! disk or a peer could hand a node): decoding never panics, the cheap
//! check accepts exactly what decoding does, and what decodes encodes
//! back to a value that decodes the same.
#![no_main]

use kv::log::{LogEntry, StreamValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let decoded = StreamValue::decode(data);
    assert_eq!(StreamValue::check(data).is_ok(), decoded.is_ok());
    if let Ok(v) = decoded {
        assert_eq!(StreamValue::decode(&v.encode()).as_ref(), Ok(&v));
    }
    if let Ok(e) = LogEntry::decode(data) {
        assert_eq!(LogEntry::decode(&e.encode()).as_ref(), Ok(&e));
    }
});
