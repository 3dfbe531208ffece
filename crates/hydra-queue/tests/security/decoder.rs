//! Property tests of the frame decoder beyond the unit ones in `protocol.rs`: streams of
//! valid frames cut anywhere, valid frames with bytes flipped, and lying length fields.

use bytes::{Bytes, BytesMut};
use hydra_queue::protocol::{
    decode, encode, DecodeError, Frame, Message, WireDelivery, DEFAULT_MAX_FRAME, MAGIC, NONCE_LEN,
};
use proptest::prelude::*;

fn any_message() -> impl Strategy<Value = Message> {
    let s = || "\\PC{0,40}";
    let blob = || proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from);
    let nonce = || any::<[u8; NONCE_LEN]>();
    prop_oneof![
        (any::<u16>(), any::<u16>(), s()).prop_map(|(a, b, name)| Message::Hello {
            magic: MAGIC,
            min_version: a,
            max_version: b,
            name
        }),
        (any::<u16>(), any::<bool>(), any::<u32>(), nonce()).prop_map(|(v, t, i, n)| {
            Message::Challenge {
                version: v,
                token_required: t,
                idle_timeout_ms: i,
                nonce: n,
            }
        }),
        (nonce(), nonce()).prop_map(|(nonce, proof)| Message::Auth { nonce, proof }),
        Just(Message::Ping),
        s().prop_map(|queue| Message::OpenConsumer { queue }),
        (s(), s()).prop_map(|(queue, name)| Message::OpenFeed { queue, name }),
        (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(handle, max, timeout_ms)| {
            Message::Get {
                handle,
                max,
                timeout_ms,
            }
        }),
        (any::<u32>(), proptest::collection::vec(any::<u64>(), 0..8))
            .prop_map(|(handle, deliveries)| Message::Done { handle, deliveries }),
        (any::<u32>(), any::<u64>(), s()).prop_map(|(handle, delivery, reason)| {
            Message::Failed {
                handle,
                delivery,
                reason,
            }
        }),
        (
            any::<u32>(),
            any::<u32>(),
            proptest::collection::vec(blob(), 0..4)
        )
            .prop_map(|(handle, timeout_ms, items)| Message::Put {
                handle,
                timeout_ms,
                items
            }),
        proptest::collection::vec((any::<u64>(), any::<u32>(), blob()), 0..4).prop_map(|v| {
            Message::Deliveries {
                items: v
                    .into_iter()
                    .map(|(id, attempt, payload)| WireDelivery {
                        id,
                        attempt,
                        payload,
                    })
                    .collect(),
            }
        }),
        (any::<u16>(), s()).prop_map(|(code, reason)| Message::Goodbye { code, reason }),
    ]
}

fn any_frames() -> impl Strategy<Value = Vec<Frame>> {
    proptest::collection::vec(
        (any::<u32>(), any_message()).prop_map(|(id, message)| Frame { id, message }),
        1..8,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Frames arriving in pieces of any size decode to the same frames, in order, and a
    /// piece never makes the decoder fail or consume a partial frame.
    #[test]
    fn a_stream_of_frames_cut_anywhere_decodes_the_same(
        frames in any_frames(),
        cuts in proptest::collection::vec(1usize..64, 1..64),
    ) {
        let mut wire = BytesMut::new();
        for f in &frames {
            encode(f, &mut wire);
        }
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut pos = 0;
        let mut cut = cuts.iter().cycle();
        while pos < wire.len() {
            let end = (pos + cut.next().unwrap()).min(wire.len());
            buf.extend_from_slice(&wire[pos..end]);
            pos = end;
            while let Some(frame) = decode(&mut buf, DEFAULT_MAX_FRAME).unwrap() {
                got.push(frame);
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, frames);
    }

    /// A valid frame with one byte changed decodes (to something that re-encodes to the
    /// same bytes), asks for more bytes, or is a typed error: never a panic.
    #[test]
    fn a_frame_with_a_flipped_byte_never_panics(
        frame in (any::<u32>(), any_message()).prop_map(|(id, message)| Frame { id, message }),
        at in any::<prop::sample::Index>(),
        xor in 1u8..,
    ) {
        let mut wire = BytesMut::new();
        encode(&frame, &mut wire);
        let i = at.index(wire.len());
        wire[i] ^= xor;
        let original = wire.clone();
        match decode(&mut wire, DEFAULT_MAX_FRAME) {
            Ok(Some(f)) => {
                let mut again = BytesMut::new();
                encode(&f, &mut again);
                prop_assert_eq!(&again[..], &original[..original.len() - wire.len()]);
            }
            Ok(None) => prop_assert_eq!(wire.len(), original.len()),
            Err(_) => {}
        }
    }

    /// Any announced length above the limit is refused from the header alone, whatever
    /// follows it, so a peer cannot make the server buffer more than the limit.
    #[test]
    fn an_announced_length_above_the_limit_is_refused_from_the_header(
        max in 5usize..100_000,
        extra in 1u32..,
        tail in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        let len = (max as u64 + u64::from(extra)).min(u64::from(u32::MAX)) as u32;
        prop_assume!(len as usize > max);
        let mut buf = BytesMut::from(&len.to_be_bytes()[..]);
        buf.extend_from_slice(&tail);
        prop_assert_eq!(
            decode(&mut buf, max),
            Err(DecodeError::Oversized { len: len as usize, max })
        );
    }
}
