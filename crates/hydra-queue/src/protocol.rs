//! Frames and messages of the wire protocol: pure encode and decode over bytes, no I/O.
//!
//! A frame is a 4-byte big-endian body length, then the body: a 1-byte message kind, a
//! 4-byte big-endian request id, then the message's fields. `docs/PROTOCOL.md` is the
//! normative description; this module is its implementation.
//!
//! [`decode`] never panics: given any bytes it returns a frame, `Ok(None)` ("need more
//! bytes"), or a typed [`DecodeError`].

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// `"HYDR"`: the first field of [`Message::Hello`].
pub const MAGIC: u32 = 0x4859_4452;
/// The protocol version this build speaks.
pub const VERSION: u16 = 1;
/// Bytes before a frame's body: the body length.
pub const HEADER_LEN: usize = 4;
/// Smallest possible body: kind and request id.
pub const MIN_BODY_LEN: usize = 5;
/// Default maximum body length (16 MiB).
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;
/// A timeout of this many milliseconds means "wait forever".
pub const WAIT_FOREVER: u32 = u32::MAX;
/// Length of handshake nonces and proofs.
pub const NONCE_LEN: usize = 32;

/// One delivery of a source-queue item to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireDelivery {
    /// Delivery id, unique on the queue for the server's lifetime.
    pub id: u64,
    /// 1 for the first delivery of an item, 2 for the second...
    pub attempt: u32,
    /// The item's bytes, as the host put them.
    pub payload: Bytes,
}

/// Every message of the protocol. Kind bytes are given in `docs/PROTOCOL.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Message {
    // Handshake.
    /// Client's first frame.
    Hello {
        magic: u32,
        min_version: u16,
        max_version: u16,
        name: String,
    },
    /// Server's answer to `Hello`: the version chosen and a fresh nonce.
    Challenge {
        version: u16,
        token_required: bool,
        idle_timeout_ms: u32,
        nonce: [u8; NONCE_LEN],
    },
    /// Client's proof of the token (zeros when no token is used).
    Auth {
        nonce: [u8; NONCE_LEN],
        proof: [u8; NONCE_LEN],
    },
    /// Server accepts the connection, proving in turn that it knows the token.
    Welcome {
        connection_id: u64,
        proof: [u8; NONCE_LEN],
    },

    // Requests (client to server).
    Ping,
    OpenConsumer {
        queue: String,
    },
    OpenFeed {
        queue: String,
        name: String,
    },
    Get {
        handle: u32,
        max: u32,
        timeout_ms: u32,
    },
    Started {
        handle: u32,
        delivery: u64,
    },
    Done {
        handle: u32,
        deliveries: Vec<u64>,
    },
    Failed {
        handle: u32,
        delivery: u64,
        reason: String,
    },
    Put {
        handle: u32,
        timeout_ms: u32,
        items: Vec<Bytes>,
    },
    CloseHandle {
        handle: u32,
    },

    // Responses (server to client).
    Pong,
    Ok,
    Opened {
        handle: u32,
    },
    Deliveries {
        items: Vec<WireDelivery>,
    },
    Acked {
        refused: Vec<u64>,
    },
    Error {
        code: u16,
        message: String,
    },
    /// Unsolicited (request id 0): the server is closing this connection.
    Goodbye {
        code: u16,
        reason: String,
    },
}

impl Message {
    /// The kind byte that starts this message's body.
    pub fn kind(&self) -> u8 {
        match self {
            Message::Hello { .. } => 0x01,
            Message::Challenge { .. } => 0x02,
            Message::Auth { .. } => 0x03,
            Message::Welcome { .. } => 0x04,
            Message::Ping => 0x10,
            Message::OpenConsumer { .. } => 0x11,
            Message::OpenFeed { .. } => 0x12,
            Message::Get { .. } => 0x13,
            Message::Started { .. } => 0x14,
            Message::Done { .. } => 0x15,
            Message::Failed { .. } => 0x16,
            Message::Put { .. } => 0x17,
            Message::CloseHandle { .. } => 0x18,
            Message::Pong => 0x20,
            Message::Ok => 0x21,
            Message::Opened { .. } => 0x22,
            Message::Deliveries { .. } => 0x23,
            Message::Acked { .. } => 0x24,
            Message::Error { .. } => 0x25,
            Message::Goodbye { .. } => 0x26,
        }
    }

