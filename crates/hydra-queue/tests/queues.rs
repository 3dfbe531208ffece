//! Integration tests of the source and sink queues over real loopback sockets: py-hydra's
//! own scenarios, then what Hydra adds (delivery ids, leases, end-of-stream, multiplexing).

mod support;

use std::sync::Arc;
use std::time::Duration;

use hydra_queue::{
    ClientSettings, Error, Heartbeat, QueueSettings, Server, ServerOptions, SinkOptions,
    SourceOptions,
};
use support::within;

const T100: Option<Duration> = Some(Duration::from_millis(100));
const LONG: Option<Duration> = Some(Duration::from_secs(20));

async fn server() -> Server {
    Server::bind("127.0.0.1:0", ServerOptions::default())
        .await
        .unwrap()
}

fn cap(capacity: usize) -> SourceOptions {
    SourceOptions {
        capacity,
        max_attempts: 3,
    }
}

/// py-hydra: 20 items through a queue of capacity 10, a consumer interleaving get /
/// task_started / task_done while the host is still putting; join(0.1 s) times out while
/// items are pending and succeeds once they are done; get(0.1 s) on a drained queue is
/// Empty; task_done for a task not in flight is an error.
#[tokio::test]
async fn source_py_hydra_scenario() {
    let server = server().await;
    let tasks = server.source::<u32>("tasks", cap(10)).unwrap();
    let client = server.client_settings("w").connect().await.unwrap();
    let consumer = client.consumer::<u32>("tasks").await.unwrap();

    let host = {
        let tasks = tasks.clone();
        tokio::spawn(async move {
            for i in 0..20 {
                tasks.put(&i).await.unwrap();
            }
        })
    };
    let mut held = Vec::new();
    for expected in 0..20 {
        let d = consumer.get(LONG).await.unwrap();
        assert_eq!(d.item, expected, "first come, first served in put order");
        assert_eq!(d.attempt, 1);
        consumer.task_started(d.id).await.unwrap();
        if expected < 19 {
            consumer.task_done(d.id).await.unwrap();
        } else {
            held.push(d.id);
        }
    }
    within(10, "host puts", host).await.unwrap();

    let err = tasks.join(T100).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(
        err.to_string().contains("1 of 20 items unfinished"),
        "{err}"
    );

    let err = consumer.get(T100).await.unwrap_err();
    assert!(err.is_empty(), "{err}");

    consumer.task_done(held[0]).await.unwrap();
    let report = tasks.join(T100).await.unwrap();
    assert_eq!(
        (report.total, report.done, report.failed, report.dead),
        (20, 20, 0, 0)
    );

    let err = consumer.task_done(held[0]).await.unwrap_err();
    assert!(
        matches!(err, Error::NotLeased { delivery, .. } if delivery == held[0]),
        "{err}"
    );
    let err = consumer.task_done(987_654).await.unwrap_err();
    assert!(matches!(err, Error::NotLeased { .. }), "{err}");
}

#[tokio::test]
async fn put_with_timeout_on_a_full_queue_is_full() {
    let server = server().await;
    let tasks = server.source::<u32>("tasks", cap(1)).unwrap();
    tasks.put(&1).await.unwrap();
    let err = tasks
        .put_timeout(&2, Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Full { .. }), "{err}");
    assert_eq!(tasks.counts().put, 1);
}

/// py-hydra: a feed puts 20 items through a sink of capacity 10 while the host gets them;
/// get(0.1 s) on an empty sink is Empty; join(0.1 s) times out while the feed is
/// registered and succeeds after it closes; then end-of-stream.
#[tokio::test]
async fn sink_py_hydra_scenario() {
    let server = server().await;
    let results = server
        .sink::<u32>(
            "results",
            SinkOptions {
                capacity: 10,
                expected_feeds: 0,
            },
        )
        .unwrap();
    let err = results.get(T100).await.unwrap_err();
    assert!(err.is_empty(), "{err}");

    let client = server.client_settings("f").connect().await.unwrap();
    let feed = client.feed::<u32>("results", "feed-a").await.unwrap();
    let feeder = tokio::spawn(async move {
        for i in 0..20 {
            feed.put(&i).await.unwrap();
        }
        feed
    });
    for expected in 0..20 {
        assert_eq!(results.get(LONG).await.unwrap(), expected);
    }
    let feed = within(10, "feed puts", feeder).await.unwrap();
    let err = results.join(T100).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    feed.close().await.unwrap();
    let report = results.join(T100).await.unwrap();
    assert_eq!((report.feeds, report.lost, report.received), (1, 0, 20));
    assert!(results.get(T100).await.unwrap_err().is_end_of_stream());
}

