//! Limits: the handshake timeout (slowloris), the connection limit (a flood), the idle
//! timeout, name lengths and handles per connection. Breaking one gets a clear, typed
//! error; everyone else goes on and no item is lost.

use std::time::{Duration, Instant};

use hydra_queue::protocol::{encode, Frame, Message};
use hydra_queue::{Error, ErrorCode, ServerOptions};

use crate::raw::{bounded, hello, Raw};
use crate::workload::{short_options, Scenario};

#[tokio::test]
async fn slowloris_clients_are_dropped_at_the_handshake_timeout() {
    let mut s = Scenario::start(short_options(), None, 10).await;
    s.start_worker().await;
    let addr = s.addr();
    let start = Instant::now();
    // Silent, silent after Hello, and dribbling a Hello one byte at a time.
    let silent = tokio::spawn(async move {
        let mut raw = Raw::connect(addr).await;
        raw.expect_goodbye(ErrorCode::Limit, "handshake not finished within 500ms")
            .await
    });
    let after_hello = tokio::spawn(async move {
        let mut raw = Raw::connect(addr).await;
        raw.send(1, hello("slow")).await.unwrap();
        assert!(matches!(
            raw.recv().await.map(|f| f.message),
            Some(Message::Challenge { .. })
        ));
        raw.expect_goodbye(ErrorCode::Limit, "handshake not finished")
            .await
    });
    let dribble = tokio::spawn(async move {
        let mut raw = Raw::connect(addr).await;
        let mut bytes = bytes::BytesMut::new();
        encode(
            &Frame {
                id: 1,
                message: hello("dribbler"),
            },
            &mut bytes,
        );
        for b in bytes.iter() {
            if raw.send_bytes(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        raw.expect_goodbye(ErrorCode::Limit, "handshake not finished")
            .await
    });
    for t in [silent, after_hello, dribble] {
        bounded("slowloris client", t)
            .await
            .expect("slowloris task");
    }
    assert!(start.elapsed() >= Duration::from_millis(500));
    s.finish(10).await;
}

#[tokio::test]
async fn a_flood_past_max_connections_is_refused_with_a_limit_error() {
    let options = ServerOptions {
        max_connections: 4,
        ..short_options()
    };
    let mut s = Scenario::start(options, None, 10).await;
    s.start_worker().await; // one connection
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut raw = Raw::connect(s.addr()).await;
        raw.handshake("holder").await;
        held.push(raw);
    }
    assert_eq!(s.server.connection_count(), 4);
    let floods = (0..20).map(|_| {
        let settings = s.settings("flood");
        tokio::spawn(async move { settings.connect().await })
    });
    for flood in floods.collect::<Vec<_>>() {
        match bounded("flood connect", flood).await.unwrap() {
            Err(Error::Limit(m)) => {
                assert!(m.contains("too many connections (limit 4)"), "{m}")
            }
            other => panic!("expected Error::Limit, got {other:?}"),
        }
    }
    // The worker connected before the flood goes on; freed places are usable again.
    s.wait_done(10).await;
    drop(held);
    let settings = s.settings("late");
    crate::raw::until("connections released", || s.server.connection_count() == 1).await;
    let late = bounded("late connect", settings.connect())
        .await
        .expect("a place is free again");
    late.ping().await.expect("ping");
    s.finish(10).await;
}

#[tokio::test]
async fn a_silent_consumer_is_dropped_at_the_lease_timeout_and_its_items_requeued() {
    let mut s = Scenario::start(short_options(), None, 20).await;
    let (mut raw, deliveries) = Raw::consumer(s.addr(), "tasks", 2).await;
    s.start_worker().await;
    let start = Instant::now();
    raw.expect_goodbye(ErrorCode::Limit, "no request or heartbeat for 3s")
        .await;
    assert!(start.elapsed() >= Duration::from_secs(2));
    let attempts = s.finish(0).await;
    for item in crate::raw::items_of(&deliveries) {
        assert_eq!(attempts[item as usize], 2, "item {item} was requeued");
    }
}

#[tokio::test]
async fn oversized_names_are_refused_with_clear_errors() {
    let mut s = Scenario::start(short_options(), None, 10).await;
    s.start_worker().await;
    let long = "n".repeat(257);

    let mut settings = s.settings("x");
    settings.name = long.clone();
    let err = bounded("connect", settings.connect()).await.unwrap_err();
    assert!(
        matches!(&err, Error::Limit(m) if m.contains("client name longer than 256 bytes")),
        "{err:?}"
    );

    let client = bounded("connect", s.settings("ok").connect())
        .await
        .unwrap();
    let err = client.feed::<u32>("results", &long).await.unwrap_err();
    assert!(
        matches!(&err, Error::Limit(m) if m.contains("feed name must be 1 to 256 bytes")),
        "{err:?}"
    );
    let err = client.consumer::<u32>(&long).await.unwrap_err();
    assert!(matches!(&err, Error::UnknownQueue(_)), "{err:?}");
    // A request-level refusal leaves the connection usable.
    client.ping().await.expect("ping after refusals");
    let host_err = s
        .server
        .source::<u32>(&long, Default::default())
        .unwrap_err();
    assert!(matches!(host_err, Error::Limit(_)), "{host_err:?}");
    s.finish(10).await;
}

#[tokio::test]
async fn too_many_handles_on_one_connection_are_refused_and_the_connection_goes_on() {
    let options = ServerOptions {
        max_handles: 3,
        ..short_options()
    };
    let mut s = Scenario::start(options, None, 10).await;
    s.start_worker().await;
    let client = bounded("connect", s.settings("greedy").connect())
        .await
        .unwrap();
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(client.consumer::<u32>("tasks").await.expect("within limit"));
    }
    let err = client.consumer::<u32>("tasks").await.unwrap_err();
    assert!(
        matches!(&err, Error::Limit(m) if m.contains("too many open handles on one connection (limit 3)")),
        "{err:?}"
    );
    let err = client.feed::<u32>("results", "extra").await.unwrap_err();
    assert!(matches!(&err, Error::Limit(_)), "{err:?}");
    open.pop().unwrap().close().await.expect("close one");
    client
        .consumer::<u32>("tasks")
        .await
        .expect("room again after a close");
    drop(open);
    s.finish(10).await;
}

