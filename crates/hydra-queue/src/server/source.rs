//! Source-queue state: queued items, leases, waiting consumers, and what finished.
//!
//! Plain synchronous code with no I/O and no tokio: the server calls it under a mutex and
//! carries out the [`Wake`]s it returns. Waiting consumers are opaque tokens `W`, so tests
//! drive every race by calling methods in the order they want.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use bytes::Bytes;

use crate::protocol::WireDelivery;

/// Identifies a consumer (one opened consumer handle) for the server's lifetime.
pub type ConsumerId = u64;
/// Identifies one delivery of one item.
pub type DeliveryId = u64;
/// Identifies a waiting `get`, to cancel it at its timeout.
pub type WaiterKey = u64;

/// Settings of a source queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceOptions {
    /// Most items queued (not counting leased ones) before `put` waits; 0 = unbounded.
    pub capacity: usize,
    /// Deliveries of one item before it is declared dead (at least 1).
    pub max_attempts: u32,
}

impl Default for SourceOptions {
    /// Unbounded, three attempts.
    fn default() -> Self {
        SourceOptions {
            capacity: 0,
            max_attempts: 3,
        }
    }
}

/// What a waiting consumer is handed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handoff {
    /// Deliveries, now leased to the waiter's consumer.
    Items(Vec<WireDelivery>),
    /// The queue is closed and nothing can come any more.
    EndOfStream,
}

/// A waiter to answer, returned by the methods that can satisfy waiters.
#[derive(Debug)]
pub struct Wake<W> {
    /// The token given to [`SourceState::wait`].
    pub waiter: W,
    /// What it gets.
    pub handoff: Handoff,
}

/// The answer to [`SourceState::get`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetResult {
    /// Deliveries, now leased to the consumer.
    Items(Vec<WireDelivery>),
    /// The queue is closed and nothing can come any more.
    EndOfStream,
    /// Nothing now; the caller may [`SourceState::wait`].
    Wait,
}

/// Why `put` refused an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutRefused {
    /// At capacity: try again when there is room.
    Full,
    /// `close()` was called.
    Closed,
}

/// An item that finished as failed, as reported by its consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedItem {
    /// Position in put order, from 0.
    pub seq: u64,
    /// The item's bytes.
    pub payload: Bytes,
    /// The delivery's attempt number.
    pub attempt: u32,
    /// Name of the consumer that reported it.
    pub consumer: String,
    /// The consumer's reason.
    pub reason: String,
}

/// An item given up after `max_attempts` deliveries whose leases were lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadItem {
    /// Position in put order, from 0.
    pub seq: u64,
    /// The item's bytes.
    pub payload: Bytes,
    /// Deliveries made.
    pub attempts: u32,
    /// Why the last lease was lost, naming the consumer.
    pub reason: String,
}

/// Counts of a source queue at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceCounts {
    /// Items ever put.
    pub put: u64,
    /// Items waiting to be delivered.
    pub queued: usize,
    /// Items leased to consumers.
    pub leased: usize,
    /// Items finished with `task_done`.
    pub done: u64,
    /// Items finished with a failure report.
    pub failed: u64,
    /// Items given up after `max_attempts` lost leases.
    pub dead: u64,
    /// Deliveries beyond each item's first.
    pub redelivered: u64,
}

impl SourceCounts {
    /// Items finished in any way.
    pub fn finished(&self) -> u64 {
        self.done + self.failed + self.dead
    }
}