#[tokio::test]
async fn sink_backpressure_holds_the_feed_until_the_host_gets() {
    let server = server().await;
    let results = server
        .sink::<u32>(
            "results",
            SinkOptions {
                capacity: 2,
                expected_feeds: 0,
            },
        )
        .unwrap();
    let client = server.client_settings("f").connect().await.unwrap();
    let feed = client.feed::<u32>("results", "a").await.unwrap();
    feed.put(&1).await.unwrap();
    feed.put(&2).await.unwrap();
    let err = feed
        .put_timeout(&3, Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Full { .. }), "{err}");
    let third = tokio::spawn(async move {
        feed.put(&3).await.unwrap();
        feed
    });
    assert_eq!(results.get(LONG).await.unwrap(), 1);
    within(10, "the waiting put", third).await.unwrap();
    assert_eq!(results.get(LONG).await.unwrap(), 2);
    assert_eq!(
        results.get(LONG).await.unwrap(),
        3,
        "the timed-out put left nothing behind"
    );
}

#[tokio::test]
async fn duplicate_feed_name_is_a_typed_error() {
    let server = server().await;
    let _results = server
        .sink::<u32>("results", SinkOptions::default())
        .unwrap();
    let a = server.client_settings("a").connect().await.unwrap();
    let b = server.client_settings("b").connect().await.unwrap();
    let _feed = a.feed::<u32>("results", "same").await.unwrap();
    let err = b.feed::<u32>("results", "same").await.unwrap_err();
    assert!(
        matches!(&err, Error::DuplicateName { name, .. } if name == "same"),
        "{err}"
    );
}

#[tokio::test]
async fn unknown_queue_and_wrong_kind_are_typed_errors() {
    let server = server().await;
    let _tasks = server.source::<u32>("tasks", cap(0)).unwrap();
    let client = server.client_settings("a").connect().await.unwrap();
    let err = client.consumer::<u32>("nope").await.unwrap_err();
    assert!(matches!(err, Error::UnknownQueue(_)), "{err}");
    let err = client.feed::<u32>("tasks", "f").await.unwrap_err();
    assert!(matches!(err, Error::UnknownQueue(_)), "{err}");
    assert!(matches!(
        server.sink::<u32>("tasks", SinkOptions::default()),
        Err(Error::QueueExists(_))
    ));
}

#[tokio::test]
async fn equal_payloads_are_two_tasks_with_distinct_ids() {
    let server = server().await;
    let tasks = server.source::<String>("tasks", cap(0)).unwrap();
    tasks.put(&"same".to_string()).await.unwrap();
    tasks.put(&"same".to_string()).await.unwrap();
    let client = server.client_settings("a").connect().await.unwrap();
    let consumer = client.consumer::<String>("tasks").await.unwrap();
    let a = consumer.get(LONG).await.unwrap();
    let b = consumer.get(LONG).await.unwrap();
    assert_ne!(a.id, b.id);
    consumer.task_done(b.id).await.unwrap();
    consumer.task_done(a.id).await.unwrap();
    assert_eq!(tasks.join(T100).await.unwrap().done, 2);
}

#[tokio::test]
async fn failed_tasks_count_as_finished_and_are_reported() {
    let server = server().await;
    let tasks = server.source::<u32>("tasks", cap(0)).unwrap();
    tasks.put(&1).await.unwrap();
    tasks.put(&2).await.unwrap();
    let client = server.client_settings("w1").connect().await.unwrap();
    let consumer = client.consumer::<u32>("tasks").await.unwrap();
    let a = consumer.get(LONG).await.unwrap();
    consumer.task_failed(a.id, "exit status 1").await.unwrap();
    let b = consumer.get(LONG).await.unwrap();
    consumer.task_done(b.id).await.unwrap();
    let report = tasks.join(T100).await.unwrap();
    assert_eq!((report.done, report.failed), (1, 1));
    let failed = tasks.failed_items();
    assert_eq!(failed[0].reason, "exit status 1");
    assert_eq!(failed[0].consumer, "w1");
    let err = consumer.task_failed(a.id, "again").await.unwrap_err();
    assert!(matches!(err, Error::NotLeased { .. }), "{err}");
}

