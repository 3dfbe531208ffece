//! Sink-queue state: registered feeds, items in arrival order, puts waiting for room.
//!
//! Plain synchronous code with no I/O and no tokio, like [`super::source`]: waiting puts are
//! opaque tokens `W` that the methods hand back when they are acknowledged.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

/// Identifies a registered feed for the server's lifetime.
pub type FeedId = u64;
/// Identifies a waiting `put`, to cancel it at its timeout.
pub type PutKey = u64;

/// Settings of a sink queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkOptions {
    /// Most items held before feeds' puts wait; 0 = unbounded.
    pub capacity: usize,
    /// `join` also waits until at least this many feeds have registered.
    pub expected_feeds: usize,
}

impl Default for SinkOptions {
    /// Unbounded, no expected feeds.
    fn default() -> Self {
        SinkOptions {
            capacity: 0,
            expected_feeds: 0,
        }
    }
}

/// Why a feed could not register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterRefused {
    /// Another live feed has that name.
    Duplicate,
    /// The sink no longer takes feeds (`close`, or `join` completed).
    Sealed,
}

/// The answer to [`SinkState::put`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutResult {
    /// Every item is enqueued: acknowledge.
    Accepted,
    /// No room (or earlier puts are waiting): the caller may [`SinkState::wait_put`].
    Wait,
    /// The feed is not registered (it closed or was lost).
    NotRegistered,
}

/// Counts of a sink queue at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkCounts {
    /// Items waiting for the host's `get`.
    pub queued: usize,
    /// Items ever enqueued.
    pub received: u64,
    /// Feeds registered now.
    pub feeds: usize,
    /// Feeds ever registered.
    pub registered: usize,
    /// Feeds that went away without unregistering.
    pub lost: usize,
}

#[derive(Debug)]
struct PendingPut<W> {
    key: PutKey,
    feed: FeedId,
    items: Vec<Bytes>,
    token: W,
}

/// The state of one sink queue.
#[derive(Debug)]
pub struct SinkState<W> {
    config: SinkOptions,
    items: VecDeque<Bytes>,
    feeds: HashMap<FeedId, String>,
    pending: VecDeque<PendingPut<W>>,
    sealed: bool,
    next_key: PutKey,
    counts: SinkCounts,
    lost: Vec<(String, String)>,
}

impl<W> SinkState<W> {
    /// An empty sink with no feeds.
    pub fn new(config: SinkOptions) -> Self {
        SinkState {
            config,
            items: VecDeque::new(),
            feeds: HashMap::new(),
            pending: VecDeque::new(),
            sealed: false,
            next_key: 1,
            counts: SinkCounts::default(),
            lost: Vec::new(),
        }
    }

    /// Counts now.
    pub fn counts(&self) -> SinkCounts {
        SinkCounts {
            queued: self.items.len(),
            feeds: self.feeds.len(),
            ..self.counts
        }
    }

    /// Feeds lost without unregistering, with why.
    pub fn lost_feeds(&self) -> &[(String, String)] {
        &self.lost
    }

    /// Registers a feed under a name unique among live feeds.
    pub fn register(&mut self, feed: FeedId, name: &str) -> Result<(), RegisterRefused> {
        if self.sealed {
            return Err(RegisterRefused::Sealed);
        }
        if self.feeds.values().any(|n| n == name) {
            return Err(RegisterRefused::Duplicate);
        }
        self.feeds.insert(feed, name.to_string());
        self.counts.registered += 1;
        Ok(())
    }

    /// The feed unregistered (`lost` is `Some(why)` when it went away without doing so).
    /// Its waiting puts are dropped, unacknowledged, and returned.
    pub fn unregister(&mut self, feed: FeedId, lost: Option<&str>) -> Vec<W> {
        let Some(name) = self.feeds.remove(&feed) else {
            return Vec::new();
        };
        if let Some(why) = lost {
            self.counts.lost += 1;
            self.lost.push((name, why.to_string()));
        }
        let mut dropped = Vec::new();
        let mut keep = VecDeque::new();
        for p in self.pending.drain(..) {
            if p.feed == feed {
                dropped.push(p.token);
            } else {
                keep.push_back(p);
            }
        }
        self.pending = keep;
        dropped
    }

    fn fits(&self, n: usize) -> bool {
        // A batch larger than the capacity goes in whole once the sink is empty.
        self.config.capacity == 0
            || self.items.len() + n <= self.config.capacity
            || self.items.is_empty()
    }

    /// Enqueues a feed's items, all or none, behind any puts already waiting.
    pub fn put(&mut self, feed: FeedId, items: &[Bytes]) -> PutResult {
        if !self.feeds.contains_key(&feed) {
            return PutResult::NotRegistered;
        }
        if !self.pending.is_empty() || !self.fits(items.len()) {
            return PutResult::Wait;
        }
        self.enqueue(items.iter().cloned());
        PutResult::Accepted
    }

    /// Queues a put that must wait for room; it is acknowledged (its token returned by
    /// [`pop`](Self::pop)) once its items are enqueued.
    pub fn wait_put(&mut self, feed: FeedId, items: Vec<Bytes>, token: W) -> PutKey {
        let key = self.next_key;
        self.next_key += 1;
        self.pending.push_back(PendingPut {
            key,
            feed,
            items,
            token,
        });
        key
    }

