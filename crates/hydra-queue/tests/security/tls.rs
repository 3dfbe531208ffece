//! TLS: round trips over TLS, mutual TLS accepting and refusing client certificates, server
//! name checks, and plain and TLS peers that do not match failing fast and clearly.

use std::time::{Duration, Instant};

use hydra_queue::{ClientSettings, ClientTls, Error, Pem, ServerOptions};

use crate::certs::{Ca, Pki, SERVER_NAME};
use crate::raw::{bounded, Raw};
use crate::workload::{short_options, Scenario};

/// How long a refusal may take at most: it must be fast, not a timeout.
const FAST: Duration = Duration::from_secs(5);

fn tls_options(pki: &Pki, mutual: bool) -> ServerOptions {
    ServerOptions {
        tls: Some(pki.server_tls(mutual)),
        ..short_options()
    }
}

/// Connects with `tls` and returns the error, asserting it came fast.
async fn refused(s: &Scenario, tls: Option<ClientTls>) -> Error {
    let mut settings = s.settings("intruder");
    settings.tls = tls;
    let start = Instant::now();
    let result = bounded("refused connect", async {
        let client = settings.connect().await?;
        // Under TLS 1.3 the server checks the client's certificate after the client has
        // finished its side, so a refusal may only show at the first request.
        client.consumer::<u32>("tasks").await.map(|_| ())
    })
    .await;
    let took = start.elapsed();
    let err = result.expect_err("the connection must be refused");
    assert!(took < FAST, "refusal took {took:?}: {err}");
    err
}

fn assert_tls_error(err: &Error, needle: &str) {
    match err {
        Error::Tls(m) => assert!(
            m.to_lowercase().contains(&needle.to_lowercase()),
            "tls error {m:?} should mention {needle:?}"
        ),
        other => panic!("expected Error::Tls mentioning {needle:?}, got {other:?}: {other}"),
    }
}

#[tokio::test]
async fn tls_round_trip_for_source_and_sink_queues() {
    let pki = Pki::new();
    let mut s = Scenario::start(tls_options(&pki, false), Some(pki.client_tls()), 20).await;
    s.start_worker().await;
    s.wait_done(5).await;
    let attempts = s.finish(20).await;
    assert!(attempts.iter().all(|&a| a == 1));
}

#[tokio::test]
async fn mutual_tls_accepts_a_client_certificate_from_the_trusted_ca() {
    let pki = Pki::new();
    let client = pki.client_tls_with(&pki.ca.client());
    let mut s = Scenario::start(tls_options(&pki, true), Some(client), 10).await;
    s.start_worker().await;
    s.finish(10).await;
}

#[tokio::test]
async fn mutual_tls_refuses_a_client_without_a_certificate() {
    let pki = Pki::new();
    let client = pki.client_tls_with(&pki.ca.client());
    let mut s = Scenario::start(tls_options(&pki, true), Some(client), 10).await;
    s.start_worker().await;
    let err = refused(&s, Some(pki.client_tls())).await;
    assert_tls_error(&err, "certificate");
    s.finish(10).await;
}

#[tokio::test]
async fn mutual_tls_refuses_a_client_certificate_from_another_ca() {
    let pki = Pki::new();
    let other = Ca::new("another CA");
    let good = pki.client_tls_with(&pki.ca.client());
    let mut s = Scenario::start(tls_options(&pki, true), Some(good), 10).await;
    s.start_worker().await;
    let err = refused(&s, Some(pki.client_tls_with(&other.client()))).await;
    assert_tls_error(&err, "unknown");
    s.finish(10).await;
}

#[tokio::test]
async fn mutual_tls_refuses_an_expired_client_certificate() {
    let pki = Pki::new();
    let good = pki.client_tls_with(&pki.ca.client());
    let mut s = Scenario::start(tls_options(&pki, true), Some(good), 10).await;
    s.start_worker().await;
    let err = refused(&s, Some(pki.client_tls_with(&pki.ca.expired_client()))).await;
    assert_tls_error(&err, "expired");
    s.finish(10).await;
}

