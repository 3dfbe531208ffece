//! Token authentication: the right token works with and without TLS; a wrong or missing
//! one is refused before any queue operation; a captured handshake cannot be replayed; a
//! server that does not know the token is not trusted.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use hydra_queue::protocol::{decode, encode, Frame, Message, DEFAULT_MAX_FRAME, NONCE_LEN};
use hydra_queue::protocol::{VERSION, WAIT_FOREVER};
use hydra_queue::{Error, ErrorCode, ServerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::certs::Pki;
use crate::raw::{bounded, hello, Raw};
use crate::workload::{short_options, Scenario};

const TOKEN: &str = "correct horse battery staple";

fn token_options(tls: Option<&Pki>) -> ServerOptions {
    ServerOptions {
        token: Some(TOKEN.into()),
        tls: tls.map(|p| p.server_tls(false)),
        ..short_options()
    }
}

/// Connects with `token` and opens a consumer; the error if any step fails.
async fn try_token(s: &Scenario, token: Option<&str>) -> Result<(), Error> {
    let mut settings = s.settings("other");
    settings.token = token.map(str::to_string);
    bounded("connect with a token", async {
        let client = settings.connect().await?;
        client.consumer::<u32>("tasks").await.map(|_| ())
    })
    .await
}

fn assert_auth(result: Result<(), Error>, needle: &str) {
    match result {
        Err(Error::Auth(m)) => assert!(m.contains(needle), "{m:?} should mention {needle:?}"),
        other => panic!("expected Error::Auth mentioning {needle:?}, got {other:?}"),
    }
}

async fn right_and_wrong_tokens(pki: Option<&Pki>) {
    let client_tls = pki.map(Pki::client_tls);
    let mut s = Scenario::start(token_options(pki), client_tls, 10).await;
    s.start_worker().await;
    try_token(&s, Some(TOKEN)).await.expect("the right token");
    assert_auth(
        try_token(&s, Some("wrong token")).await,
        "wrong or missing token",
    );
    assert_auth(try_token(&s, None).await, "requires a token");
    s.finish(10).await;
}

#[tokio::test]
async fn the_right_token_works_and_a_wrong_or_missing_one_is_refused_over_tcp() {
    right_and_wrong_tokens(None).await;
}

#[tokio::test]
async fn the_right_token_works_and_a_wrong_or_missing_one_is_refused_over_tls() {
    right_and_wrong_tokens(Some(&Pki::new())).await;
}

#[tokio::test]
async fn a_refused_token_allows_no_queue_operation() {
    let s = Scenario::start(token_options(None), None, 5).await;
    let mut raw = Raw::connect(s.addr()).await;
    raw.send(1, hello("intruder")).await.unwrap();
    match raw.recv().await.map(|f| f.message) {
        Some(Message::Challenge {
            token_required: true,
            ..
        }) => {}
        other => panic!("expected a Challenge asking for a token, got {other:?}"),
    }
    // A wrong proof with queue requests right behind it, in the same write.
    let mut buf = BytesMut::new();
    for (id, message) in [
        (
            2,
            Message::Auth {
                nonce: [1; NONCE_LEN],
                proof: [2; NONCE_LEN],
            },
        ),
        (
            3,
            Message::OpenConsumer {
                queue: "tasks".into(),
            },
        ),
        (
            4,
            Message::Get {
                handle: 1,
                max: 5,
                timeout_ms: WAIT_FOREVER,
            },
        ),
    ] {
        encode(&Frame { id, message }, &mut buf);
    }
    raw.send_bytes(&buf).await.unwrap();
    raw.expect_goodbye(ErrorCode::Auth, "wrong or missing token")
        .await;
    let c = s.tasks.counts();
    assert_eq!((c.queued, c.leased), (5, 0), "nothing was taken: {c:?}");
    // An honest client still gets everything.
    let mut s = s;
    s.start_worker().await;
    s.finish(0).await;
}

/// A proxy that forwards one connection and records what the client sent.
async fn recording_proxy(upstream: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sent = Arc::new(Mutex::new(Vec::new()));
    let record = sent.clone();
    tokio::spawn(async move {
        let (client, _) = listener.accept().await.unwrap();
        let server = TcpStream::connect(upstream).await.unwrap();
        let (mut cr, mut cw) = client.into_split();
        let (mut sr, mut sw) = server.into_split();
        let up = async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n @ 1..) = cr.read(&mut buf).await {
                record.lock().unwrap().extend_from_slice(&buf[..n]);
                if sw.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            let _ = sw.shutdown().await;
        };
        let down = async move {
            let _ = tokio::io::copy(&mut sr, &mut cw).await;
            let _ = cw.shutdown().await;
        };
        tokio::join!(up, down);
    });
    (addr, sent)
}