/// A closed queue: consumers drain it, then see end-of-stream; but not while another
/// consumer holds an item that may come back, and that item does come back.
#[tokio::test]
async fn end_of_stream_waits_for_leases_that_may_come_back() {
    let server = server().await;
    let tasks = server.source::<u32>("tasks", cap(0)).unwrap();
    tasks.put(&7).await.unwrap();
    tasks.close();
    let holder_client = server.client_settings("holder").connect().await.unwrap();
    let holder = holder_client.consumer::<u32>("tasks").await.unwrap();
    let held = holder.get(LONG).await.unwrap();

    let other_client = server.client_settings("other").connect().await.unwrap();
    let other = other_client.consumer::<u32>("tasks").await.unwrap();
    let err = other.get(T100).await.unwrap_err();
    assert!(
        err.is_empty(),
        "must not be end-of-stream while 7 is leased: {err}"
    );
    let waiting = tokio::spawn(async move {
        let d = other.get(LONG).await.unwrap();
        other.task_done(d.id).await.unwrap();
        let end = other.get(LONG).await.unwrap_err();
        (d, end)
    });
    drop(holder);
    drop(holder_client); // the connection closes: the lease is lost
    let (d, end) = within(10, "redelivery", waiting).await.unwrap();
    assert_eq!((d.item, d.attempt), (7, 2));
    assert_ne!(d.id, held.id);
    assert!(end.is_end_of_stream(), "{end}");
    let report = tasks.join(LONG).await.unwrap();
    assert_eq!((report.done, report.redelivered), (1, 1));
}

/// A blocked `get` does not stall other requests on the same connection.
#[tokio::test]
async fn a_waiting_get_does_not_block_the_connection() {
    let server = server().await;
    let _tasks = server.source::<u32>("tasks", cap(0)).unwrap();
    let results = server
        .sink::<u32>("results", SinkOptions::default())
        .unwrap();
    let client = server.client_settings("a").connect().await.unwrap();
    let consumer = client.consumer::<u32>("tasks").await.unwrap();
    let feed = client.feed::<u32>("results", "a").await.unwrap();
    let blocked = tokio::spawn(async move { consumer.get(None).await });
    for i in 0..100 {
        within(5, "put beside a waiting get", feed.put(&i))
            .await
            .unwrap();
    }
    within(5, "ping", client.ping()).await.unwrap();
    assert_eq!(results.counts().received, 100);
    assert!(!blocked.is_finished());
    blocked.abort();
}

/// A connection may leave only `max_pending` requests waiting; one more is refused with a
/// Limit error, and the connection goes on.
#[tokio::test]
async fn waiting_requests_per_connection_are_limited() {
    let server = Server::bind(
        "127.0.0.1:0",
        ServerOptions {
            max_pending: 2,
            ..ServerOptions::default()
        },
    )
    .await
    .unwrap();
    let tasks = server.source::<u32>("tasks", cap(0)).unwrap();
    let client = server.client_settings("a").connect().await.unwrap();
    let consumer = Arc::new(client.consumer::<u32>("tasks").await.unwrap());
    let mut waiting = Vec::new();
    for _ in 0..2 {
        let c = consumer.clone();
        waiting.push(tokio::spawn(async move { c.get(None).await }));
    }
    // While this round trip is under way the spawned gets are queued on the connection,
    // so they reach the server before the next get (a connection's requests are handled
    // in order).
    within(5, "ping", client.ping()).await.unwrap();
    let err = consumer.get(LONG).await.unwrap_err();
    assert!(matches!(err, Error::Limit(_)), "{err}");
    tasks.put(&1).await.unwrap();
    tasks.put(&2).await.unwrap();
    for w in waiting {
        within(5, "waiting get", w).await.unwrap().unwrap();
    }
    // Answered waits leave the count: a new wait is accepted again.
    tasks.put(&3).await.unwrap();
    assert_eq!(consumer.get(LONG).await.unwrap().item, 3);
}

