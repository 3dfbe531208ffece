//! The serving host's side of each queue: [`SourceQueue`] (put, close, join) and
//! [`SinkQueue`] (get, join), over the shared state that connections also use.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use super::sink::{SinkCounts, SinkState};
use super::source::{DeadItem, FailedItem, Handoff, PutRefused, SourceCounts, SourceState, Wake};
use crate::codec;
use crate::error::{Error, ErrorCode, Result};
use crate::protocol::{Frame, Message};

/// Where an answer to a waiting remote request goes: the connection's outbound channel and
/// the request id.
#[derive(Debug)]
pub(crate) struct Responder {
    tx: mpsc::UnboundedSender<Frame>,
    id: u32,
    /// The connection's count of waiting requests; this one leaves it when answered or
    /// dropped (its waiter withdrawn with the connection).
    pending: Arc<AtomicUsize>,
}

impl Responder {
    /// A waiting request of a connection whose waiting requests `pending` counts.
    pub fn new(tx: mpsc::UnboundedSender<Frame>, id: u32, pending: Arc<AtomicUsize>) -> Self {
        pending.fetch_add(1, Ordering::Relaxed);
        Responder { tx, id, pending }
    }

    pub fn send(self, message: Message) {
        // A closed channel means the connection is gone; its teardown returns any lease.
        let _ = self.tx.send(Frame {
            id: self.id,
            message,
        });
    }
}

pub(crate) fn error_message(code: ErrorCode, message: impl Into<String>) -> Message {
    Message::Error {
        code: code as u16,
        message: message.into(),
    }
}

/// State shared by a queue's host handle and its connections: the queue state behind a
/// mutex (never held across an await) and a signal that wakes host waits on any change.
#[derive(Debug)]
pub(crate) struct Core<S> {
    pub name: String,
    state: Mutex<S>,
    changed: watch::Sender<()>,
    shutdown: AtomicBool,
}

/// A source queue's shared state.
pub(crate) type SourceCore = Core<SourceState<Responder>>;
/// A sink queue's shared state.
pub(crate) type SinkCore = Core<SinkState<Responder>>;

