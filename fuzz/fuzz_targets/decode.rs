//! Fuzz target for the frame decoder: any bytes, under any frame limit, must decode to a
//! frame that re-encodes to exactly the bytes consumed, ask for more bytes without
//! consuming any, or fail with a typed error; never panic or allocate what was announced.
#![no_main]

use bytes::BytesMut;
use hydra_queue::protocol::{decode, encode, DEFAULT_MAX_FRAME};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the limit: a small one reaches the Oversized path often, the
    // default one the decoding of whole messages.
    let (max, data) = match data.split_first() {
        Some((&b, rest)) if b & 1 == 1 => (usize::from(b) * 4, rest),
        Some((_, rest)) => (DEFAULT_MAX_FRAME, rest),
        None => (DEFAULT_MAX_FRAME, data),
    };
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        let consumed_from = data.len() - before;
        match decode(&mut buf, max) {
            Ok(Some(frame)) => {
                let mut again = BytesMut::new();
                encode(&frame, &mut again);
                let used = before - buf.len();
                assert_eq!(&again[..], &data[consumed_from..consumed_from + used]);
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "a partial frame must not be consumed");
                break;
            }
            Err(_) => break,
        }
    }
});
