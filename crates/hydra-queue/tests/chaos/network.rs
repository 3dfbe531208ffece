//! Network cut: a worker whose traffic runs through a [`BlackHoleProxy`] loses its link
//! mid-task. Its lease expires, the task completes on another consumer, and the worker's
//! late result is refused, whichever way it travels.

use std::time::{Duration, Instant};

use hydra_queue::{
    ClientSettings, Consumer, Delivery, Error, Heartbeat, Server, ServerOptions, SourceOptions,
    SourceQueue,
};

use super::proxy::BlackHoleProxy;

const LEASE: Duration = Duration::from_secs(1);
const BOUND: Option<Duration> = Some(Duration::from_secs(15));

/// A server with a short lease timeout, one "job" queued on "tasks", and a black-hole
/// proxy in front of it.
async fn one_job_behind_a_proxy() -> (Server, SourceQueue<String>, BlackHoleProxy) {
    let options = ServerOptions {
        lease_timeout: LEASE,
        ..ServerOptions::default()
    };
    let server = Server::bind("127.0.0.1:0", options).await.unwrap();
    let tasks = server
        .source::<String>("tasks", SourceOptions::default())
        .unwrap();
    tasks.put(&"job".to_string()).await.unwrap();
    let proxy = BlackHoleProxy::start(server.local_addr()).await;
    (server, tasks, proxy)
}

/// A consumer of "tasks", connected with `settings`.
async fn consumer(settings: &ClientSettings) -> Consumer<String> {
    let client = settings.connect().await.unwrap();
    client.consumer::<String>("tasks").await.unwrap()
}

/// A consumer on a working link gets the job back after the lease expired, and finishes it.
async fn finish_elsewhere(server: &Server) -> Delivery<String> {
    let other = consumer(&server.client_settings("other")).await;
    let second = other.get(BOUND).await.expect("the item must come back");
    other.task_done(second.id).await.unwrap();
    second
}

/// The worker sends no heartbeats of its own (so its client does not give up first): its
/// late `task_done` sits in the black hole and reaches the server's side only after the
/// server dropped the connection for silence. The worker gets the server's goodbye as
/// `ConnectionLost`, and on a new connection the old delivery id is `NotLeased`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_cut_the_late_result_is_refused() {
    let (server, tasks, proxy) = one_job_behind_a_proxy().await;
    let via_proxy = ClientSettings::new(proxy.addr().to_string(), "cut-worker");
    let worker = consumer(&via_proxy.clone().with_heartbeat(Heartbeat::Off)).await;
    let first = worker.get(BOUND).await.unwrap();
    worker.task_started(first.id).await.unwrap();
    assert_eq!(first.attempt, 1);

    proxy.cut();
    // The lease expires: the item comes back, to a consumer on a working link.
    let second = finish_elsewhere(&server).await;
    assert_eq!((second.item.as_str(), second.attempt), ("job", 2));
    assert_ne!(second.id, first.id);
    assert_eq!(tasks.join(BOUND).await.unwrap().done, 1);

    // The worker finishes late, into the black hole; then the link comes back.
    let late = tokio::spawn(async move {
        let r = worker.task_done(first.id).await;
        (r, worker)
    });
    proxy.restore();
    let (late, _worker) = tokio::time::timeout(BOUND.unwrap(), late)
        .await
        .expect("the late task_done must get an answer once the link is back")
        .unwrap();
    match late {
        Err(Error::ConnectionLost { reason, .. }) => assert!(
            reason.contains("lease timeout"),
            "the server said why it dropped the worker: {reason}"
        ),
        other => panic!("the late result must be refused with ConnectionLost, got {other:?}"),
    }

    // A new connection cannot finish the old delivery either.
    let again = consumer(&via_proxy).await;
    match again.task_done(first.id).await {
        Err(Error::NotLeased { delivery, .. }) => assert_eq!(delivery, first.id),
        other => panic!("an old delivery id must be NotLeased, got {other:?}"),
    }
    let c = tasks.counts();
    assert_eq!((c.done, c.failed, c.dead, c.redelivered), (1, 0, 0, 1));
}

/// With its heartbeats on (the default), a worker behind a black hole notices on its own:
/// a `task_done` sent into the cut fails with `ConnectionLost` within about a lease
/// timeout, not never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_cut_the_client_notices_within_a_lease_timeout() {
    let (server, tasks, proxy) = one_job_behind_a_proxy().await;
    let worker = consumer(&ClientSettings::new(proxy.addr().to_string(), "cut-worker")).await;
    let first = worker.get(BOUND).await.unwrap();

    proxy.cut();
    let sent = Instant::now();
    let late = tokio::time::timeout(BOUND.unwrap(), worker.task_done(first.id))
        .await
        .expect("a task_done into a black hole must not hang");
    let waited = sent.elapsed();
    assert!(
        matches!(late, Err(Error::ConnectionLost { .. })),
        "expected ConnectionLost, got {late:?}"
    );
    assert!(
        waited < LEASE * 5,
        "the client noticed only after {waited:?}"
    );

    assert_eq!(finish_elsewhere(&server).await.attempt, 2);
    proxy.restore();
    let report = tasks.join(BOUND).await.unwrap();
    assert_eq!((report.done, report.redelivered), (1, 1));
}

/// The answer to a `task_done` is lost on the way back (the server applied it, then the
/// client heard nothing for a lease timeout and gave up): the client reports
/// `ConnectionLost`, and the finish counted all the same. This is the documented unknown
/// outcome of a request in flight when a connection breaks: the item is completed by that
/// finish or delivered again, never both and never neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_leaves_an_unknown_outcome_that_counted() {
    let (server, tasks, proxy) = one_job_behind_a_proxy().await;
    tasks.close();
    let worker = consumer(&ClientSettings::new(proxy.addr().to_string(), "worker")).await;
    let d = worker.get(BOUND).await.unwrap();

    proxy.cut_answers();
    let answer = tokio::time::timeout(BOUND.unwrap(), worker.task_done(d.id))
        .await
        .expect("a task_done whose answer is lost must not hang");
    assert!(
        matches!(answer, Err(Error::ConnectionLost { .. })),
        "expected ConnectionLost, got {answer:?}"
    );
    let report = tasks.join(BOUND).await.unwrap();
    assert_eq!(
        (report.done, report.redelivered),
        (1, 0),
        "the finish counted"
    );
    let other = consumer(&server.client_settings("other")).await;
    assert!(
        other.get(BOUND).await.unwrap_err().is_end_of_stream(),
        "the item is not delivered again"
    );
}
