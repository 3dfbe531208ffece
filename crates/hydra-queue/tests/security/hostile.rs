//! Hostile bytes: random data, a header announcing 4 GiB, a frame cut mid-way, unknown
//! message kinds and protocol versions. Each offender is disconnected with a clear
//! `Goodbye`; the items it held go back to the queue; a well-behaved worker running at the
//! same time finishes every item.

use std::net::SocketAddr;

use bytes::{BufMut, BytesMut};
use hydra_queue::protocol::{encode, Frame, Message, MAGIC, NONCE_LEN, VERSION};
use hydra_queue::{ClientSettings, Error, ErrorCode};
use rand::{RngCore, SeedableRng};
use tokio::net::TcpListener;

use crate::raw::{bounded, hello, items_of, Ending, Raw};
use crate::workload::{short_options, Scenario};

/// A scenario where a hostile consumer holds leases on the first `held` items while a
/// well-behaved worker is connected. Returns the hostile client and the items it holds.
async fn with_hostile_consumer(held: u32) -> (Scenario, Raw, Vec<u32>) {
    let mut s = Scenario::start(short_options(), None, 20).await;
    let (raw, deliveries) = Raw::consumer(s.addr(), "tasks", held).await;
    let items = items_of(&deliveries);
    assert_eq!(items.len(), held as usize);
    s.start_worker().await;
    (s, raw, items)
}

/// Finishes the scenario and checks the hostile client's items were redelivered.
async fn finish_requeued(s: Scenario, held: &[u32]) {
    let attempts = s.finish(10).await;
    for &item in held {
        assert_eq!(
            attempts[item as usize], 2,
            "item {item}, leased by the disconnected client, was delivered again"
        );
    }
}

fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    data
}

#[tokio::test]
async fn random_bytes_before_the_handshake_are_refused() {
    let mut s = Scenario::start(short_options(), None, 10).await;
    s.start_worker().await;
    for seed in 0..16 {
        let mut raw = Raw::connect(s.addr()).await;
        let _ = raw.send_bytes(&random_bytes(seed, 4096)).await;
        match raw.ending(|_| false).await {
            Ending::Goodbye { code, reason } => assert!(
                code == ErrorCode::Protocol as u16 || code == ErrorCode::Limit as u16,
                "seed {seed}: goodbye {code}: {reason}"
            ),
            Ending::Closed => panic!("seed {seed}: closed without saying why"),
        }
    }
    s.finish(10).await;
}

#[tokio::test]
async fn random_bytes_from_a_consumer_requeue_its_items() {
    let (s, mut raw, held) = with_hostile_consumer(3).await;
    let mut data = random_bytes(7, 4096);
    data[0] = 0x7f; // a length far past the default limit: refused at once
    let _ = raw.send_bytes(&data).await;
    raw.expect_goodbye(ErrorCode::Protocol, "exceeds the limit")
        .await;
    finish_requeued(s, &held).await;
}

#[tokio::test]
async fn a_header_announcing_4_gib_is_refused_without_reading_it() {
    let (s, mut raw, held) = with_hostile_consumer(2).await;
    raw.send_bytes(&[0xff, 0xff, 0xff, 0xff]).await.unwrap();
    let reason = raw
        .expect_goodbye(ErrorCode::Protocol, "exceeds the limit")
        .await;
    assert!(reason.contains("4294967295"), "{reason}");
    finish_requeued(s, &held).await;
}

#[tokio::test]
async fn a_frame_cut_mid_way_then_closed_requeues_the_items() {
    let (s, mut raw, held) = with_hostile_consumer(2).await;
    let mut frame = BytesMut::new();
    encode(
        &Frame {
            id: 9,
            message: Message::Done {
                handle: 1,
                deliveries: vec![1, 2, 3],
            },
        },
        &mut frame,
    );
    raw.send_bytes(&frame[..frame.len() / 2]).await.unwrap();
    raw.shutdown_write().await;
    match raw.ending(|_| false).await {
        Ending::Goodbye { code, reason } => {
            assert_eq!(code, ErrorCode::Protocol as u16, "{reason}");
            assert!(reason.contains("middle of a frame"), "{reason}");
        }
        // The goodbye may be lost to a reset since this side already closed.
        Ending::Closed => {}
    }
    finish_requeued(s, &held).await;
}

#[tokio::test]
async fn a_frame_cut_mid_way_and_left_hanging_is_dropped_at_the_lease_timeout() {
    let (s, mut raw, held) = with_hostile_consumer(1).await;
    raw.send_bytes(&[0, 0, 0, 17, 0x13]).await.unwrap();
    raw.expect_goodbye(ErrorCode::Limit, "no request or heartbeat")
        .await;
    finish_requeued(s, &held).await;
}

fn frame_bytes(kind: u8, id: u32, fields: &[u8]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    buf.put_u32((5 + fields.len()) as u32);
    buf.put_u8(kind);
    buf.put_u32(id);
    buf.put_slice(fields);
    buf.to_vec()
}