#[tokio::test]
async fn done_and_get_finishes_and_fetches_in_one_call() {
    let server = server().await;
    let tasks = server.source::<u32>("tasks", cap(0)).unwrap();
    for i in 0..3 {
        tasks.put(&i).await.unwrap();
    }
    tasks.close();
    let client = server.client_settings("a").connect().await.unwrap();
    let consumer = client.consumer::<u32>("tasks").await.unwrap();
    let mut d = consumer.get(LONG).await.unwrap();
    let mut seen = vec![d.item];
    loop {
        match consumer.done_and_get(d.id, LONG).await {
            Ok(next) => {
                seen.push(next.item);
                d = next;
            }
            Err(e) => {
                assert!(e.is_end_of_stream(), "{e}");
                break;
            }
        }
    }
    assert_eq!(seen, [0, 1, 2]);
    assert_eq!(tasks.join(T100).await.unwrap().done, 3);
}

/// A refused done in `done_and_get` loses nothing: the delivery fetched beside it comes
/// with the next `get`.
#[tokio::test]
async fn done_and_get_with_a_refused_done_keeps_the_fetched_delivery() {
    let server = server().await;
    let tasks = server.source::<u32>("tasks", cap(0)).unwrap();
    tasks.put(&1).await.unwrap();
    tasks.put(&2).await.unwrap();
    let client = server.client_settings("a").connect().await.unwrap();
    let consumer = client.consumer::<u32>("tasks").await.unwrap();
    let first = consumer.get(LONG).await.unwrap();
    consumer.task_done(first.id).await.unwrap();
    let err = consumer.done_and_get(first.id, LONG).await.unwrap_err();
    assert!(matches!(err, Error::NotLeased { .. }), "{err}");
    let second = consumer.get(T100).await.unwrap();
    assert_eq!(second.item, 2);
    consumer.task_done(second.id).await.unwrap();
    assert_eq!(tasks.join(T100).await.unwrap().done, 2);
}

#[tokio::test]
async fn prefetch_window_and_batched_acks() {
    let server = server().await;
    let tasks = server.source::<u32>("tasks", cap(0)).unwrap();
    for i in 0..10 {
        tasks.put(&i).await.unwrap();
    }
    let client = server.client_settings("a").connect().await.unwrap();
    let consumer = client.consumer::<u32>("tasks").await.unwrap();
    let batch = consumer.get_many(4, LONG).await.unwrap();
    assert_eq!(
        batch.iter().map(|d| d.item).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    assert_eq!(tasks.counts().leased, 4);
    let ids: Vec<u64> = batch.iter().map(|d| d.id).collect();
    consumer.task_done_many(&ids).await.unwrap();
    let err = consumer.task_done_many(&ids).await.unwrap_err();
    assert!(matches!(err, Error::NotLeased { .. }), "{err}");
    assert_eq!(tasks.counts().done, 4);
}

/// A consumer that stops heartbeating loses its lease; the item goes to another consumer,
/// and the silent one's late `task_done` is refused.
#[tokio::test]
async fn a_silent_consumer_loses_its_lease() {
    let server = Server::bind(
        "127.0.0.1:0",
        ServerOptions {
            lease_timeout: Duration::from_millis(300),
            ..ServerOptions::default()
        },
    )
    .await
    .unwrap();
    let tasks = server.source::<u32>("tasks", cap(0)).unwrap();
    tasks.put(&1).await.unwrap();
    let silent = server
        .client_settings("silent")
        .with_heartbeat(Heartbeat::Off)
        .connect()
        .await
        .unwrap();
    let silent_consumer = silent.consumer::<u32>("tasks").await.unwrap();
    let first = silent_consumer.get(LONG).await.unwrap();

    let healthy = server.client_settings("healthy").connect().await.unwrap();
    let consumer = healthy.consumer::<u32>("tasks").await.unwrap();
    // Waits past the lease timeout: the heartbeats of this client keep it alive.
    let second = within(10, "redelivery", consumer.get(None)).await.unwrap();
    assert_eq!((second.item, second.attempt), (1, 2));
    consumer.task_done(second.id).await.unwrap();

    let late = silent_consumer.task_done(first.id).await.unwrap_err();
    assert!(late.is_connection_lost(), "{late}");
    let report = tasks.join(T100).await.unwrap();
    assert_eq!((report.done, report.redelivered), (1, 1));
}

#[tokio::test]
async fn an_item_dies_after_max_attempts_and_join_reports_it() {
    let server = server().await;
    let tasks = server
        .source::<u32>(
            "tasks",
            SourceOptions {
                capacity: 0,
                max_attempts: 2,
            },
        )
        .unwrap();
    tasks.put(&1).await.unwrap();
    for attempt in 1..=2 {
        let client = server
            .client_settings(&format!("w{attempt}"))
            .connect()
            .await
            .unwrap();
        let consumer = client.consumer::<u32>("tasks").await.unwrap();
        assert_eq!(consumer.get(LONG).await.unwrap().attempt, attempt);
        // Dropping the client closes the connection: the lease is lost.
    }
    let report = within(10, "join", tasks.join(None)).await.unwrap();
    assert_eq!((report.total, report.done, report.dead), (1, 0, 1));
    let dead = tasks.dead_items();
    assert_eq!(dead[0].attempts, 2);
    assert!(dead[0].reason.contains("w2"), "{}", dead[0].reason);
}

/// 50 consumers on separate connections drain 10,000 items: every item done exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_consumers_drain_ten_thousand_items_exactly_once() {
    const ITEMS: u32 = 10_000;
    let server = server().await;
    let tasks = server.source::<u32>("tasks", cap(500)).unwrap();
    let mut workers = Vec::new();
    for w in 0..50 {
        let settings = server.client_settings(&format!("w{w}"));
        workers.push(tokio::spawn(async move {
            let client = settings.connect().await.unwrap();
            let consumer = client.consumer::<u32>("tasks").await.unwrap();
            let mut done = Vec::new();
            loop {
                match consumer.get(None).await {
                    Ok(d) => {
                        consumer.task_started(d.id).await.unwrap();
                        consumer.task_done(d.id).await.unwrap();
                        done.push(d.item);
                    }
                    Err(e) if e.is_end_of_stream() => return done,
                    Err(e) => panic!("worker {w}: {e}"),
                }
            }
        }));
    }
    for i in 0..ITEMS {
        tasks.put(&i).await.unwrap();
    }
    tasks.close();
    let report = within(60, "join", tasks.join(None)).await.unwrap();
    assert_eq!((report.done, report.redelivered), (u64::from(ITEMS), 0));
    let mut seen = vec![0u8; ITEMS as usize];
    let mut busy = 0;
    for w in workers {
        let done = within(30, "worker end", w).await.unwrap();
        busy += usize::from(!done.is_empty());
        for i in done {
            seen[i as usize] += 1;
        }
    }
    let missing = seen.iter().filter(|&&n| n == 0).count();
    let twice = seen.iter().filter(|&&n| n > 1).count();
    assert_eq!((missing, twice), (0, 0), "every item exactly once");
    assert!(busy > 1, "work was shared between consumers");
}