impl<S> Core<S> {
    pub fn new(name: &str, state: S) -> Self {
        Core {
            name: name.to_string(),
            state: Mutex::new(state),
            changed: watch::channel(()).0,
            shutdown: AtomicBool::new(false),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, S> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells host waiters that something changed.
    pub fn notify(&self) {
        self.changed.send_replace(());
    }

    /// The server stopped: host waits end with `ShuttingDown`.
    pub fn shut_down(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        self.notify();
    }
}

impl SourceCore {
    /// Answers woken consumers and tells host waiters that something changed.
    pub fn finish(&self, wakes: Vec<Wake<Responder>>) {
        for wake in wakes {
            let message = match wake.handoff {
                Handoff::Items(items) => Message::Deliveries { items },
                Handoff::EndOfStream => error_message(
                    ErrorCode::EndOfStream,
                    format!("queue {:?} reached end-of-stream", self.name),
                ),
            };
            wake.waiter.send(message);
        }
        self.notify();
    }
}

/// What a host wait does once the server has shut down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnShutdown {
    /// Fail with `ShuttingDown` without looking at the state, which the shutdown disturbs
    /// (leases requeued or dead, feeds dropped): joins, and puts no consumer could take.
    Fail,
    /// Answer from the state while it can (a sink's items are still handed out), then
    /// fail.
    Drain,
}

impl<S> Core<S> {
    /// Waits until `check` gives an answer, re-checking after every change, up to
    /// `timeout` (`None`: no limit). `Ok(None)` means the timeout passed.
    async fn wait_for<R>(
        &self,
        timeout: Option<Duration>,
        on_shutdown: OnShutdown,
        mut check: impl FnMut() -> Option<R>,
    ) -> Result<Option<R>> {
        // Subscribe before the first check so that no change between them is missed.
        let mut rx = self.changed.subscribe();
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        loop {
            let shut = self.shutdown.load(Ordering::SeqCst);
            if shut && on_shutdown == OnShutdown::Fail {
                return Err(Error::ShuttingDown);
            }
            if let Some(r) = check() {
                return Ok(Some(r));
            }
            if shut {
                return Err(Error::ShuttingDown);
            }
            match deadline {
                Some(d) => {
                    if tokio::time::timeout_at(d, rx.changed()).await.is_err() {
                        if on_shutdown == OnShutdown::Fail && self.shutdown.load(Ordering::SeqCst) {
                            return Err(Error::ShuttingDown);
                        }
                        return Ok(check());
                    }
                }
                None => {
                    let _ = rx.changed().await;
                }
            }
        }
    }
}

/// How a source queue's items finished, as `join` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinReport {
    /// Items put.
    pub total: u64,
    /// Finished with `task_done`.
    pub done: u64,
    /// Finished with a failure report.
    pub failed: u64,
    /// Given up after `max_attempts` lost leases.
    pub dead: u64,
    /// Deliveries beyond each item's first (lost leases that were retried).
    pub redelivered: u64,
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The host's handle on a source queue: it puts items that remote consumers take.
///
/// Cheap to clone; every clone is the same queue.
///
/// ```
/// # async fn demo() -> hydra_queue::Result<()> {
/// use std::time::Duration;
/// use hydra_queue::{Server, ServerOptions, SourceOptions};
/// let server = Server::bind("127.0.0.1:0", ServerOptions::default()).await?;
/// let tasks = server.source::<String>("tasks", SourceOptions::default())?;
/// tasks.put(&"test_login".to_string()).await?;
/// tasks.close();
/// // ... remote consumers take the item and finish it ...
/// # let c = hydra_queue::ClientSettings::new(server.local_addr().to_string(), "w").connect().await?;
/// # let consumer = c.consumer::<String>("tasks").await?;
/// # let d = consumer.get(None).await?;
/// # consumer.task_done(d.id).await?;
/// let report = tasks.join(Some(Duration::from_secs(10))).await?;
/// assert_eq!(report.done, 1);
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Debug)]
pub struct SourceQueue<T> {
    core: Arc<SourceCore>,
    _item: PhantomData<fn(T)>,
}

impl<T> Clone for SourceQueue<T> {
    fn clone(&self) -> Self {
        SourceQueue {
            core: self.core.clone(),
            _item: PhantomData,
        }
    }
}

impl<T: Serialize> SourceQueue<T> {
    pub(crate) fn new(core: Arc<SourceCore>) -> Self {
        SourceQueue {
            core,
            _item: PhantomData,
        }
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// Puts an item, waiting while the queue is full.
    pub async fn put(&self, item: &T) -> Result<()> {
        self.put_raw(codec::encode(item)?, None).await
    }

    /// Puts an item, waiting at most `timeout` for room; [`Error::Full`] after that.
    pub async fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
        self.put_raw(codec::encode(item)?, Some(timeout)).await
    }

    /// Puts an item that consumers named `avoid` (their client's name) get only when no
    /// consumer of another name is connected: to retry a failed task on another worker.
    pub async fn put_avoiding(&self, item: &T, avoid: &str) -> Result<()> {
        self.put_raw_avoiding(codec::encode(item)?, None, Some(avoid))
            .await
    }

    /// Puts an already-encoded item (any bytes; consumers reading it with the typed API
    /// expect MessagePack).
    pub async fn put_raw(&self, payload: Bytes, timeout: Option<Duration>) -> Result<()> {
        self.put_raw_avoiding(payload, timeout, None).await
    }