#[tokio::test]
async fn unknown_message_kinds_are_refused_before_the_handshake() {
    let mut s = Scenario::start(short_options(), None, 10).await;
    s.start_worker().await;
    for kind in [0x00, 0x7f, 0xff] {
        let mut raw = Raw::connect(s.addr()).await;
        raw.send_bytes(&frame_bytes(kind, 1, b"abc")).await.unwrap();
        raw.expect_goodbye(
            ErrorCode::Protocol,
            &format!("unknown message kind 0x{kind:02x}"),
        )
        .await;
    }
    // A known message in the wrong place is refused the same way.
    let mut raw = Raw::connect(s.addr()).await;
    raw.send(1, Message::Ping).await.unwrap();
    raw.expect_goodbye(ErrorCode::Protocol, "expected Hello, got Ping")
        .await;
    s.finish(10).await;
}

#[tokio::test]
async fn an_unknown_message_kind_from_a_consumer_requeues_its_items() {
    let (s, mut raw, held) = with_hostile_consumer(2).await;
    raw.send_bytes(&frame_bytes(0x99, 5, &[1, 2, 3]))
        .await
        .unwrap();
    raw.expect_goodbye(ErrorCode::Protocol, "unknown message kind 0x99")
        .await;
    finish_requeued(s, &held).await;
}

#[tokio::test]
async fn a_server_message_sent_by_a_consumer_requeues_its_items() {
    let (s, mut raw, held) = with_hostile_consumer(1).await;
    let welcome = Message::Welcome {
        connection_id: 1,
        proof: [0; NONCE_LEN],
    };
    raw.send(5, welcome).await.unwrap();
    raw.expect_goodbye(
        ErrorCode::Protocol,
        "unexpected Welcome message from a client",
    )
    .await;
    finish_requeued(s, &held).await;
}

#[tokio::test]
async fn unsupported_protocol_versions_and_bad_magic_are_refused() {
    let mut s = Scenario::start(short_options(), None, 10).await;
    s.start_worker().await;
    for (min, max) in [(0, 0), (VERSION + 1, VERSION + 5), (u16::MAX, u16::MAX)] {
        let mut raw = Raw::connect(s.addr()).await;
        let hello = Message::Hello {
            magic: MAGIC,
            min_version: min,
            max_version: max,
            name: "future".into(),
        };
        raw.send(1, hello).await.unwrap();
        let reason = raw
            .expect_goodbye(ErrorCode::UnsupportedVersion, "server speaks")
            .await;
        assert!(reason.contains(&format!("{min}..={max}")), "{reason}");
    }
    let mut raw = Raw::connect(s.addr()).await;
    let bad_magic = Message::Hello {
        magic: 0x4745_5420, // "GET ", as an HTTP client would send
        min_version: VERSION,
        max_version: VERSION,
        name: "web".into(),
    };
    raw.send(1, bad_magic).await.unwrap();
    raw.expect_goodbye(ErrorCode::Protocol, "bad magic").await;
    s.finish(10).await;
}

/// A fake server that answers a Hello with `answer`.
async fn fake_server(answer: Message) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let max = hydra_queue::protocol::DEFAULT_MAX_FRAME;
        let mut conn = hydra_queue::connection::Connection::new(stream, max);
        if let Ok(Some(frame)) = conn.read_frame().await {
            let _ = conn
                .write_frame(&Frame {
                    id: frame.id,
                    message: answer,
                })
                .await;
            let _ = conn.read_frame().await;
        }
    });
    addr
}

#[tokio::test]
async fn a_client_refuses_a_server_of_another_protocol_version() {
    let challenge = Message::Challenge {
        version: VERSION + 1,
        token_required: false,
        idle_timeout_ms: 30_000,
        nonce: [0; NONCE_LEN],
    };
    let addr = fake_server(challenge).await;
    let settings = ClientSettings::new(addr.to_string(), "w");
    let err = bounded("connect", settings.connect()).await.unwrap_err();
    assert!(matches!(err, Error::UnsupportedVersion(_)), "{err:?}");

    let goodbye = Message::Goodbye {
        code: ErrorCode::UnsupportedVersion as u16,
        reason: "client speaks versions 1..=1, server speaks 2".into(),
    };
    let addr = fake_server(goodbye).await;
    let settings = ClientSettings::new(addr.to_string(), "w");
    let err = bounded("connect", settings.connect()).await.unwrap_err();
    assert!(
        matches!(&err, Error::UnsupportedVersion(m) if m.contains("server speaks 2")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_hello_instead_of_auth_is_refused() {
    let mut s = Scenario::start(short_options(), None, 10).await;
    s.start_worker().await;
    let mut raw = Raw::connect(s.addr()).await;
    raw.send(1, hello("twice")).await.unwrap();
    assert!(matches!(
        raw.recv().await.map(|f| f.message),
        Some(Message::Challenge { .. })
    ));
    raw.send(2, hello("twice")).await.unwrap();
    raw.expect_goodbye(ErrorCode::Protocol, "expected Auth, got Hello")
        .await;
    s.finish(10).await;
}