#[tokio::test]
async fn a_client_refuses_a_server_certificate_for_another_name() {
    let pki = Pki::new();
    let mut s = Scenario::start(tls_options(&pki, false), Some(pki.client_tls()), 10).await;
    s.start_worker().await;
    let wrong_name = ClientTls {
        server_name: Some("elsewhere.test".into()),
        ..pki.client_tls()
    };
    let err = refused(&s, Some(wrong_name)).await;
    assert_tls_error(&err, "certificate");
    assert!(err.to_string().contains("not valid for name"), "{err}");
    // The default name is the host of the address: 127.0.0.1 is in the certificate.
    let by_addr = ClientTls {
        server_name: None,
        ..pki.client_tls()
    };
    let mut settings = s.settings("by-addr");
    settings.tls = Some(by_addr);
    bounded("connect by address", settings.connect())
        .await
        .expect("the certificate names 127.0.0.1");
    s.finish(10).await;
}

#[tokio::test]
async fn a_client_refuses_a_server_signed_by_an_untrusted_ca() {
    let pki = Pki::new();
    let mut s = Scenario::start(tls_options(&pki, false), Some(pki.client_tls()), 10).await;
    s.start_worker().await;
    let untrusting = ClientTls {
        ca: Some(Ca::new("some other root").pem()),
        ..pki.client_tls()
    };
    let err = refused(&s, Some(untrusting)).await;
    assert_tls_error(&err, "UnknownIssuer");
    s.finish(10).await;
}

#[tokio::test]
async fn a_plain_client_to_a_tls_server_fails_fast_and_says_tls() {
    let pki = Pki::new();
    let mut s = Scenario::start(tls_options(&pki, false), Some(pki.client_tls()), 10).await;
    s.start_worker().await;
    let err = refused(&s, None).await;
    assert!(
        matches!(err, Error::Protocol(_) | Error::ConnectionLost { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("TLS"), "should hint at TLS: {err}");
    s.finish(10).await;
}

#[tokio::test]
async fn a_tls_client_to_a_plain_server_fails_fast_and_says_tls() {
    let pki = Pki::new();
    let mut s = Scenario::start(short_options(), None, 10).await;
    s.start_worker().await;
    let err = refused(&s, Some(pki.client_tls())).await;
    assert_tls_error(&err, "TLS");
    s.finish(10).await;
}

#[tokio::test]
async fn a_tls_flood_past_max_connections_is_refused_fast_and_says_why() {
    let pki = Pki::new();
    let options = ServerOptions {
        max_connections: 2,
        ..tls_options(&pki, false)
    };
    let mut s = Scenario::start(options, Some(pki.client_tls()), 10).await;
    s.start_worker().await;
    let holder = bounded("holder connect", s.settings("holder").connect())
        .await
        .expect("the second place is free");
    for _ in 0..10 {
        // A TLS server refuses before any TLS is spoken: the client can only guess why.
        let err = refused(&s, Some(pki.client_tls())).await;
        assert_tls_error(&err, "connection limit");
    }
    holder.ping().await.expect("connected clients go on");
    s.finish(10).await;
}

#[tokio::test]
async fn a_silent_client_of_a_tls_server_is_dropped_at_the_handshake_timeout() {
    let pki = Pki::new();
    let mut s = Scenario::start(tls_options(&pki, false), Some(pki.client_tls()), 10).await;
    s.start_worker().await;
    let mut raw = Raw::connect(s.addr()).await;
    let start = Instant::now();
    assert!(raw.recv().await.is_none(), "the server closes the socket");
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(400), "closed after {took:?}");
    s.finish(10).await;
}

#[tokio::test]
async fn shipped_settings_with_pem_files_connect_with_mutual_tls() {
    let pki = Pki::new();
    let client = pki.ca.client();
    let dir = std::env::temp_dir().join(format!("hydra-sec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        Pem::File(path)
    };
    let tls = ClientTls {
        ca: Some(write("ca.pem", &pki.ca.pem_text())),
        cert_chain: Some(write("client.pem", &client.cert)),
        key: Some(write("client.key", &client.key)),
        server_name: Some(SERVER_NAME.into()),
    };
    let mut s = Scenario::start(tls_options(&pki, true), Some(tls), 10).await;
    // What a host ships to a worker on another machine: the settings as JSON.
    let shipped = serde_json::to_string(&s.settings("shipped")).unwrap();
    let there: ClientSettings = serde_json::from_str(&shipped).unwrap();
    let client = bounded("connect", there.connect())
        .await
        .expect("connect with files");
    client.ping().await.expect("ping");
    s.start_worker().await;
    s.finish(0).await;
    std::fs::remove_dir_all(&dir).unwrap();
}