    /// [`put_raw`](Self::put_raw) with an optional consumer name to avoid, as in
    /// [`put_avoiding`](Self::put_avoiding).
    pub async fn put_raw_avoiding(
        &self,
        payload: Bytes,
        timeout: Option<Duration>,
        avoid: Option<&str>,
    ) -> Result<()> {
        let core = &self.core;
        // Moved in, not cloned: cloning a `Bytes` made from a `Vec` allocates a shared
        // header, 32 bytes more per queued item.
        let mut payload = Some(payload);
        let outcome = core
            .wait_for(timeout, OnShutdown::Fail, || {
                let mut state = core.lock();
                if state.is_closed() {
                    return Some(Err(Error::Closed(core.name.clone())));
                }
                if !state.has_room() {
                    return None;
                }
                let payload = payload.take().expect("a put succeeds once");
                match state.put_avoiding(payload, avoid) {
                    Ok(wakes) => {
                        drop(state);
                        core.finish(wakes);
                        Some(Ok(()))
                    }
                    Err(PutRefused::Closed) => Some(Err(Error::Closed(core.name.clone()))),
                    Err(PutRefused::Full) => None,
                }
            })
            .await?;
        match outcome {
            Some(r) => r,
            None => Err(Error::Full {
                queue: core.name.clone(),
                waited: timeout.unwrap_or_default(),
            }),
        }
    }

    /// No more items will be put. Consumers drain what is left, then see end-of-stream.
    pub fn close(&self) {
        let wakes = self.core.lock().close();
        self.core.finish(wakes);
    }

    /// Waits until every item put so far has finished (done, failed or dead), at most
    /// `timeout` (`None`: no limit); [`Error::Timeout`] says what is still pending.
    pub async fn join(&self, timeout: Option<Duration>) -> Result<JoinReport> {
        let core = &self.core;
        // A server shutting down requeues or kills leases as it closes connections: that
        // is no reason to report the work finished.
        let report = core
            .wait_for(timeout, OnShutdown::Fail, || {
                let c = core.lock().counts();
                (c.finished() == c.put).then(|| report(&c))
            })
            .await?;
        report.ok_or_else(|| {
            let c = self.counts();
            Error::Timeout {
                queue: core.name.clone(),
                waited: timeout.unwrap_or_default(),
                pending: format!(
                    "{} of {} items unfinished ({} queued, {} leased)",
                    c.put - c.finished(),
                    c.put,
                    c.queued,
                    c.leased
                ),
            }
        })
    }

    /// Counts now.
    pub fn counts(&self) -> SourceCounts {
        self.core.lock().counts()
    }

    /// Items given up after `max_attempts` lost leases, with why.
    pub fn dead_items(&self) -> Vec<DeadItem> {
        self.core.lock().dead_items().to_vec()
    }

    /// Items that consumers reported as failed, with their reasons.
    pub fn failed_items(&self) -> Vec<FailedItem> {
        self.core.lock().failed_items().to_vec()
    }

    /// A watcher of this queue's state, for hosts that follow progress. Subscribe first,
    /// then check the state, then await [`Changes::changed`]: a change made between the
    /// check and the wait is not missed.
    ///
    /// ```
    /// # async fn demo(tasks: hydra_queue::SourceQueue<String>) {
    /// let mut changes = tasks.subscribe();
    /// while tasks.counts().done < 10 {
    ///     changes.changed().await;
    /// }
    /// # }
    /// ```
    pub fn subscribe(&self) -> Changes {
        Changes {
            rx: self.core.changed.subscribe(),
        }
    }
}

/// Follows a queue's changes (an item put, taken, finished, requeued or dead).
#[derive(Debug)]
pub struct Changes {
    rx: watch::Receiver<()>,
}

impl Changes {
    /// Resolves once the queue changed since the subscription or the previous call
    /// (at once if it already did). Never resolves after the server is dropped.
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

fn report(c: &SourceCounts) -> JoinReport {
    JoinReport {
        total: c.put,
        done: c.done,
        failed: c.failed,
        dead: c.dead,
        redelivered: c.redelivered,
    }
}

/// What a sink's `join` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkJoinReport {
    /// Feeds that registered.
    pub feeds: usize,
    /// Feeds that went away without unregistering.
    pub lost: usize,
    /// Items received.
    pub received: u64,
}