/// Garbage from a raw socket closes that connection only; a normal client keeps working
/// and no item is lost.
#[tokio::test]
async fn bad_frames_from_a_raw_socket_do_not_disturb_others() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = server().await;
    let tasks = server.source::<u32>("tasks", cap(0)).unwrap();
    for i in 0..20 {
        tasks.put(&i).await.unwrap();
    }
    tasks.close();
    let client = server.client_settings("good").connect().await.unwrap();
    let consumer = client.consumer::<u32>("tasks").await.unwrap();
    let garbage: Vec<&[u8]> = vec![
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        &[0xff, 0xff, 0xff, 0xff, 1, 2, 3],
        &[0, 0, 0, 9, 0x7f, 0, 0, 0, 1, 0, 0, 0, 0],
        &[0, 0, 0, 50, 0x01, 0, 0],
    ];
    for (i, bytes) in garbage.iter().enumerate() {
        let mut raw = tokio::net::TcpStream::connect(server.local_addr())
            .await
            .unwrap();
        raw.write_all(bytes).await.unwrap();
        if i == 3 {
            // A frame cut mid-way, then the writer goes away.
            raw.shutdown().await.unwrap();
        }
        let mut sink = Vec::new();
        // The server answers with a Goodbye (or nothing) and closes: read to the end.
        within(
            5,
            "server closing a bad connection",
            raw.read_to_end(&mut sink),
        )
        .await
        .unwrap();
        let d = consumer.get(LONG).await.unwrap();
        consumer.task_done(d.id).await.unwrap();
    }
    while let Ok(d) = consumer.get(LONG).await {
        consumer.task_done(d.id).await.unwrap();
    }
    assert_eq!(tasks.join(T100).await.unwrap().done, 20);
}