#[tokio::test]
async fn a_request_flood_on_one_connection_does_not_stop_the_others() {
    let mut s = Scenario::start(short_options(), None, 10).await;
    s.start_worker().await;
    let mut raw = Raw::connect(s.addr()).await;
    raw.handshake("pinger").await;
    let mut buf = bytes::BytesMut::new();
    for id in 1..=5_000u32 {
        encode(
            &Frame {
                id,
                message: Message::Ping,
            },
            &mut buf,
        );
    }
    raw.send_bytes(&buf).await.unwrap();
    let mut pongs = 0;
    while pongs < 5_000 {
        match raw.recv().await {
            Some(Frame {
                message: Message::Pong,
                ..
            }) => pongs += 1,
            other => panic!("expected Pong, got {other:?}"),
        }
    }
    s.finish(10).await;
}

#[tokio::test]
async fn a_large_frame_before_the_handshake_is_refused_at_64_kib() {
    let mut s = Scenario::start(short_options(), None, 10).await;
    s.start_worker().await;
    let mut raw = Raw::connect(s.addr()).await;
    // 100,000 bytes announced: under max_frame, but more than an unauthenticated peer may
    // make the server buffer. Refused from the header, without waiting for the body.
    raw.send_bytes(&100_000u32.to_be_bytes()).await.unwrap();
    raw.expect_goodbye(ErrorCode::Protocol, "exceeds the limit of 65536 bytes")
        .await;
    s.finish(10).await;
}

#[tokio::test]
async fn a_client_sending_a_frame_over_max_frame_is_disconnected_with_the_reason() {
    let options = ServerOptions {
        max_frame: 4096,
        ..short_options()
    };
    let mut s = Scenario::start(options, None, 10).await;
    s.start_worker().await;
    let client = bounded("connect", s.settings("big").connect())
        .await
        .unwrap();
    let feed = client.feed::<Vec<u8>>("results", "big").await.unwrap();
    let err = bounded("oversized put", feed.put(&vec![7u8; 8192]))
        .await
        .unwrap_err();
    match &err {
        Error::ConnectionLost { reason, .. } => assert!(
            reason.contains("exceeds the limit of 4096 bytes"),
            "{reason}"
        ),
        other => panic!("expected ConnectionLost with the reason, got {other:?}"),
    }
    s.finish(10).await;
}