/// The host's handle on a sink queue: remote feeds put items, the host gets them.
///
/// Cheap to clone; every clone is the same queue.
#[derive(Debug)]
pub struct SinkQueue<T> {
    core: Arc<SinkCore>,
    _item: PhantomData<fn() -> T>,
}

impl<T> Clone for SinkQueue<T> {
    fn clone(&self) -> Self {
        SinkQueue {
            core: self.core.clone(),
            _item: PhantomData,
        }
    }
}

impl<T: DeserializeOwned> SinkQueue<T> {
    pub(crate) fn new(core: Arc<SinkCore>) -> Self {
        SinkQueue {
            core,
            _item: PhantomData,
        }
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// The next item in arrival order, waiting at most `timeout` (`None`: no limit).
    /// [`Error::Empty`] when nothing came in time; [`Error::EndOfStream`] once the sink is
    /// joined (or closed), every feed is gone and every item was taken.
    pub async fn get(&self, timeout: Option<Duration>) -> Result<T> {
        codec::decode(&self.get_raw(timeout).await?)
    }

    /// Like [`get`](Self::get), without decoding.
    pub async fn get_raw(&self, timeout: Option<Duration>) -> Result<Bytes> {
        let mut items = self.get_many_raw(1, timeout).await?;
        Ok(items.pop().expect("get_many_raw returns at least one item"))
    }

    /// Up to `max` items (at least one), waiting at most `timeout` for the first.
    pub async fn get_many_raw(&self, max: usize, timeout: Option<Duration>) -> Result<Vec<Bytes>> {
        let core = &self.core;
        let got = core
            .wait_for(timeout, OnShutdown::Drain, || {
                let mut state = core.lock();
                let (items, acked) = state.pop(max.max(1));
                let end = items.is_empty() && state.is_end_of_stream();
                drop(state);
                for r in acked {
                    r.send(Message::Ok);
                }
                if !items.is_empty() {
                    Some(Ok(items))
                } else if end {
                    Some(Err(Error::EndOfStream {
                        queue: core.name.clone(),
                    }))
                } else {
                    None
                }
            })
            .await?;
        match got {
            Some(r) => r,
            None => Err(Error::Empty {
                queue: core.name.clone(),
                waited: timeout.unwrap_or_default(),
            }),
        }
    }

    /// Waits until every registered feed has unregistered or been lost (and at least
    /// `expected_feeds` registered), at most `timeout`. The sink then takes no new feeds;
    /// `get` drains what is left, then returns end-of-stream.
    pub async fn join(&self, timeout: Option<Duration>) -> Result<SinkJoinReport> {
        let core = &self.core;
        // Feeds dropped by a shutdown are not feeds that finished.
        let got = core
            .wait_for(timeout, OnShutdown::Fail, || {
                let mut state = core.lock();
                if !state.is_joined() {
                    return None;
                }
                state.seal();
                let c = state.counts();
                drop(state);
                core.notify();
                Some(SinkJoinReport {
                    feeds: c.registered,
                    lost: c.lost,
                    received: c.received,
                })
            })
            .await?;
        got.ok_or_else(|| {
            let c = self.counts();
            Error::Timeout {
                queue: core.name.clone(),
                waited: timeout.unwrap_or_default(),
                pending: format!("{} feeds still registered", c.feeds),
            }
        })
    }

    /// Takes no new feeds from now on; `get` returns end-of-stream once the registered
    /// feeds are gone and their items taken.
    pub fn close(&self) {
        self.core.lock().seal();
        self.core.notify();
    }

    /// Counts now.
    pub fn counts(&self) -> SinkCounts {
        self.core.lock().counts()
    }

    /// Feeds that went away without unregistering, with why.
    pub fn lost_feeds(&self) -> Vec<(String, String)> {
        self.core.lock().lost_feeds().to_vec()
    }
}
