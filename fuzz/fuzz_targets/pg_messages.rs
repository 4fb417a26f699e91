//! A client's bytes (the first input byte picks: from the startup packet,
//! or after it) through the server's protocol checks and then pgwire's
//! decoders, as a connection reads them: nothing may panic (pgwire's own
//! decoders panicked on malformed Parse, Bind and CopyData before the
//! checks existed).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((&first, rest)) = data.split_first() {
        pgserver::decode_client_bytes(rest, first & 1 == 0);
    }
});