#[tokio::test]
async fn shutdown_tells_waiting_clients_and_ends_host_waits() {
    let server = server().await;
    let tasks = server.source::<u32>("tasks", cap(0)).unwrap();
    tasks.put(&1).await.unwrap();
    let client = server.client_settings("a").connect().await.unwrap();
    let consumer = client.consumer::<u32>("tasks").await.unwrap();
    let _held = consumer.get(LONG).await.unwrap();
    let waiting = tokio::spawn(async move { consumer.get(None).await });
    let join = {
        let tasks = tasks.clone();
        tokio::spawn(async move { tasks.join(None).await })
    };
    within(10, "shutdown", server.shutdown()).await;
    let err = within(10, "waiting get", waiting)
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, Error::ShuttingDown), "{err}");
    let err = within(10, "host join", join).await.unwrap().unwrap_err();
    assert!(matches!(err, Error::ShuttingDown), "{err}");
    let err = tasks.put(&2).await.unwrap_err();
    assert!(
        matches!(err, Error::ShuttingDown),
        "a put after shutdown: {err}"
    );
}

/// Settings shipped as JSON connect elsewhere with a unique name.
#[tokio::test]
async fn shipped_settings_connect_with_unique_names() {
    let server = server().await;
    let results = server
        .sink::<String>("results", SinkOptions::default())
        .unwrap();
    let settings = QueueSettings {
        client: server.client_settings("feed"),
        queue: "results".into(),
    };
    let json = serde_json::to_string(&settings).unwrap();
    let there: QueueSettings = serde_json::from_str(&json).unwrap();
    let a = there.feed::<String>().await.unwrap();
    let b = there.feed::<String>().await.unwrap();
    a.put(&"x".into()).await.unwrap();
    b.put(&"y".into()).await.unwrap();
    assert_eq!(results.counts().feeds, 2);
}

#[tokio::test]
async fn connecting_to_a_closed_port_is_a_clear_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let err = ClientSettings::new(addr.clone(), "a")
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err}");
    assert!(err.to_string().contains(&addr), "{err}");
}

/// The blocking API drives the same code from plain threads.
#[test]
fn blocking_api_round_trip() {
    use hydra_queue::blocking;
    let server = blocking::Server::bind("127.0.0.1:0", ServerOptions::default()).unwrap();
    let tasks = server.source::<u32>("tasks", cap(10)).unwrap();
    let results = server
        .sink::<u32>("results", SinkOptions::default())
        .unwrap();
    let settings = server.client_settings("w");
    let worker = std::thread::spawn(move || {
        let client = blocking::Client::connect(&settings).unwrap();
        let consumer = client.consumer::<u32>("tasks").unwrap();
        let feed = client.feed::<u32>("results", "w").unwrap();
        loop {
            match consumer.get(LONG) {
                Ok(d) => {
                    consumer.task_started(d.id).unwrap();
                    feed.put(&(d.item * 2)).unwrap();
                    consumer.task_done(d.id).unwrap();
                }
                Err(e) if e.is_end_of_stream() => break,
                Err(e) => panic!("{e}"),
            }
        }
        feed.close().unwrap();
    });
    for i in 0..30 {
        tasks.put(&i).unwrap();
    }
    tasks.close();
    assert_eq!(tasks.join(LONG).unwrap().done, 30);
    results.join(LONG).unwrap();
    let mut got = Vec::new();
    loop {
        match results.get(LONG) {
            Ok(v) => got.push(v),
            Err(e) if e.is_end_of_stream() => break,
            Err(e) => panic!("{e}"),
        }
    }
    worker.join().unwrap();
    assert_eq!(got, (0..30).map(|i| i * 2).collect::<Vec<_>>());
    server.shutdown();
}

/// Retrying on another consumer: an item put with `avoid` goes to a consumer of another
/// name while one is connected.
#[tokio::test]
async fn put_avoiding_prefers_another_consumer() {
    let server = server().await;
    let tasks = server.source::<u32>("tasks", cap(0)).unwrap();
    let a = server.client_settings("a").connect().await.unwrap();
    let b = server.client_settings("b").connect().await.unwrap();
    let ca = Arc::new(a.consumer::<u32>("tasks").await.unwrap());
    let cb = b.consumer::<u32>("tasks").await.unwrap();
    tasks.put_avoiding(&1, "a").await.unwrap();
    let err = ca.get(T100).await.unwrap_err();
    assert!(err.is_empty(), "{err}");
    let d = cb.get(LONG).await.unwrap();
    assert_eq!(d.item, 1);
    cb.task_done(d.id).await.unwrap();
    // Alone, the avoided consumer does get such an item.
    drop(cb);
    drop(b);
    tasks.put_avoiding(&2, "a").await.unwrap();
    let d = within(10, "avoided consumer alone", ca.get(None))
        .await
        .unwrap();
    assert_eq!(d.item, 2);
}

