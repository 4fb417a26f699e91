//! Replication frame bodies from arbitrary bytes (what reaches a node's
//! replication port after the handshake): decoding never panics, the
//! plausibility check never panics, and a decoded frame encodes back to
//! the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use repl::net::{decode_frame, encode_frame};

fuzz_target!(|data: &[u8]| {
    if let Ok((from, msg)) = decode_frame(data) {
        let _ = msg.plausible();
        let again = encode_frame(from, &msg);
        assert_eq!(decode_frame(&again[4..]), Ok((from, msg)));
    }
});