#[tokio::test]
async fn a_captured_handshake_cannot_be_replayed() {
    let mut s = Scenario::start(token_options(None), None, 5).await;
    let (proxy, sent) = recording_proxy(s.addr()).await;
    let mut settings = s.settings("victim");
    settings.addr = proxy.to_string();
    let client = bounded("connect through the proxy", settings.connect())
        .await
        .expect("the real client authenticates through the proxy");
    client.ping().await.expect("ping");
    drop(client);

    // What an eavesdropper saw: the victim's Hello and Auth frames.
    let mut captured = BytesMut::from(&sent.lock().unwrap()[..]);
    let hello = decode(&mut captured, DEFAULT_MAX_FRAME).unwrap().unwrap();
    let auth = decode(&mut captured, DEFAULT_MAX_FRAME).unwrap().unwrap();
    assert!(matches!(hello.message, Message::Hello { .. }), "{hello:?}");
    assert!(matches!(auth.message, Message::Auth { .. }), "{auth:?}");

    // Replayed on a new connection, it answers a new challenge with an old proof.
    let mut raw = Raw::connect(s.addr()).await;
    raw.send(hello.id, hello.message.clone()).await.unwrap();
    assert!(matches!(
        raw.recv().await.map(|f| f.message),
        Some(Message::Challenge { .. })
    ));
    raw.send(auth.id, auth.message.clone()).await.unwrap();
    raw.expect_goodbye(ErrorCode::Auth, "wrong or missing token")
        .await;
    assert_eq!(s.tasks.counts().leased, 0);
    s.start_worker().await;
    s.finish(5).await;
}

/// A fake server that asks for a token and welcomes any proof with a made-up one.
async fn impostor() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut conn = hydra_queue::connection::Connection::new(stream, DEFAULT_MAX_FRAME);
        let Ok(Some(hello)) = conn.read_frame().await else {
            return;
        };
        let challenge = Message::Challenge {
            version: VERSION,
            token_required: true,
            idle_timeout_ms: 30_000,
            nonce: [9; NONCE_LEN],
        };
        let _ = conn
            .write_frame(&Frame {
                id: hello.id,
                message: challenge,
            })
            .await;
        let Ok(Some(auth)) = conn.read_frame().await else {
            return;
        };
        let welcome = Message::Welcome {
            connection_id: 1,
            proof: [0; NONCE_LEN],
        };
        let _ = conn
            .write_frame(&Frame {
                id: auth.id,
                message: welcome,
            })
            .await;
        let _ = conn.read_frame().await;
    });
    addr
}

#[tokio::test]
async fn a_client_does_not_trust_a_server_that_cannot_prove_the_token() {
    let addr = impostor().await;
    let settings = hydra_queue::ClientSettings::new(addr.to_string(), "w").with_token(TOKEN);
    let err = bounded("connect to an impostor", settings.connect())
        .await
        .expect_err("the impostor does not know the token");
    assert!(
        matches!(&err, Error::Auth(m) if m.contains("could not prove")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_client_with_a_token_does_not_trust_a_server_without_one() {
    let s = Scenario::start(short_options(), None, 0).await;
    let settings = s.settings("w").with_token(TOKEN);
    let err = bounded("connect", settings.connect()).await.unwrap_err();
    assert!(
        matches!(&err, Error::Auth(m) if m.contains("does not ask for one")),
        "{err:?}"
    );
}