    /// A short name for logs and errors.
    pub fn name(&self) -> &'static str {
        kind_name(self.kind()).expect("every message kind has a name")
    }
}

/// A message with the request id it answers or carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Chosen by the client for requests, echoed in responses; 0 for unsolicited messages.
    pub id: u32,
    /// The message.
    pub message: Message,
}

/// Why bytes could not be decoded into a frame. Every variant is final for the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The header announces a body larger than the limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    Oversized {
        /// Announced body length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The header announces a body too short to hold a kind and request id.
    #[error("frame of {0} bytes is shorter than the minimum of 5")]
    TooShort(usize),
    /// The kind byte is not a known message.
    #[error("unknown message kind 0x{0:02x}")]
    UnknownKind(u8),
    /// The body ended before the message's fields did.
    #[error("{0} message truncated: its fields run past the end of the frame")]
    Truncated(&'static str),
    /// The body has bytes after the message's fields.
    #[error("{0} message has {1} trailing bytes")]
    Trailing(&'static str, usize),
    /// A string field is not UTF-8.
    #[error("{0} message has a string that is not valid utf-8")]
    BadUtf8(&'static str),
    /// A boolean byte other than 0 or 1.
    #[error("{0} message has an invalid boolean byte")]
    BadBool(&'static str),
}

/// Appends `frame` to `dst`, header included.
///
/// ```
/// use bytes::BytesMut;
/// use hydra_queue::protocol::{decode, encode, Frame, Message, DEFAULT_MAX_FRAME};
/// let mut buf = BytesMut::new();
/// let frame = Frame { id: 7, message: Message::Ping };
/// encode(&frame, &mut buf);
/// assert_eq!(decode(&mut buf, DEFAULT_MAX_FRAME).unwrap(), Some(frame));
/// assert!(buf.is_empty());
/// ```
pub fn encode(frame: &Frame, dst: &mut BytesMut) {
    let start = dst.len();
    dst.put_u32(0); // length, patched below
    dst.put_u8(frame.message.kind());
    dst.put_u32(frame.id);
    match &frame.message {
        Message::Hello {
            magic,
            min_version,
            max_version,
            name,
        } => {
            dst.put_u32(*magic);
            dst.put_u16(*min_version);
            dst.put_u16(*max_version);
            put_str(dst, name);
        }
        Message::Challenge {
            version,
            token_required,
            idle_timeout_ms,
            nonce,
        } => {
            dst.put_u16(*version);
            dst.put_u8(u8::from(*token_required));
            dst.put_u32(*idle_timeout_ms);
            dst.put_slice(nonce);
        }
        Message::Auth { nonce, proof } => {
            dst.put_slice(nonce);
            dst.put_slice(proof);
        }
        Message::Welcome {
            connection_id,
            proof,
        } => {
            dst.put_u64(*connection_id);
            dst.put_slice(proof);
        }
        Message::Ping | Message::Pong | Message::Ok => {}
        Message::OpenConsumer { queue } => put_str(dst, queue),
        Message::OpenFeed { queue, name } => {
            put_str(dst, queue);
            put_str(dst, name);
        }
        Message::Get {
            handle,
            max,
            timeout_ms,
        } => {
            dst.put_u32(*handle);
            dst.put_u32(*max);
            dst.put_u32(*timeout_ms);
        }
        Message::Started { handle, delivery } => {
            dst.put_u32(*handle);
            dst.put_u64(*delivery);
        }
        Message::Done { handle, deliveries } => {
            dst.put_u32(*handle);
            put_ids(dst, deliveries);
        }
        Message::Failed {
            handle,
            delivery,
            reason,
        } => {
            dst.put_u32(*handle);
            dst.put_u64(*delivery);
            put_str(dst, reason);
        }
        Message::Put {
            handle,
            timeout_ms,
            items,
        } => {
            dst.put_u32(*handle);
            dst.put_u32(*timeout_ms);
            dst.put_u32(items.len() as u32);
            for item in items {
                put_bytes(dst, item);
            }
        }
        Message::CloseHandle { handle } => dst.put_u32(*handle),
        Message::Opened { handle } => dst.put_u32(*handle),
        Message::Deliveries { items } => {
            dst.put_u32(items.len() as u32);
            for d in items {
                dst.put_u64(d.id);
                dst.put_u32(d.attempt);
                put_bytes(dst, &d.payload);
            }
        }
        Message::Acked { refused } => put_ids(dst, refused),
        Message::Error { code, message } => {
            dst.put_u16(*code);
            put_str(dst, message);
        }
        Message::Goodbye { code, reason } => {
            dst.put_u16(*code);
            put_str(dst, reason);
        }
    }
    let body_len = (dst.len() - start - HEADER_LEN) as u32;
    dst[start..start + HEADER_LEN].copy_from_slice(&body_len.to_be_bytes());
}

/// The encoded size of `frame`, header included, without encoding it.
pub fn encoded_len(frame: &Frame) -> usize {
    let fields = match &frame.message {
        Message::Hello { name, .. } => 8 + 2 + name.len(),
        Message::Challenge { .. } => 2 + 1 + 4 + NONCE_LEN,
        Message::Auth { .. } => 2 * NONCE_LEN,
        Message::Welcome { .. } => 8 + NONCE_LEN,
        Message::Ping | Message::Pong | Message::Ok => 0,
        Message::OpenConsumer { queue } => 2 + queue.len(),
        Message::OpenFeed { queue, name } => 4 + queue.len() + name.len(),
        Message::Get { .. } => 12,
        Message::Started { .. } => 12,
        Message::Done { deliveries, .. } => 8 + 8 * deliveries.len(),
        Message::Failed { reason, .. } => 14 + reason.len(),
        Message::Put { items, .. } => 12 + items.iter().map(|i| 4 + i.len()).sum::<usize>(),
        Message::CloseHandle { .. } | Message::Opened { .. } => 4,
        Message::Deliveries { items } => {
            4 + items.iter().map(|d| 16 + d.payload.len()).sum::<usize>()
        }
        Message::Acked { refused } => 4 + 8 * refused.len(),
        Message::Error { message, .. } => 4 + message.len(),
        Message::Goodbye { reason, .. } => 4 + reason.len(),
    };
    HEADER_LEN + MIN_BODY_LEN + fields
}

/// Takes one frame off the front of `src`.
///
/// Returns `Ok(None)` when `src` does not yet hold a whole frame (nothing is consumed), and
/// an error for a frame that can never be valid. Payloads are zero-copy slices of `src`.
pub fn decode(src: &mut BytesMut, max_frame: usize) -> Result<Option<Frame>, DecodeError> {
    if src.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
    if len > max_frame {
        return Err(DecodeError::Oversized {
            len,
            max: max_frame,
        });
    }
    if len < MIN_BODY_LEN {
        return Err(DecodeError::TooShort(len));
    }
    if src.len() < HEADER_LEN + len {
        src.reserve(HEADER_LEN + len - src.len());
        return Ok(None);
    }
    src.advance(HEADER_LEN);
    let body = src.split_to(len).freeze();
    decode_body(body).map(Some)
}

fn decode_body(mut body: Bytes) -> Result<Frame, DecodeError> {
    let kind = body.get_u8();
    let id = body.get_u32();
    let name = kind_name(kind).ok_or(DecodeError::UnknownKind(kind))?;
    let mut r = Fields { b: body, name };
    let message = match kind {
        0x01 => Message::Hello {
            magic: r.u32()?,
            min_version: r.u16()?,
            max_version: r.u16()?,
            name: r.string()?,
        },
        0x02 => Message::Challenge {
            version: r.u16()?,
            token_required: r.bool()?,
            idle_timeout_ms: r.u32()?,
            nonce: r.nonce()?,
        },
        0x03 => Message::Auth {
            nonce: r.nonce()?,
            proof: r.nonce()?,
        },
        0x04 => Message::Welcome {
            connection_id: r.u64()?,
            proof: r.nonce()?,
        },
        0x10 => Message::Ping,
        0x11 => Message::OpenConsumer { queue: r.string()? },
        0x12 => Message::OpenFeed {
            queue: r.string()?,
            name: r.string()?,
        },
        0x13 => Message::Get {
            handle: r.u32()?,
            max: r.u32()?,
            timeout_ms: r.u32()?,
        },
        0x14 => Message::Started {
            handle: r.u32()?,
            delivery: r.u64()?,
        },
        0x15 => Message::Done {
            handle: r.u32()?,
            deliveries: r.ids()?,
        },
        0x16 => Message::Failed {
            handle: r.u32()?,
            delivery: r.u64()?,
            reason: r.string()?,
        },
        0x17 => {
            let handle = r.u32()?;
            let timeout_ms = r.u32()?;
            let n = r.count(4)?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(r.bytes()?);
            }
            Message::Put {
                handle,
                timeout_ms,
                items,
            }
        }
        0x18 => Message::CloseHandle { handle: r.u32()? },
        0x20 => Message::Pong,
        0x21 => Message::Ok,
        0x22 => Message::Opened { handle: r.u32()? },
        0x23 => {
            let n = r.count(16)?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(WireDelivery {
                    id: r.u64()?,
                    attempt: r.u32()?,
                    payload: r.bytes()?,
                });
            }
            Message::Deliveries { items }
        }
        0x24 => Message::Acked { refused: r.ids()? },
        0x25 => Message::Error {
            code: r.u16()?,
            message: r.string()?,
        },
        0x26 => Message::Goodbye {
            code: r.u16()?,
            reason: r.string()?,
        },
        _ => unreachable!("kind_name accepted an unknown kind"),
    };
    if r.b.has_remaining() {
        return Err(DecodeError::Trailing(name, r.b.remaining()));
    }
    Ok(Frame { id, message })
}

fn kind_name(kind: u8) -> Option<&'static str> {
    Some(match kind {
        0x01 => "Hello",
        0x02 => "Challenge",
        0x03 => "Auth",
        0x04 => "Welcome",
        0x10 => "Ping",
        0x11 => "OpenConsumer",
        0x12 => "OpenFeed",
        0x13 => "Get",
        0x14 => "Started",
        0x15 => "Done",
        0x16 => "Failed",
        0x17 => "Put",
        0x18 => "CloseHandle",
        0x20 => "Pong",
        0x21 => "Ok",
        0x22 => "Opened",
        0x23 => "Deliveries",
        0x24 => "Acked",
        0x25 => "Error",
        0x26 => "Goodbye",
        _ => return None,
    })
}