    /// Withdraws a waiting put (its timeout passed): nothing of it was enqueued.
    /// `None` if it was already acknowledged.
    pub fn cancel_put(&mut self, key: PutKey) -> Option<W> {
        let pos = self.pending.iter().position(|p| p.key == key)?;
        self.pending.remove(pos).map(|p| p.token)
    }

    /// Takes up to `max` items in arrival order, and returns the waiting puts that the
    /// freed room let in (to acknowledge).
    pub fn pop(&mut self, max: usize) -> (Vec<Bytes>, Vec<W>) {
        let n = max.min(self.items.len());
        let out: Vec<Bytes> = self.items.drain(..n).collect();
        let mut acked = Vec::new();
        while let Some(front) = self.pending.front() {
            if !self.fits(front.items.len()) {
                break;
            }
            let p = self.pending.pop_front().expect("front exists");
            self.enqueue(p.items.into_iter());
            acked.push(p.token);
        }
        (out, acked)
    }

    fn enqueue(&mut self, items: impl Iterator<Item = Bytes>) {
        for item in items {
            self.items.push_back(item);
            self.counts.received += 1;
        }
    }

    /// Every registered feed has gone, and at least `expected_feeds` came.
    pub fn is_joined(&self) -> bool {
        self.feeds.is_empty() && self.counts.registered >= self.config.expected_feeds
    }

    /// Refuses new feeds from now on.
    pub fn seal(&mut self) {
        self.sealed = true;
    }

    /// Sealed, no feeds, nothing queued or waiting: `get` has nothing more to return.
    pub fn is_end_of_stream(&self) -> bool {
        self.sealed && self.feeds.is_empty() && self.items.is_empty() && self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(capacity: usize) -> SinkState<&'static str> {
        SinkState::new(SinkOptions {
            capacity,
            expected_feeds: 0,
        })
    }

    #[test]
    fn duplicate_names_are_refused_until_the_first_leaves() {
        let mut s = sink(0);
        s.register(1, "a").unwrap();
        assert_eq!(s.register(2, "a"), Err(RegisterRefused::Duplicate));
        s.unregister(1, None);
        s.register(2, "a").unwrap();
    }

    #[test]
    fn items_come_out_in_arrival_order_and_full_puts_wait_their_turn() {
        let mut s = sink(2);
        s.register(1, "a").unwrap();
        s.register(2, "b").unwrap();
        assert_eq!(
            s.put(1, &[Bytes::from("1"), Bytes::from("2")]),
            PutResult::Accepted
        );
        assert_eq!(s.put(2, &[Bytes::from("3")]), PutResult::Wait);
        s.wait_put(2, vec![Bytes::from("3")], "b3");
        // A put that would fit must not overtake the waiting one.
        let (got, acked) = s.pop(1);
        assert_eq!(got, vec![Bytes::from("1")]);
        assert_eq!(acked, vec!["b3"]);
        assert_eq!(s.put(1, &[Bytes::from("4")]), PutResult::Wait);
        s.wait_put(1, vec![Bytes::from("4")], "a4");
        let (got, acked) = s.pop(10);
        assert_eq!(got, vec![Bytes::from("2"), Bytes::from("3")]);
        assert_eq!(acked, vec!["a4"]);
        assert_eq!(s.pop(10).0, vec![Bytes::from("4")]);
    }

    #[test]
    fn a_batch_larger_than_capacity_goes_in_when_empty() {
        let mut s = sink(2);
        s.register(1, "a").unwrap();
        let batch: Vec<Bytes> = (0..5).map(|i| Bytes::from(format!("{i}"))).collect();
        assert_eq!(s.put(1, &batch), PutResult::Accepted);
        assert_eq!(s.counts().queued, 5);
    }

    #[test]
    fn a_cancelled_put_enqueues_nothing() {
        let mut s = sink(1);
        s.register(1, "a").unwrap();
        s.put(1, &[Bytes::from("1")]);
        let key = s.wait_put(1, vec![Bytes::from("2")], "w");
        assert_eq!(s.cancel_put(key), Some("w"));
        let (got, acked) = s.pop(10);
        assert_eq!(got.len(), 1);
        assert!(acked.is_empty());
        assert_eq!(s.counts().received, 1);
    }

    #[test]
    fn join_and_end_of_stream() {
        let mut s = SinkState::<()>::new(SinkOptions {
            capacity: 0,
            expected_feeds: 2,
        });
        assert!(!s.is_joined(), "expected feeds have not come yet");
        s.register(1, "a").unwrap();
        s.register(2, "b").unwrap();
        s.put(1, &[Bytes::from("x")]);
        s.unregister(1, None);
        assert!(!s.is_joined());
        s.unregister(2, Some("connection closed"));
        assert!(s.is_joined());
        assert_eq!(s.counts().lost, 1);
        s.seal();
        assert_eq!(s.register(3, "c"), Err(RegisterRefused::Sealed));
        assert!(!s.is_end_of_stream(), "an item is left to drain");
        s.pop(1);
        assert!(s.is_end_of_stream());
    }

    #[test]
    fn a_lost_feed_drops_its_waiting_puts_unacknowledged() {
        let mut s = sink(1);
        s.register(1, "a").unwrap();
        s.put(1, &[Bytes::from("1")]);
        s.wait_put(1, vec![Bytes::from("2")], "w");
        assert_eq!(s.unregister(1, Some("killed")), vec!["w"]);
        assert_eq!(s.put(1, &[Bytes::from("3")]), PutResult::NotRegistered);
        let (_, acked) = s.pop(10);
        assert!(acked.is_empty());
    }
}