/// Hashes the server's own sequential ids (deliveries, consumers) with one multiplication.
///
/// SipHash was a quarter of the time spent leasing and finishing an item. Keys are ids the
/// server hands out, so clients cannot choose what is inserted; a client naming made-up ids
/// only costs its own lookups.
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed here; this keeps any other key correct, if slower.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, id: u64) {
        // Fibonacci hashing: consecutive ids spread over both the low bits (bucket) and the
        // high bits (hashbrown's control byte).
        self.0 = (id ^ (id >> 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;
type IdSet = HashSet<u64, BuildHasherDefault<IdHasher>>;

#[derive(Debug)]
struct Item {
    seq: u64,
    payload: Bytes,
    /// Deliveries made so far.
    attempts: u32,
    /// Consumer name that should not get this item while another consumer is connected.
    avoid: Option<Arc<str>>,
}

#[derive(Debug)]
struct Lease {
    item: Item,
    consumer: ConsumerId,
    started: bool,
}

#[derive(Debug)]
struct Waiter<W> {
    key: WaiterKey,
    consumer: ConsumerId,
    max: usize,
    max_bytes: usize,
    token: W,
}

#[derive(Debug, Default)]
struct Consumer {
    name: String,
    leases: IdSet,
}

/// The state of one source queue.
#[derive(Debug)]
pub struct SourceState<W> {
    config: SourceOptions,
    queued: VecDeque<Item>,
    leases: IdMap<Lease>,
    consumers: IdMap<Consumer>,
    waiters: VecDeque<Waiter<W>>,
    closed: bool,
    next_delivery: DeliveryId,
    next_key: WaiterKey,
    counts: SourceCounts,
    failed: Vec<FailedItem>,
    dead: Vec<DeadItem>,
    /// Queued items with an `avoid` name; while 0, leasing takes from the front directly.
    avoiding: usize,
}

impl<W> SourceState<W> {
    /// An empty, open queue.
    pub fn new(config: SourceOptions) -> Self {
        let config = SourceOptions {
            max_attempts: config.max_attempts.max(1),
            ..config
        };
        SourceState {
            config,
            queued: VecDeque::new(),
            leases: IdMap::default(),
            consumers: IdMap::default(),
            waiters: VecDeque::new(),
            closed: false,
            next_delivery: 1,
            next_key: 1,
            counts: SourceCounts::default(),
            failed: Vec::new(),
            dead: Vec::new(),
            avoiding: 0,
        }
    }

    /// The queue's settings.
    pub fn config(&self) -> &SourceOptions {
        &self.config
    }

    /// Counts now.
    pub fn counts(&self) -> SourceCounts {
        SourceCounts {
            queued: self.queued.len(),
            leased: self.leases.len(),
            ..self.counts
        }
    }

    /// Whether `put` would take an item now.
    pub fn has_room(&self) -> bool {
        self.config.capacity == 0 || self.queued.len() < self.config.capacity
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Closed, nothing queued and nothing leased: nothing can come any more.
    pub fn is_end_of_stream(&self) -> bool {
        self.closed && self.queued.is_empty() && self.leases.is_empty()
    }

    /// Items that finished as failed, in the order they were reported.
    pub fn failed_items(&self) -> &[FailedItem] {
        &self.failed
    }

    /// Items given up after `max_attempts`, in the order they died.
    pub fn dead_items(&self) -> &[DeadItem] {
        &self.dead
    }

    /// Registers a consumer so it can hold leases.
    pub fn add_consumer(&mut self, id: ConsumerId, name: &str) {
        self.consumers.insert(
            id,
            Consumer {
                name: name.to_string(),
                leases: IdSet::default(),
            },
        );
    }

    /// Adds an item at the back of the queue, handing it to a waiting consumer if any.
    pub fn put(&mut self, payload: Bytes) -> Result<Vec<Wake<W>>, PutRefused> {
        self.put_avoiding(payload, None)
    }

    /// Like [`put`](Self::put), but consumers named `avoid` get the item only when no
    /// consumer of another name is connected: for retrying a failed task elsewhere.
    pub fn put_avoiding(
        &mut self,
        payload: Bytes,
        avoid: Option<&str>,
    ) -> Result<Vec<Wake<W>>, PutRefused> {
        if self.closed {
            return Err(PutRefused::Closed);
        }
        if !self.has_room() {
            return Err(PutRefused::Full);
        }
        let seq = self.counts.put;
        self.counts.put += 1;
        self.queued.push_back(Item {
            seq,
            payload,
            attempts: 0,
            avoid: avoid.map(Arc::from),
        });
        if avoid.is_some() {
            self.avoiding += 1;
        }
        Ok(self.dispatch())
    }

    /// No more items will be put. Waiters get end-of-stream once nothing can come back.
    pub fn close(&mut self) -> Vec<Wake<W>> {
        self.closed = true;
        self.wake_if_end()
    }

    /// Up to `max` deliveries for `consumer`, or what to do instead.
    ///
    /// At least one item is handed out when any is queued; more only while their payloads
    /// total at most `max_bytes`.
    pub fn get(&mut self, consumer: ConsumerId, max: usize, max_bytes: usize) -> GetResult {
        if !self.queued.is_empty() && self.consumers.contains_key(&consumer) {
            let items = self.lease(consumer, max.max(1), max_bytes);
            if !items.is_empty() {
                return GetResult::Items(items);
            }
        }
        if self.is_end_of_stream() {
            GetResult::EndOfStream
        } else {
            GetResult::Wait
        }
    }

    /// Queues a waiting `get` (after [`get`](Self::get) said `Wait`); first come, first served.
    pub fn wait(
        &mut self,
        consumer: ConsumerId,
        max: usize,
        max_bytes: usize,
        token: W,
    ) -> WaiterKey {
        let key = self.next_key;
        self.next_key += 1;
        self.waiters.push_back(Waiter {
            key,
            consumer,
            max: max.max(1),
            max_bytes,
            token,
        });
        key
    }

    /// Withdraws a waiting `get` (its timeout passed). `None` if it was already answered.
    pub fn cancel_wait(&mut self, key: WaiterKey) -> Option<W> {
        let pos = self.waiters.iter().position(|w| w.key == key)?;
        self.waiters.remove(pos).map(|w| w.token)
    }

    /// Marks a delivery as running.
    pub fn started(&mut self, consumer: ConsumerId, id: DeliveryId) -> Result<(), DeliveryId> {
        match self.leases.get_mut(&id) {
            Some(lease) if lease.consumer == consumer => {
                lease.started = true;
                Ok(())
            }
            _ => Err(id),
        }
    }

    /// Finishes deliveries as done. Returns the ids refused (not leased to `consumer`),
    /// which change nothing, and the waiters to wake.
    pub fn done(
        &mut self,
        consumer: ConsumerId,
        ids: &[DeliveryId],
    ) -> (Vec<DeliveryId>, Vec<Wake<W>>) {
        let mut refused = Vec::new();
        for &id in ids {
            if self.finish(consumer, id).is_some() {
                self.counts.done += 1;
            } else {
                refused.push(id);
            }
        }
        (refused, self.wake_if_end())
    }

    /// Finishes a delivery as failed, with the consumer's reason.
    pub fn failed(
        &mut self,
        consumer: ConsumerId,
        id: DeliveryId,
        reason: &str,
    ) -> Result<Vec<Wake<W>>, DeliveryId> {
        let item = self.finish(consumer, id).ok_or(id)?;
        self.counts.failed += 1;
        let name = self
            .consumers
            .get(&consumer)
            .map(|c| c.name.clone())
            .unwrap_or_default();
        self.failed.push(FailedItem {
            seq: item.seq,
            payload: item.payload,
            attempt: item.attempts,
            consumer: name,
            reason: reason.to_string(),
        });
        Ok(self.wake_if_end())
    }

    /// The consumer is gone (connection closed, heartbeats stopped, or it closed its handle):
    /// its waiters are dropped and every item it held goes back to the front of the queue,
    /// or dies if it has had `max_attempts` deliveries. `why` is recorded for dead items.
    pub fn remove_consumer(&mut self, consumer: ConsumerId, why: &str) -> Vec<Wake<W>> {
        self.waiters.retain(|w| w.consumer != consumer);
        let Some(entry) = self.consumers.remove(&consumer) else {
            return Vec::new();
        };
        let mut items: Vec<Item> = entry
            .leases
            .iter()
            .filter_map(|id| self.leases.remove(id))
            .map(|lease| lease.item)
            .collect();
        // Back to the front in put order: the oldest item is delivered first.
        items.sort_by_key(|item| std::cmp::Reverse(item.seq));
        for item in items {
            if item.attempts >= self.config.max_attempts {
                self.counts.dead += 1;
                self.dead.push(DeadItem {
                    seq: item.seq,
                    attempts: item.attempts,
                    reason: format!(
                        "lease lost {} times; last holder {:?}: {why}",
                        item.attempts, entry.name
                    ),
                    payload: item.payload,
                });
            } else {
                if item.avoid.is_some() {
                    self.avoiding += 1;
                }
                self.queued.push_front(item);
            }
        }
        let mut wakes = self.dispatch();
        wakes.extend(self.wake_if_end());
        wakes
    }

    fn finish(&mut self, consumer: ConsumerId, id: DeliveryId) -> Option<Item> {
        match self.leases.get(&id) {
            Some(lease) if lease.consumer == consumer => {}
            _ => return None,
        }
        let lease = self.leases.remove(&id)?;
        if let Some(c) = self.consumers.get_mut(&consumer) {
            c.leases.remove(&id);
        }
        Some(lease.item)
    }

    /// Whether `consumer` may take `item`: not when the item avoids its name and a
    /// consumer of another name is connected.
    fn eligible(&self, item: &Item, consumer: ConsumerId) -> bool {
        let Some(avoid) = &item.avoid else {
            return true;
        };
        match self.consumers.get(&consumer) {
            Some(c) if c.name == **avoid => self.consumers.values().all(|o| o.name == **avoid),
            _ => true,
        }
    }

    /// Picks up to `max` queued items `consumer` may take, within `max_bytes` (one at least).
    fn pick(&mut self, consumer: ConsumerId, max: usize, max_bytes: usize) -> Vec<Item> {
        let mut bytes = 0usize;
        let mut fits = |item: &Item, taken: usize| {
            bytes = bytes.saturating_add(item.payload.len() + 16);
            taken == 0 || bytes <= max_bytes
        };
        if self.avoiding == 0 {
            let mut n = 0;
            for item in self.queued.iter().take(max) {
                if !fits(item, n) {
                    break;
                }
                n += 1;
            }
            return self.queued.drain(..n).collect();
        }
        let mut picked = Vec::new();
        let mut i = 0;
        while i < self.queued.len() && picked.len() < max {
            if self.eligible(&self.queued[i], consumer) {
                if !fits(&self.queued[i], picked.len()) {
                    break;
                }
                let item = self.queued.remove(i).expect("index is in range");
                if item.avoid.is_some() {
                    self.avoiding -= 1;
                }
                picked.push(item);
            } else {
                i += 1;
            }
        }
        picked
    }

    fn lease(&mut self, consumer: ConsumerId, max: usize, max_bytes: usize) -> Vec<WireDelivery> {
        let picked = self.pick(consumer, max, max_bytes);
        let mut out = Vec::with_capacity(picked.len());
        for mut item in picked {
            let id = self.next_delivery;
            self.next_delivery += 1;
            item.attempts += 1;
            if item.attempts > 1 {
                self.counts.redelivered += 1;
            }
            out.push(WireDelivery {
                id,
                attempt: item.attempts,
                payload: item.payload.clone(),
            });
            self.leases.insert(
                id,
                Lease {
                    item,
                    consumer,
                    started: false,
                },
            );
            if let Some(c) = self.consumers.get_mut(&consumer) {
                c.leases.insert(id);
            }
        }
        out
    }

    fn dispatch(&mut self) -> Vec<Wake<W>> {
        let mut wakes = Vec::new();
        let mut i = 0;
        while !self.queued.is_empty() && i < self.waiters.len() {
            let (consumer, max, max_bytes) = {
                let w = &self.waiters[i];
                (w.consumer, w.max, w.max_bytes)
            };
            let items = self.lease(consumer, max, max_bytes);
            if items.is_empty() {
                // Everything queued avoids this waiter: leave it waiting, serve the next.
                i += 1;
                continue;
            }
            let waiter = self.waiters.remove(i).expect("index is in range");
            wakes.push(Wake {
                waiter: waiter.token,
                handoff: Handoff::Items(items),
            });
        }
        wakes
    }

    fn wake_if_end(&mut self) -> Vec<Wake<W>> {
        if !self.is_end_of_stream() {
            return Vec::new();
        }
        self.waiters
            .drain(..)
            .map(|w| Wake {
                waiter: w.token,
                handoff: Handoff::EndOfStream,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(capacity: usize, max_attempts: u32) -> SourceState<&'static str> {
        let mut q = SourceState::new(SourceOptions {
            capacity,
            max_attempts,
        });
        q.add_consumer(1, "a");
        q.add_consumer(2, "b");
        q
    }

    fn items(r: GetResult) -> Vec<WireDelivery> {
        match r {
            GetResult::Items(items) => items,
            other => panic!("expected items, got {other:?}"),
        }
    }

    fn one(q: &mut SourceState<&'static str>, consumer: ConsumerId) -> WireDelivery {
        items(q.get(consumer, 1, usize::MAX)).remove(0)
    }

    #[test]
    fn put_respects_capacity_and_close() {
        let mut q = queue(2, 3);
        q.put(Bytes::from("1")).unwrap();
        q.put(Bytes::from("2")).unwrap();
        assert_eq!(q.put(Bytes::from("3")).unwrap_err(), PutRefused::Full);
        one(&mut q, 1);
        assert!(q.has_room(), "leased items do not count against capacity");
        q.close();
        assert_eq!(q.put(Bytes::from("3")).unwrap_err(), PutRefused::Closed);
    }

    #[test]
    fn equal_payloads_are_distinct_deliveries() {
        let mut q = queue(0, 3);
        q.put(Bytes::from("same")).unwrap();
        q.put(Bytes::from("same")).unwrap();
        let a = one(&mut q, 1);
        let b = one(&mut q, 1);
        assert_ne!(a.id, b.id);
        assert_eq!(q.done(1, &[b.id]).0, Vec::<u64>::new());
        assert_eq!(q.counts().leased, 1);
        assert_eq!(q.done(1, &[b.id]).0, vec![b.id], "second finish is refused");
    }

    #[test]
    fn waiters_are_served_first_come_first_served() {
        let mut q = queue(0, 3);
        assert_eq!(q.get(1, 1, usize::MAX), GetResult::Wait);
        q.wait(1, 1, usize::MAX, "first");
        q.wait(2, 1, usize::MAX, "second");
        let wakes = q.put(Bytes::from("x")).unwrap();
        assert_eq!(wakes.len(), 1);
        assert_eq!(wakes[0].waiter, "first");
        let wakes = q.put(Bytes::from("y")).unwrap();
        assert_eq!(wakes[0].waiter, "second");
    }

    #[test]
    fn a_cancelled_waiter_gets_nothing() {
        let mut q = queue(0, 3);
        let key = q.wait(1, 1, usize::MAX, "w");
        assert_eq!(q.cancel_wait(key), Some("w"));
        assert_eq!(q.cancel_wait(key), None);
        assert!(q.put(Bytes::from("x")).unwrap().is_empty());
        assert_eq!(q.counts().queued, 1);
    }

    #[test]
    fn done_from_another_consumer_or_unknown_id_is_refused() {
        let mut q = queue(0, 3);
        q.put(Bytes::from("x")).unwrap();
        let d = one(&mut q, 1);
        assert_eq!(q.done(2, &[d.id]).0, vec![d.id]);
        assert_eq!(q.started(2, d.id), Err(d.id));
        assert_eq!(q.done(1, &[999]).0, vec![999]);
        assert!(q.failed(1, 999, "no").is_err());
        assert_eq!(q.started(1, d.id), Ok(()));
        assert!(q.done(1, &[d.id]).0.is_empty());
        assert_eq!(q.counts().done, 1);
    }

    #[test]
    fn lost_leases_go_back_to_the_front_in_put_order() {
        let mut q = queue(0, 3);
        for p in ["a", "b", "c", "d"] {
            q.put(Bytes::from(p)).unwrap();
        }
        let held = items(q.get(1, 3, usize::MAX));
        assert_eq!(held.len(), 3);
        q.remove_consumer(1, "connection closed");
        let again = items(q.get(2, 4, usize::MAX));
        let payloads: Vec<_> = again.iter().map(|d| d.payload.clone()).collect();
        assert_eq!(payloads, ["a", "b", "c", "d"].map(Bytes::from));
        assert_eq!(
            again.iter().map(|d| d.attempt).collect::<Vec<_>>(),
            [2, 2, 2, 1]
        );
        assert_eq!(q.counts().redelivered, 3);
    }

    #[test]
    fn done_after_requeue_is_refused_and_the_new_holder_wins() {
        let mut q = queue(0, 3);
        q.add_consumer(3, "c");
        q.put(Bytes::from("x")).unwrap();
        let first = one(&mut q, 1);
        q.remove_consumer(1, "heartbeat timeout");
        let second = one(&mut q, 2);
        assert_ne!(first.id, second.id);
        assert_eq!(q.done(1, &[first.id]).0, vec![first.id]);
        assert!(q.done(2, &[second.id]).0.is_empty());
        let c = q.counts();
        assert_eq!((c.done, c.queued, c.leased), (1, 0, 0));
    }

    #[test]
    fn done_before_lease_loss_is_kept_and_nothing_is_requeued() {
        let mut q = queue(0, 3);
        q.put(Bytes::from("x")).unwrap();
        let d = one(&mut q, 1);
        assert!(q.done(1, &[d.id]).0.is_empty());
        q.remove_consumer(1, "heartbeat timeout");
        let c = q.counts();
        assert_eq!((c.done, c.queued, c.leased), (1, 0, 0));
    }

    #[test]
    fn an_item_dies_after_max_attempts_and_counts_as_finished() {
        let mut q = queue(0, 2);
        q.put(Bytes::from("x")).unwrap();
        one(&mut q, 1);
        q.remove_consumer(1, "killed");
        q.add_consumer(1, "a");
        let d = one(&mut q, 2);
        assert_eq!(d.attempt, 2);
        q.remove_consumer(2, "frozen");
        let c = q.counts();
        assert_eq!((c.dead, c.queued, c.finished()), (1, 0, 1));
        assert_eq!(q.dead_items()[0].attempts, 2);
        assert!(q.dead_items()[0].reason.contains("frozen"));
    }

    #[test]
    fn end_of_stream_waits_for_leased_items_that_may_come_back() {
        let mut q = queue(0, 3);
        q.put(Bytes::from("x")).unwrap();
        let d = one(&mut q, 1);
        assert!(q.close().is_empty());
        assert_eq!(
            q.get(2, 1, usize::MAX),
            GetResult::Wait,
            "the leased item may come back"
        );
        q.wait(2, 1, usize::MAX, "b");
        // Consumer 1 dies: the waiter gets the item, not end-of-stream.
        let wakes = q.remove_consumer(1, "killed");
        assert_eq!(wakes.len(), 1);
        let Handoff::Items(got) = &wakes[0].handoff else {
            panic!("expected the item, got {:?}", wakes[0].handoff)
        };
        assert_eq!(got[0].payload, d.payload);
        q.add_consumer(3, "c");
        q.wait(3, 1, usize::MAX, "c");
        let (_, wakes) = q.done(2, &[got[0].id]);
        assert_eq!(wakes.len(), 1);
        assert_eq!(wakes[0].handoff, Handoff::EndOfStream);
        assert_eq!(q.get(3, 1, usize::MAX), GetResult::EndOfStream);
    }

    #[test]
    fn a_consumer_holding_several_leases_when_it_dies_requeues_all_of_them() {
        let mut q = queue(0, 3);
        for i in 0..5 {
            q.put(Bytes::from(format!("{i}"))).unwrap();
        }
        let held = items(q.get(1, 5, usize::MAX));
        q.started(1, held[0].id).unwrap();
        q.wait(2, 10, usize::MAX, "b");
        let wakes = q.remove_consumer(1, "killed");
        let Handoff::Items(got) = &wakes[0].handoff else {
            panic!()
        };
        assert_eq!(got.len(), 5);
        assert_eq!(q.counts().leased, 5);
    }

    #[test]
    fn failed_counts_as_finished_with_its_reason() {
        let mut q = queue(0, 3);
        q.put(Bytes::from("x")).unwrap();
        let d = one(&mut q, 1);
        q.failed(1, d.id, "exit status 1").unwrap();
        assert_eq!(q.counts().finished(), 1);
        assert_eq!(q.failed_items()[0].reason, "exit status 1");
        assert_eq!(q.failed_items()[0].consumer, "a");
    }

    #[test]
    fn max_attempts_reached_while_waiting_for_end_of_stream() {
        let mut q = queue(0, 1);
        q.put(Bytes::from("x")).unwrap();
        one(&mut q, 1);
        q.close();
        q.wait(2, 1, usize::MAX, "b");
        let wakes = q.remove_consumer(1, "killed");
        assert_eq!(wakes.len(), 1);
        assert_eq!(wakes[0].handoff, Handoff::EndOfStream);
        assert_eq!(q.counts().dead, 1);
    }

    #[test]
    fn a_get_stops_at_the_byte_budget_but_always_hands_out_one() {
        let mut q = queue(0, 3);
        for _ in 0..4 {
            q.put(Bytes::from(vec![0u8; 100])).unwrap();
        }
        assert_eq!(
            items(q.get(1, 10, 50)).len(),
            1,
            "one item even over budget"
        );
        assert_eq!(items(q.get(1, 10, 250)).len(), 2);
    }

    #[test]
    fn an_avoided_consumer_gets_the_item_only_when_it_is_alone() {
        let mut q = queue(0, 3);
        q.put_avoiding(Bytes::from("retry"), Some("a")).unwrap();
        q.put(Bytes::from("plain")).unwrap();
        // "a" skips the retry and takes the next item.
        assert_eq!(one(&mut q, 1).payload, Bytes::from("plain"));
        assert_eq!(q.get(1, 1, usize::MAX), GetResult::Wait);
        q.wait(1, 1, usize::MAX, "a waits");
        // "b" takes it.
        assert_eq!(one(&mut q, 2).payload, Bytes::from("retry"));
        // Again, but "b" leaves: then "a" may have it.
        q.put_avoiding(Bytes::from("retry2"), Some("a")).unwrap();
        let wakes = q.remove_consumer(2, "gone");
        assert_eq!(
            wakes.len(),
            1,
            "the waiting avoided consumer is served once alone"
        );
        assert_eq!(wakes[0].waiter, "a waits");
    }

    #[test]
    fn removing_a_consumer_drops_its_waiters() {
        let mut q = queue(0, 3);
        q.wait(1, 1, usize::MAX, "a");
        q.wait(2, 1, usize::MAX, "b");
        q.remove_consumer(1, "closed");
        let wakes = q.put(Bytes::from("x")).unwrap();
        assert_eq!(wakes[0].waiter, "b");
    }
}