fn settings(server: &Server, queue: &str) -> QueueSettings {
    QueueSettings {
        client: server.client_settings("proc"),
        queue: queue.into(),
    }
}

/// A consumer process killed (SIGKILL) mid-task: its item goes to another consumer and
/// `join` completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_process_killed_mid_task_loses_its_item_to_another() {
    use nix::sys::signal::Signal;
    let server = server().await;
    let tasks = server.source::<u64>("tasks", cap(0)).unwrap();
    tasks.put(&42).await.unwrap();
    tasks.put(&43).await.unwrap();
    tasks.close();
    let s = settings(&server, "tasks");
    let holder = support::ChildGuard::spawn("source_consumer", &s, &["--hold"]);
    let line = tokio::task::block_in_place(|| holder.expect_line("HELD", Duration::from_secs(30)));
    assert!(line.ends_with(" 42"), "{line}");
    holder.signal(Signal::SIGKILL);
    let mut rescuer = support::ChildGuard::spawn("source_consumer", &s, &[]);
    let report = within(30, "join", tasks.join(None)).await.unwrap();
    assert_eq!((report.done, report.redelivered, report.dead), (2, 1, 0));
    let lines = tokio::task::block_in_place(|| rescuer.drain(Duration::from_secs(30)));
    assert!(lines.contains(&"DONE 42".to_string()), "{lines:?}");
    assert!(tokio::task::block_in_place(
        || rescuer.wait(Duration::from_secs(10))
    ));
}

/// A frozen consumer process (SIGSTOP) stops heartbeating and loses its lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_consumer_process_loses_its_lease() {
    use nix::sys::signal::Signal;
    let server = Server::bind(
        "127.0.0.1:0",
        ServerOptions {
            lease_timeout: Duration::from_millis(500),
            ..ServerOptions::default()
        },
    )
    .await
    .unwrap();
    let tasks = server.source::<u64>("tasks", cap(0)).unwrap();
    tasks.put(&7).await.unwrap();
    tasks.close();
    let s = settings(&server, "tasks");
    let holder = support::ChildGuard::spawn("source_consumer", &s, &["--hold"]);
    tokio::task::block_in_place(|| holder.expect_line("HELD", Duration::from_secs(30)));
    holder.signal(Signal::SIGSTOP);
    let mut rescuer = support::ChildGuard::spawn("source_consumer", &s, &[]);
    let report = within(30, "join", tasks.join(None)).await.unwrap();
    assert_eq!((report.done, report.redelivered), (1, 1));
    assert!(tokio::task::block_in_place(
        || rescuer.wait(Duration::from_secs(10))
    ));
    // Thawed, the old holder finds its connection gone: it cannot finish the item.
    holder.signal(Signal::SIGCONT);
    assert_eq!(tasks.counts().done, 1);
}

/// A feed process killed without unregistering does not make `join` hang, and every put it
/// saw acknowledged arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_feed_process_does_not_hang_join() {
    use nix::sys::signal::Signal;
    let server = server().await;
    let results = server
        .sink::<(String, u64)>(
            "results",
            SinkOptions {
                capacity: 0,
                expected_feeds: 2,
            },
        )
        .unwrap();
    let s = settings(&server, "results");
    let mut good = support::ChildGuard::spawn("sink_feed", &s, &["50"]);
    let doomed = support::ChildGuard::spawn("sink_feed", &s, &["30", "--hang"]);
    tokio::task::block_in_place(|| doomed.expect_line("HANGING", Duration::from_secs(30)));
    doomed.signal(Signal::SIGKILL);
    let report = within(30, "join", results.join(None)).await.unwrap();
    assert_eq!((report.feeds, report.lost, report.received), (2, 1, 80));
    assert!(tokio::task::block_in_place(
        || good.wait(Duration::from_secs(10))
    ));
    let mut count = 0;
    while results.get(T100).await.is_ok() {
        count += 1;
    }
    assert_eq!(count, 80);
    assert_eq!(results.lost_feeds().len(), 1);
}