fn put_str(dst: &mut BytesMut, s: &str) {
    // Strings longer than u16::MAX are cut at a char boundary: names and reasons only.
    let mut end = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    dst.put_u16(end as u16);
    dst.put_slice(&s.as_bytes()[..end]);
}

fn put_bytes(dst: &mut BytesMut, b: &[u8]) {
    dst.put_u32(b.len() as u32);
    dst.put_slice(b);
}

fn put_ids(dst: &mut BytesMut, ids: &[u64]) {
    dst.put_u32(ids.len() as u32);
    for id in ids {
        dst.put_u64(*id);
    }
}

/// Checked field reader: every read says `Truncated` instead of panicking.
struct Fields {
    b: Bytes,
    name: &'static str,
}

impl Fields {
    fn need(&self, n: usize) -> Result<(), DecodeError> {
        if self.b.remaining() < n {
            Err(DecodeError::Truncated(self.name))
        } else {
            Ok(())
        }
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.need(2)?;
        Ok(self.b.get_u16())
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.need(4)?;
        Ok(self.b.get_u32())
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.need(8)?;
        Ok(self.b.get_u64())
    }
    fn bool(&mut self) -> Result<bool, DecodeError> {
        self.need(1)?;
        match self.b.get_u8() {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::BadBool(self.name)),
        }
    }
    fn nonce(&mut self) -> Result<[u8; NONCE_LEN], DecodeError> {
        self.need(NONCE_LEN)?;
        let mut n = [0u8; NONCE_LEN];
        self.b.copy_to_slice(&mut n);
        Ok(n)
    }
    fn string(&mut self) -> Result<String, DecodeError> {
        let len = self.u16()? as usize;
        self.need(len)?;
        let raw = self.b.split_to(len);
        String::from_utf8(raw.to_vec()).map_err(|_| DecodeError::BadUtf8(self.name))
    }
    fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u32()? as usize;
        self.need(len)?;
        Ok(self.b.split_to(len))
    }
    /// A list count, checked against the bytes left so a lying count cannot allocate.
    fn count(&mut self, min_elem: usize) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_elem) > self.b.remaining() {
            return Err(DecodeError::Truncated(self.name));
        }
        Ok(n)
    }
    fn ids(&mut self) -> Result<Vec<u64>, DecodeError> {
        let n = self.count(8)?;
        Ok((0..n).map(|_| self.b.get_u64()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all_messages() -> Vec<Message> {
        vec![
            Message::Hello {
                magic: MAGIC,
                min_version: 1,
                max_version: 1,
                name: "worker-é".into(),
            },
            Message::Challenge {
                version: 1,
                token_required: true,
                idle_timeout_ms: 30_000,
                nonce: [7; NONCE_LEN],
            },
            Message::Auth {
                nonce: [1; NONCE_LEN],
                proof: [2; NONCE_LEN],
            },
            Message::Welcome {
                connection_id: 42,
                proof: [3; NONCE_LEN],
            },
            Message::Ping,
            Message::OpenConsumer {
                queue: "tasks".into(),
            },
            Message::OpenFeed {
                queue: "results".into(),
                name: "feed-1".into(),
            },
            Message::Get {
                handle: 1,
                max: 16,
                timeout_ms: WAIT_FOREVER,
            },
            Message::Started {
                handle: 1,
                delivery: 9,
            },
            Message::Done {
                handle: 1,
                deliveries: vec![1, 2, 3],
            },
            Message::Failed {
                handle: 1,
                delivery: 4,
                reason: "exit 1".into(),
            },
            Message::Put {
                handle: 2,
                timeout_ms: 100,
                items: vec![Bytes::from_static(b"a"), Bytes::new()],
            },
            Message::CloseHandle { handle: 2 },
            Message::Pong,
            Message::Ok,
            Message::Opened { handle: 3 },
            Message::Deliveries {
                items: vec![WireDelivery {
                    id: 5,
                    attempt: 2,
                    payload: Bytes::from_static(b"xyz"),
                }],
            },
            Message::Acked { refused: vec![8] },
            Message::Error {
                code: 4,
                message: "not leased".into(),
            },
            Message::Goodbye {
                code: 13,
                reason: "shutting down".into(),
            },
        ]
    }

    #[test]
    fn every_message_round_trips_and_reports_its_length() {
        for (i, message) in all_messages().into_iter().enumerate() {
            let frame = Frame {
                id: i as u32,
                message,
            };
            let mut buf = BytesMut::new();
            encode(&frame, &mut buf);
            assert_eq!(buf.len(), encoded_len(&frame), "{frame:?}");
            assert_eq!(kind_name(frame.message.kind()), Some(frame.message.name()));
            let got = decode(&mut buf, DEFAULT_MAX_FRAME).unwrap().unwrap();
            assert_eq!(got, frame);
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn every_proper_prefix_asks_for_more_bytes() {
        for message in all_messages() {
            let mut full = BytesMut::new();
            encode(&Frame { id: 1, message }, &mut full);
            for cut in 0..full.len() {
                let mut part = BytesMut::from(&full[..cut]);
                assert_eq!(decode(&mut part, DEFAULT_MAX_FRAME), Ok(None));
                assert_eq!(part.len(), cut, "a partial frame must not be consumed");
            }
        }
    }

    /// The byte examples of docs/PROTOCOL.md.
    #[test]
    fn bytes_match_the_protocol_document() {
        let hex = |message: Message, id: u32| {
            let mut buf = BytesMut::new();
            encode(&Frame { id, message }, &mut buf);
            buf.iter().map(|b| format!("{b:02x}")).collect::<String>()
        };
        let hello = Message::Hello {
            magic: MAGIC,
            min_version: 1,
            max_version: 1,
            name: "w".into(),
        };
        assert_eq!(
            hex(hello, 1),
            "00000010010000000148594452000100010001".to_string() + "77"
        );
        let open = Message::OpenConsumer {
            queue: "tasks".into(),
        };
        assert_eq!(hex(open, 3), "0000000c110000000300057461736b73");
        let get = Message::Get {
            handle: 1,
            max: 1,
            timeout_ms: WAIT_FOREVER,
        };
        assert_eq!(
            hex(get, 4),
            "00000011130000000400000001".to_string() + "00000001ffffffff"
        );
        let done = Message::Done {
            handle: 1,
            deliveries: vec![5],
        };
        assert_eq!(
            hex(done, 5),
            "000000151500000005000000010000000100000000".to_string() + "00000005"
        );
        assert_eq!(
            hex(Message::Acked { refused: vec![] }, 5),
            "000000092400000005".to_string() + "00000000"
        );
    }

    #[test]
    fn oversized_header_is_refused_before_reading_the_body() {
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        assert_eq!(
            decode(&mut buf, DEFAULT_MAX_FRAME),
            Err(DecodeError::Oversized {
                len: u32::MAX as usize,
                max: DEFAULT_MAX_FRAME
            })
        );
    }

    #[test]
    fn too_short_and_unknown_kind_and_trailing_are_errors() {
        let mut buf = BytesMut::from(&[0, 0, 0, 2, 0x10, 0][..]);
        assert_eq!(
            decode(&mut buf, DEFAULT_MAX_FRAME),
            Err(DecodeError::TooShort(2))
        );
        let mut buf = BytesMut::from(&[0, 0, 0, 5, 0x7f, 0, 0, 0, 1][..]);
        assert_eq!(
            decode(&mut buf, DEFAULT_MAX_FRAME),
            Err(DecodeError::UnknownKind(0x7f))
        );
        let mut buf = BytesMut::from(&[0, 0, 0, 6, 0x10, 0, 0, 0, 1, 9][..]);
        assert_eq!(
            decode(&mut buf, DEFAULT_MAX_FRAME),
            Err(DecodeError::Trailing("Ping", 1))
        );
    }

    #[test]
    fn a_lying_list_count_is_truncated_not_allocated() {
        // Done with a count of 2^32-1 ids but no ids.
        let mut buf = BytesMut::from(
            &[
                0, 0, 0, 13, 0x15, 0, 0, 0, 1, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff,
            ][..],
        );
        assert_eq!(
            decode(&mut buf, DEFAULT_MAX_FRAME),
            Err(DecodeError::Truncated("Done"))
        );
    }

    #[test]
    fn bad_utf8_and_bad_bool_are_errors() {
        let mut buf = BytesMut::new();
        encode(
            &Frame {
                id: 1,
                message: Message::OpenConsumer { queue: "ab".into() },
            },
            &mut buf,
        );
        let n = buf.len();
        buf[n - 1] = 0xff;
        assert_eq!(
            decode(&mut buf, DEFAULT_MAX_FRAME),
            Err(DecodeError::BadUtf8("OpenConsumer"))
        );
        let mut buf = BytesMut::new();
        encode(
            &Frame {
                id: 1,
                message: Message::Challenge {
                    version: 1,
                    token_required: false,
                    idle_timeout_ms: 1,
                    nonce: [0; NONCE_LEN],
                },
            },
            &mut buf,
        );
        buf[HEADER_LEN + MIN_BODY_LEN + 2] = 2;
        assert_eq!(
            decode(&mut buf, DEFAULT_MAX_FRAME),
            Err(DecodeError::BadBool("Challenge"))
        );
    }

    proptest! {
        #[test]
        fn any_bytes_decode_ask_for_more_or_fail_without_panicking(
            data in proptest::collection::vec(any::<u8>(), 0..512),
            max in 0usize..1024,
        ) {
            let mut buf = BytesMut::from(&data[..]);
            let before = buf.len();
            match decode(&mut buf, max) {
                Ok(Some(frame)) => {
                    // What decoded re-encodes to the bytes it consumed.
                    let mut again = BytesMut::new();
                    encode(&frame, &mut again);
                    prop_assert_eq!(&again[..], &data[..before - buf.len()]);
                }
                Ok(None) => prop_assert_eq!(buf.len(), before),
                Err(_) => {}
            }
        }

        #[test]
        fn frames_with_random_bodies_never_panic(
            kind in prop_oneof![0x00u8..0x30, any::<u8>()],
            body in proptest::collection::vec(any::<u8>(), 4..300),
        ) {
            let mut buf = BytesMut::new();
            buf.put_u32((body.len() + 1) as u32);
            buf.put_u8(kind);
            buf.put_slice(&body);
            let _ = decode(&mut buf, DEFAULT_MAX_FRAME);
        }
    }
}
