//! Server shutdown under load: clients connected and waiting (in `get`, in a `put` on a
//! full sink, in the host's `join`) each get a clear error within a bound; none hangs,
//! and `shutdown` itself returns even when a client sits behind a black hole.

use std::time::{Duration, Instant};

use futures::FutureExt;
use hydra_queue::{
    ClientSettings, Error, Result, Server, ServerOptions, SinkOptions, SourceOptions,
};
use tokio::sync::oneshot;

use super::proxy::BlackHoleProxy;

const BOUND: Duration = Duration::from_secs(10);

/// Runs `op` in a task, and signals once its request has been sent (the future was polled
/// once and is waiting for the answer).
fn waiting<T: Send + 'static>(
    op: impl std::future::Future<Output = Result<T>> + Send + 'static,
) -> (
    oneshot::Receiver<()>,
    tokio::task::JoinHandle<(Result<T>, Instant)>,
) {
    let (sent, sent_rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut op = Box::pin(op);
        if let Some(r) = (&mut op).now_or_never() {
            return (r, Instant::now());
        }
        let _ = sent.send(());
        let r = op.await;
        (r, Instant::now())
    });
    (sent_rx, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_every_waiting_client_a_clear_error() {
    let options = ServerOptions {
        // Long leases and grace: the errors must come from the shutdown, not a timeout.
        lease_timeout: Duration::from_secs(60),
        shutdown_grace: Duration::from_secs(3),
        ..ServerOptions::default()
    };
    let server = Server::bind("127.0.0.1:0", options).await.unwrap();
    let tasks = server
        .source::<u32>("tasks", SourceOptions::default())
        .unwrap();
    let results = server
        .sink::<u32>(
            "results",
            SinkOptions {
                capacity: 1,
                expected_feeds: 0,
            },
        )
        .unwrap();
    tasks.put(&1).await.unwrap();

    let mut waits = Vec::new();
    let mut clients = Vec::new();
    // Six consumers waiting in get on an empty queue (one holds the only item).
    for i in 0..6 {
        let client = server
            .client_settings(&format!("c{i}"))
            .connect()
            .await
            .unwrap();
        let consumer = client.consumer::<u32>("tasks").await.unwrap();
        if i == 0 {
            consumer.get(Some(BOUND)).await.unwrap();
        }
        let (sent, task) = waiting(async move {
            let r = consumer.get(None).await.map(|_| ());
            drop(consumer);
            r
        });
        sent.await.unwrap();
        // A round trip on the same connection: the server has the get before the ping.
        client.ping().await.unwrap();
        waits.push((format!("consumer c{i} in get"), task));
        clients.push(client);
    }
    // A feed waiting in put on a full sink.
    let client = server.client_settings("f").connect().await.unwrap();
    let feed = client.feed::<u32>("results", "f").await.unwrap();
    feed.put(&1).await.unwrap();
    let (sent, task) = waiting(async move { feed.put(&2).await });
    sent.await.unwrap();
    client.ping().await.unwrap();
    waits.push(("feed in put on a full sink".into(), task));
    clients.push(client);
    // The host waiting in the source's join (an item is leased) and the sink's join (a
    // feed is registered).
    let (sent, host_join) = waiting({
        let tasks = tasks.clone();
        async move { tasks.join(None).await.map(|_| ()) }
    });
    sent.await.unwrap();
    let (sent, sink_join) = waiting({
        let results = results.clone();
        async move { results.join(None).await.map(|_| ()) }
    });
    sent.await.unwrap();
    // A client behind a black hole: it will not hear the goodbye, and must not hold up
    // the shutdown beyond its grace period.
    let proxy = BlackHoleProxy::start(server.local_addr()).await;
    let hidden = ClientSettings::new(proxy.addr().to_string(), "hidden")
        .connect()
        .await
        .unwrap();
    proxy.cut();

    let start = Instant::now();
    tokio::time::timeout(BOUND, server.shutdown())
        .await
        .expect("shutdown must return within its grace period");
    for (what, task) in waits {
        let (r, at) = tokio::time::timeout(BOUND, task)
            .await
            .unwrap_or_else(|_| panic!("{what}: no answer within {BOUND:?} of the shutdown"))
            .unwrap();
        match r {
            Err(Error::ShuttingDown) => {}
            other => panic!("{what}: expected ShuttingDown, got {other:?}"),
        }
        assert!(at - start < BOUND, "{what} answered after {:?}", at - start);
    }
    for (what, task) in [("host join", host_join), ("sink join", sink_join)] {
        let (r, _) = tokio::time::timeout(BOUND, task)
            .await
            .unwrap_or_else(|_| panic!("{what} still waiting after the shutdown"))
            .unwrap();
        assert!(
            matches!(r, Err(Error::ShuttingDown)),
            "{what}: expected ShuttingDown, got {r:?} (source counts after shutdown: {:?}, dead: {:?})",
            tasks.counts(),
            tasks.dead_items()
        );
    }
    drop(clients);
    drop(hidden);
    drop(proxy);
}

/// A client whose server goes away without a goodbye (here: the port closed under it by
/// a dropped proxy) gets `ConnectionLost`, not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_server_gives_connection_lost() {
    let server = Server::bind("127.0.0.1:0", ServerOptions::default())
        .await
        .unwrap();
    let _tasks = server
        .source::<u32>("tasks", SourceOptions::default())
        .unwrap();
    let proxy = BlackHoleProxy::start(server.local_addr()).await;
    let client = ClientSettings::new(proxy.addr().to_string(), "w")
        .connect()
        .await
        .unwrap();
    let consumer = client.consumer::<u32>("tasks").await.unwrap();
    let (sent, task) = waiting(async move { consumer.get(None).await.map(|_| ()) });
    sent.await.unwrap();
    client.ping().await.unwrap();
    drop(proxy);
    let (r, _) = tokio::time::timeout(BOUND, task)
        .await
        .expect("a get on a vanished server must end")
        .unwrap();
    assert!(
        matches!(r, Err(Error::ConnectionLost { .. })),
        "expected ConnectionLost, got {r:?}"
    );
}
