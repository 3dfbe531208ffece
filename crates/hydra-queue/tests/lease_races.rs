//! Deterministic tests of every lease race: first on the queue state itself
//! ([`SourceState`], driven call by call in each possible order), then through the real
//! server over loopback with tokio's clock paused, so that lease timeouts pass in virtual
//! time, in order, without sleeping.

use std::time::Duration;

use bytes::Bytes;
use hydra_queue::protocol::WireDelivery;
use hydra_queue::source::{GetResult, Handoff, SourceState, Wake};
use hydra_queue::{ClientSettings, Error, Heartbeat, Server, ServerOptions, SourceOptions};

type Queue = SourceState<&'static str>;

/// Consumers 1 ("a"), 2 ("b") and 3 ("c") on a queue of `max_attempts`, with `items` put.
fn queue(max_attempts: u32, items: &[&'static str]) -> Queue {
    let mut q = SourceState::new(SourceOptions {
        capacity: 0,
        max_attempts,
    });
    for (id, name) in [(1, "a"), (2, "b"), (3, "c")] {
        q.add_consumer(id, name);
    }
    for item in items {
        q.put(Bytes::from_static(item.as_bytes())).unwrap();
    }
    q
}

fn take(q: &mut Queue, consumer: u64, max: usize) -> Vec<WireDelivery> {
    match q.get(consumer, max, usize::MAX) {
        GetResult::Items(items) => items,
        other => panic!("consumer {consumer} expected items, got {other:?}"),
    }
}

fn handed(wakes: &[Wake<&'static str>], waiter: &str) -> Option<Handoff> {
    wakes
        .iter()
        .find(|w| w.waiter == waiter)
        .map(|w| w.handoff.clone())
}

fn payloads(items: &[WireDelivery]) -> Vec<&[u8]> {
    items.iter().map(|d| d.payload.as_ref()).collect()
}

// ---- The queue state, call by call -------------------------------------------------

/// Lease expiry and task_done at the same instant, done first: the completion stands and
/// the expiry finds nothing to requeue.
#[test]
fn done_then_expiry_at_the_same_instant_keeps_the_completion() {
    let mut q = queue(3, &["x"]);
    let d = take(&mut q, 1, 1).remove(0);
    q.wait(2, 1, usize::MAX, "b");
    let (refused, _) = q.done(1, &[d.id]);
    assert!(refused.is_empty());
    let wakes = q.remove_consumer(1, "lease timeout");
    assert!(handed(&wakes, "b").is_none(), "nothing to hand out");
    let c = q.counts();
    assert_eq!((c.done, c.queued, c.leased, c.redelivered), (1, 0, 0, 0));
    assert_eq!(c.finished(), c.put);
}

/// The same instant, expiry first: the late done is refused and changes nothing; the
/// item is back at the front with its attempt raised, and its new holder finishes it.
#[test]
fn expiry_then_done_at_the_same_instant_refuses_the_done() {
    let mut q = queue(3, &["x", "y"]);
    let d = take(&mut q, 1, 1).remove(0);
    q.remove_consumer(1, "lease timeout");
    let (refused, wakes) = q.done(1, &[d.id]);
    assert_eq!(refused, vec![d.id]);
    assert!(wakes.is_empty());
    assert_eq!(q.counts().done, 0);
    let again = take(&mut q, 2, 1).remove(0);
    assert_eq!((again.payload.as_ref(), again.attempt), (&b"x"[..], 2));
    assert!(q.done(2, &[again.id]).0.is_empty());
    assert_eq!(q.counts().done, 1);
}

/// A late done after the requeue, in every later state of the item: queued again,
/// leased to another consumer, leased to the same client reconnected (a new consumer
/// id), and finished by the new holder. Each time it is refused and changes nothing.
#[test]
fn done_after_requeue_is_refused_whatever_happened_since() {
    let mut q = queue(5, &["x"]);
    let old = take(&mut q, 1, 1).remove(0);
    q.remove_consumer(1, "lease timeout");
    assert_eq!(q.done(1, &[old.id]).0, vec![old.id], "while queued");

    // The same client reconnects: a new consumer id, the same name.
    q.add_consumer(4, "a");
    assert_eq!(
        q.done(4, &[old.id]).0,
        vec![old.id],
        "from the reconnected client"
    );
    let mid = take(&mut q, 2, 1).remove(0);
    assert_eq!(
        q.done(1, &[old.id]).0,
        vec![old.id],
        "while leased elsewhere"
    );
    assert_eq!(
        q.done(2, &[old.id]).0,
        vec![old.id],
        "old id from the new holder"
    );
    assert_eq!(q.started(1, old.id), Err(old.id));
    assert!(q.failed(1, old.id, "late").is_err());
    assert_eq!(q.counts().leased, 1, "the new lease is untouched");

    assert!(q.done(2, &[mid.id]).0.is_empty());
    assert_eq!(q.done(1, &[old.id]).0, vec![old.id], "after completion");
    assert_eq!(
        q.done(2, &[mid.id]).0,
        vec![mid.id],
        "a second finish is refused"
    );
    let c = q.counts();
    assert_eq!((c.done, c.failed, c.leased, c.queued), (1, 0, 0, 0));
}

/// One request naming the same delivery twice completes it once.
#[test]
fn a_batch_naming_a_delivery_twice_completes_it_once() {
    let mut q = queue(3, &["x"]);
    let d = take(&mut q, 1, 1).remove(0);
    let (refused, _) = q.done(1, &[d.id, d.id]);
    assert_eq!(refused, vec![d.id]);
    assert_eq!(q.counts().done, 1);
}

/// The last leased item comes back after `close()`: consumers waiting for
/// end-of-stream get the item, not end-of-stream; end-of-stream comes once it is done.
#[test]
fn requeue_of_the_last_leased_item_after_close_goes_to_a_waiter() {
    let mut q = queue(3, &["x"]);
    let d = take(&mut q, 1, 1).remove(0);
    assert!(q.close().is_empty(), "a leased item may still come back");
    assert_eq!(q.get(2, 1, usize::MAX), GetResult::Wait);
    q.wait(2, 1, usize::MAX, "b");
    assert_eq!(q.get(3, 1, usize::MAX), GetResult::Wait);
    q.wait(3, 1, usize::MAX, "c");

    let wakes = q.remove_consumer(1, "lease timeout");
    assert_eq!(wakes.len(), 1, "one item, one waiter served: {wakes:?}");
    let Some(Handoff::Items(got)) = handed(&wakes, "b") else {
        panic!("the first waiter must get the item, got {wakes:?}")
    };
    assert_eq!((got[0].payload.clone(), got[0].attempt), (d.payload, 2));
    assert!(!q.is_end_of_stream());

    let (_, wakes) = q.done(2, &[got[0].id]);
    assert_eq!(handed(&wakes, "c"), Some(Handoff::EndOfStream));
    assert_eq!(q.get(2, 1, usize::MAX), GetResult::EndOfStream);
}

/// The same after `close()`, when the requeue is the item's last allowed attempt: it dies,
/// and waiters get end-of-stream at once (nothing can come back).
#[test]
fn requeue_after_close_at_max_attempts_ends_the_stream() {
    let mut q = queue(2, &["x"]);
    take(&mut q, 1, 1);
    q.remove_consumer(1, "killed");
    take(&mut q, 2, 1);
    q.close();
    q.wait(3, 1, usize::MAX, "c");
    let wakes = q.remove_consumer(2, "lease timeout");
    assert_eq!(handed(&wakes, "c"), Some(Handoff::EndOfStream));
    let c = q.counts();
    assert_eq!((c.dead, c.finished(), c.put), (1, 1, 1));
    let dead = &q.dead_items()[0];
    assert_eq!(dead.attempts, 2);
    assert!(dead.reason.contains("\"b\"") && dead.reason.contains("lease timeout"));
}

/// A consumer holding several leases dies: all of them go back to the front in put
/// order, ahead of items never delivered, each with its attempt raised; those at
/// `max_attempts` die instead; started or not makes no difference.
#[test]
fn a_consumer_holding_several_leases_when_it_dies() {
    let mut q = queue(2, &["p", "q", "r", "s", "t"]);
    // "p" has already been delivered once and lost.
    take(&mut q, 2, 1);
    q.remove_consumer(2, "killed");
    q.add_consumer(2, "b");
    let held = take(&mut q, 1, 4);
    assert_eq!(payloads(&held), [&b"p"[..], b"q", b"r", b"s"]);
    assert_eq!(held[0].attempt, 2);
    q.started(1, held[1].id).unwrap();
    q.done(1, &[held[3].id]);

    q.wait(2, 10, usize::MAX, "b");
    let wakes = q.remove_consumer(1, "killed");
    let Some(Handoff::Items(got)) = handed(&wakes, "b") else {
        panic!("the waiter gets the requeued items: {wakes:?}")
    };
    assert_eq!(payloads(&got), [&b"q"[..], b"r", b"t"]);
    assert_eq!(got.iter().map(|d| d.attempt).collect::<Vec<_>>(), [2, 2, 1]);
    let c = q.counts();
    assert_eq!((c.done, c.dead, c.leased, c.queued), (1, 1, 3, 0));
    assert_eq!(q.dead_items()[0].payload.as_ref(), b"p");
    for d in &held {
        assert_eq!(q.done(1, &[d.id]).0, vec![d.id], "the dead consumer's ids");
    }
}

/// A dying consumer's own pending get is dropped: its requeued items go to another
/// consumer's waiter, never back to it.
#[test]
fn a_dying_consumer_is_not_handed_its_own_requeued_items() {
    let mut q = queue(3, &["x"]);
    take(&mut q, 1, 1);
    q.wait(1, 1, usize::MAX, "a-again");
    q.wait(2, 1, usize::MAX, "b");
    let wakes = q.remove_consumer(1, "connection closed");
    assert!(handed(&wakes, "a-again").is_none());
    assert!(matches!(handed(&wakes, "b"), Some(Handoff::Items(_))));
}

/// A get's timeout and a handoff at the same instant. Handoff first: the cancel finds
/// nothing (the answer carries the item, and the lease stands). Cancel first: the item
/// stays queued for the next consumer.
#[test]
fn a_get_timeout_racing_a_handoff() {
    let mut q = queue(3, &[]);
    let key = q.wait(1, 1, usize::MAX, "a");
    let wakes = q.put(Bytes::from_static(b"x")).unwrap();
    assert!(matches!(handed(&wakes, "a"), Some(Handoff::Items(_))));
    assert_eq!(q.cancel_wait(key), None, "already answered");
    assert_eq!(q.counts().leased, 1);

    let key = q.wait(2, 1, usize::MAX, "b");
    assert_eq!(q.cancel_wait(key), Some("b"));
    assert!(q.put(Bytes::from_static(b"y")).unwrap().is_empty());
    assert_eq!(q.counts().queued, 1);
}

/// `max_attempts` is reached while the host's join waits: the count of finished items
/// reaches the count put, so join can return.
#[test]
fn max_attempts_reached_while_join_waits_finishes_the_item() {
    let mut q = queue(1, &["x", "y"]);
    take(&mut q, 1, 1);
    let other = take(&mut q, 2, 1).remove(0);
    q.done(2, &[other.id]);
    assert_ne!(q.counts().finished(), q.counts().put, "join still waits");
    q.remove_consumer(1, "lease timeout");
    let c = q.counts();
    assert_eq!((c.done, c.dead), (1, 1));
    assert_eq!(c.finished(), c.put, "join can return");
}

// ---- The server, with a paused clock ------------------------------------------------

const LEASE: Duration = Duration::from_secs(30);

async fn server(max_attempts: u32) -> (Server, hydra_queue::SourceQueue<String>) {
    let options = ServerOptions {
        lease_timeout: LEASE,
        ..ServerOptions::default()
    };
    let server = Server::bind("127.0.0.1:0", options).await.unwrap();
    let tasks = server
        .source::<String>(
            "tasks",
            SourceOptions {
                capacity: 0,
                max_attempts,
            },
        )
        .unwrap();
    tasks.put(&"job".to_string()).await.unwrap();
    (server, tasks)
}

fn silent(server: &Server, name: &str) -> ClientSettings {
    server.client_settings(name).with_heartbeat(Heartbeat::Off)
}

/// A consumer that goes silent loses its lease exactly one lease timeout after the last
/// thing it sent; the item goes to the next consumer with attempt 2; its late done is
/// refused.
#[tokio::test(start_paused = true)]
async fn a_silent_consumer_loses_its_lease_after_the_lease_timeout() {
    let (server, tasks) = server(3).await;
    let quiet = silent(&server, "quiet").connect().await.unwrap();
    let quiet = quiet.consumer::<String>("tasks").await.unwrap();
    let first = quiet.get(Some(LEASE)).await.unwrap();
    let silent_since = tokio::time::Instant::now();

    let other = server.client_settings("other").connect().await.unwrap();
    let other = other.consumer::<String>("tasks").await.unwrap();
    let second = other.get(Some(LEASE * 4)).await.unwrap();
    let waited = silent_since.elapsed();
    assert_eq!(second.attempt, 2);
    assert!(
        waited >= LEASE && waited < LEASE + Duration::from_secs(1),
        "the lease ended after {waited:?} of silence"
    );
    assert!(matches!(
        quiet.task_done(first.id).await,
        Err(Error::ConnectionLost { .. })
    ));
    other.task_done(second.id).await.unwrap();
    assert_eq!(tasks.join(Some(LEASE)).await.unwrap().done, 1);
}

/// A consumer whose client heartbeats (the default) keeps its lease through a task ten
/// lease timeouts long, and its done is accepted.
#[tokio::test(start_paused = true)]
async fn a_heartbeating_consumer_keeps_its_lease_through_a_long_task() {
    let (server, tasks) = server(3).await;
    let busy = server.client_settings("busy").connect().await.unwrap();
    let busy = busy.consumer::<String>("tasks").await.unwrap();
    let d = busy.get(Some(LEASE)).await.unwrap();

    let other = server.client_settings("other").connect().await.unwrap();
    let other = other.consumer::<String>("tasks").await.unwrap();
    match other.get(Some(LEASE * 10)).await {
        Err(Error::Empty { .. }) => {}
        got => panic!("the item must stay leased to the busy consumer, got {got:?}"),
    }
    busy.task_done(d.id).await.unwrap();
    let report = tasks.join(Some(LEASE)).await.unwrap();
    assert_eq!((report.done, report.redelivered), (1, 0));
}

/// `max_attempts` is reached while the host waits in join: the item dies after its
/// second silent holder, and join returns (it does not hang) with the item dead.
#[tokio::test(start_paused = true)]
async fn max_attempts_reached_while_join_waits() {
    let (server, tasks) = server(2).await;
    tasks.close();
    let join = {
        let tasks = tasks.clone();
        tokio::spawn(async move { tasks.join(Some(LEASE * 10)).await })
    };
    let mut holders = Vec::new();
    for name in ["first", "second"] {
        let c = silent(&server, name).connect().await.unwrap();
        let c = c.consumer::<String>("tasks").await.unwrap();
        let d = c.get(Some(LEASE * 2)).await.unwrap();
        holders.push((c, d));
    }
    assert_eq!(holders[1].1.attempt, 2);
    let report = join
        .await
        .unwrap()
        .expect("join returns once the item is dead");
    assert_eq!((report.done, report.dead, report.total), (0, 1, 1));
    let dead = tasks.dead_items();
    assert!(dead[0].reason.contains("second"), "{}", dead[0].reason);
    // Consumers waiting for end-of-stream get it: nothing can come back.
    let last = server.client_settings("last").connect().await.unwrap();
    let last = last.consumer::<String>("tasks").await.unwrap();
    assert!(last.get(Some(LEASE)).await.unwrap_err().is_end_of_stream());
}
