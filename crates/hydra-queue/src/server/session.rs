//! One established connection's requests: open consumers and feeds, get, finish, put,
//! close; and the guard that gives every handle back when the connection ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::host::{error_message, Responder, SinkCore, SourceCore};
use super::sink::{FeedId, PutResult, RegisterRefused};
use super::source::{ConsumerId, GetResult};
use super::{QueueRef, Shared};
use crate::connection::{Connection, Stream};
use crate::error::{Error, ErrorCode};
use crate::protocol::{Frame, Message, WAIT_FOREVER};

/// Room left in a `Deliveries` frame for its header and per-item fields.
const FRAME_SLACK: usize = 1024;
/// Sink payloads up to this size are copied out of the read buffer, so that a few queued
/// items do not keep whole buffers alive; larger ones stay zero-copy slices.
const COPY_BELOW: usize = 4096;

enum Handle {
    Consumer {
        core: Arc<SourceCore>,
        id: ConsumerId,
    },
    Feed {
        core: Arc<SinkCore>,
        id: FeedId,
    },
}

impl Handle {
    /// Gives the handle up: a consumer's leases go back to its queue; a feed unregisters,
    /// as lost unless `closed` (the client closed it on purpose).
    fn release(self, why: &str, closed: bool) {
        match self {
            Handle::Consumer { core, id } => {
                let wakes = core.lock().remove_consumer(id, why);
                core.finish(wakes);
            }
            Handle::Feed { core, id } => {
                let lost = (!closed).then_some(why);
                let dropped = core.lock().unregister(id, lost);
                drop(dropped);
                core.notify();
            }
        }
    }
}

/// The connection's open handles; whatever is still open when the connection ends (for
/// any reason, a panic included) is released: leases requeued, feeds marked lost.
#[derive(Default)]
struct Handles {
    map: HashMap<u32, Handle>,
    why: String,
}

impl Handles {
    fn release_all(&mut self) {
        let why = if self.why.is_empty() {
            "connection ended"
        } else {
            &self.why
        };
        for (_, handle) in self.map.drain() {
            handle.release(why, false);
        }
    }
}

impl Drop for Handles {
    fn drop(&mut self) {
        self.release_all();
    }
}

pub(super) struct Session {
    shared: Arc<Shared>,
    name: String,
    tx: mpsc::UnboundedSender<Frame>,
    handles: Handles,
    next_handle: u32,
    /// Requests of this connection waiting for an item or for room.
    pending: Arc<AtomicUsize>,
}

fn ms(timeout_ms: u32) -> Option<Duration> {
    (timeout_ms != WAIT_FOREVER).then(|| Duration::from_millis(u64::from(timeout_ms)))
}

impl Session {
    pub fn new(shared: Arc<Shared>, name: String, tx: mpsc::UnboundedSender<Frame>) -> Self {
        Session {
            shared,
            name,
            tx,
            handles: Handles::default(),
            next_handle: 1,
            pending: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The connection ends: gives every handle back now (leases requeued, feeds marked
    /// lost, with `why`), before any goodbye is written to a peer that may not read it.
    pub fn ending(&mut self, why: impl Into<String>) {
        self.handles.why = why.into();
        self.handles.release_all();
    }

    /// Answers one request. An `Err` is a protocol violation that ends the connection;
    /// request-level failures are answered with an `Error` message instead.
    pub fn handle<S: Stream>(
        &mut self,
        frame: Frame,
        conn: &mut Connection<S>,
    ) -> Result<(), Error> {
        let id = frame.id;
        let reply = match frame.message {
            Message::Ping => Some(Message::Pong),
            Message::OpenConsumer { queue } => Some(self.open_consumer(&queue)),
            Message::OpenFeed { queue, name } => Some(self.open_feed(&queue, &name)),
            Message::Get {
                handle,
                max,
                timeout_ms,
            } => self.get(id, handle, max, timeout_ms),
            Message::Started { handle, delivery } => Some(self.with_consumer(
                handle,
                |core, cid| match core.lock().started(cid, delivery) {
                    Ok(()) => Message::Ok,
                    Err(d) => not_leased(core, d),
                },
            )),
            Message::Done { handle, deliveries } => {
                Some(self.with_consumer(handle, |core, cid| {
                    let (refused, wakes) = core.lock().done(cid, &deliveries);
                    core.finish(wakes);
                    Message::Acked { refused }
                }))
            }
            Message::Failed {
                handle,
                delivery,
                reason,
            } => Some(self.with_consumer(handle, |core, cid| {
                let result = core.lock().failed(cid, delivery, &reason);
                match result {
                    Ok(wakes) => {
                        core.finish(wakes);
                        Message::Ok
                    }
                    Err(d) => not_leased(core, d),
                }
            })),
            Message::Put {
                handle,
                timeout_ms,
                items,
            } => self.put(id, handle, timeout_ms, items),
            Message::CloseHandle { handle } => Some(match self.handles.map.remove(&handle) {
                Some(h) => {
                    h.release("consumer closed its handle", true);
                    Message::Ok
                }
                None => unknown_handle(handle),
            }),
            other => {
                return Err(Error::Protocol(format!(
                    "unexpected {} message from a client",
                    other.name()
                )))
            }
        };
        if let Some(message) = reply {
            conn.queue(&Frame { id, message });
        }
        Ok(())
    }

    /// Where to answer a request that must wait; `None` past `max_pending`.
    fn responder(&self, request: u32) -> Option<Responder> {
        (self.pending.load(Ordering::Relaxed) < self.shared.options.max_pending)
            .then(|| Responder::new(self.tx.clone(), request, self.pending.clone()))
    }

    fn too_many_waiting(&self) -> Message {
        error_message(
            ErrorCode::Limit,
            format!(
                "too many waiting requests on one connection (limit {})",
                self.shared.options.max_pending
            ),
        )
    }

    fn lookup(&self, queue: &str) -> Option<QueueRef> {
        let queues = self.shared.queues.lock().unwrap_or_else(|p| p.into_inner());
        queues.get(queue).cloned()
    }

    fn new_handle(&mut self, handle: Handle) -> Message {
        let h = self.next_handle;
        self.next_handle = self.next_handle.wrapping_add(1).max(1);
        self.handles.map.insert(h, handle);
        Message::Opened { handle: h }
    }

    fn check_handle_limit(&self) -> Option<Message> {
        (self.handles.map.len() >= self.shared.options.max_handles).then(|| {
            error_message(
                ErrorCode::Limit,
                format!(
                    "too many open handles on one connection (limit {})",
                    self.shared.options.max_handles
                ),
            )
        })
    }

    fn open_consumer(&mut self, queue: &str) -> Message {
        if let Some(refusal) = self.check_handle_limit() {
            return refusal;
        }
        let Some(QueueRef::Source(core)) = self.lookup(queue) else {
            return error_message(
                ErrorCode::UnknownQueue,
                format!("no source queue named {queue:?}"),
            );
        };
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        core.lock().add_consumer(id, &self.name);
        self.new_handle(Handle::Consumer { core, id })
    }

    fn open_feed(&mut self, queue: &str, name: &str) -> Message {
        if let Some(refusal) = self.check_handle_limit() {
            return refusal;
        }
        if name.is_empty() || name.len() > self.shared.options.max_name_len {
            return error_message(
                ErrorCode::Limit,
                format!(
                    "feed name must be 1 to {} bytes",
                    self.shared.options.max_name_len
                ),
            );
        }
        let Some(QueueRef::Sink(core)) = self.lookup(queue) else {
            return error_message(
                ErrorCode::UnknownQueue,
                format!("no sink queue named {queue:?}"),
            );
        };
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let registered = core.lock().register(id, name);
        match registered {
            Ok(()) => {
                core.notify();
                self.new_handle(Handle::Feed { core, id })
            }
            Err(RegisterRefused::Duplicate) => error_message(
                ErrorCode::DuplicateName,
                format!("feed name {name:?} is already registered on queue {queue:?}"),
            ),
            Err(RegisterRefused::Sealed) => error_message(
                ErrorCode::Closed,
                format!("sink queue {queue:?} takes no new feeds (closed or joined)"),
            ),
        }
    }

    fn with_consumer(
        &self,
        handle: u32,
        f: impl FnOnce(&Arc<SourceCore>, ConsumerId) -> Message,
    ) -> Message {
        match self.handles.map.get(&handle) {
            Some(Handle::Consumer { core, id }) => f(core, *id),
            _ => unknown_handle(handle),
        }
    }

    fn get(&self, request: u32, handle: u32, max: u32, timeout_ms: u32) -> Option<Message> {
        let Some(Handle::Consumer { core, id }) = self.handles.map.get(&handle) else {
            return Some(unknown_handle(handle));
        };
        let max = max.clamp(1, 65_536) as usize;
        let max_bytes = self.shared.options.max_frame.saturating_sub(FRAME_SLACK);
        let mut state = core.lock();
        match state.get(*id, max, max_bytes) {
            GetResult::Items(items) => {
                drop(state);
                core.finish(Vec::new());
                Some(Message::Deliveries { items })
            }
            GetResult::EndOfStream => Some(error_message(
                ErrorCode::EndOfStream,
                format!("queue {:?} reached end-of-stream", core.name),
            )),
            GetResult::Wait if timeout_ms == 0 => Some(empty(core, Duration::ZERO)),
            GetResult::Wait => {
                let Some(responder) = self.responder(request) else {
                    return Some(self.too_many_waiting());
                };
                let key = state.wait(*id, max, max_bytes, responder);
                drop(state);
                let core = core.clone();
                expire_after(ms(timeout_ms), move |waited| {
                    let r = core.lock().cancel_wait(key)?;
                    Some((r, empty(&core, waited)))
                });
                None
            }
        }
    }

    fn put(
        &self,
        request: u32,
        handle: u32,
        timeout_ms: u32,
        items: Vec<Bytes>,
    ) -> Option<Message> {
        let items: Vec<Bytes> = items
            .into_iter()
            .map(|b| {
                if b.len() < COPY_BELOW {
                    Bytes::copy_from_slice(&b)
                } else {
                    b
                }
            })
            .collect();
        let Some(Handle::Feed { core, id }) = self.handles.map.get(&handle) else {
            return Some(unknown_handle(handle));
        };
        let mut state = core.lock();
        match state.put(*id, &items) {
            PutResult::Accepted => {
                drop(state);
                core.notify();
                Some(Message::Ok)
            }
            PutResult::NotRegistered => Some(error_message(
                ErrorCode::Closed,
                format!("feed is no longer registered on {:?}", core.name),
            )),
            PutResult::Wait if timeout_ms == 0 => Some(full(core, Duration::ZERO)),
            PutResult::Wait => {
                let Some(responder) = self.responder(request) else {
                    return Some(self.too_many_waiting());
                };
                let key = state.wait_put(*id, items, responder);
                drop(state);
                let core = core.clone();
                expire_after(ms(timeout_ms), move |waited| {
                    let r = core.lock().cancel_put(key)?;
                    Some((r, full(&core, waited)))
                });
                None
            }
        }
    }
}

/// At the timeout of a waiting request (none: it waits without limit), `withdraw` takes it
/// out of its queue; if it was still waiting, it is answered with the message given.
fn expire_after(
    timeout: Option<Duration>,
    withdraw: impl FnOnce(Duration) -> Option<(Responder, Message)> + Send + 'static,
) {
    if let Some(timeout) = timeout {
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            if let Some((responder, answer)) = withdraw(timeout) {
                responder.send(answer);
            }
        });
    }
}

fn unknown_handle(handle: u32) -> Message {
    error_message(
        ErrorCode::UnknownHandle,
        format!("handle {handle} is not open on this connection (or is of the other kind)"),
    )
}

fn not_leased(core: &SourceCore, delivery: u64) -> Message {
    error_message(
        ErrorCode::NotLeased,
        format!(
            "delivery {delivery} on queue {:?} is not leased to this consumer",
            core.name
        ),
    )
}

fn empty(core: &SourceCore, waited: Duration) -> Message {
    error_message(
        ErrorCode::Empty,
        format!("queue {:?} is empty after {waited:?}", core.name),
    )
}

fn full(core: &SinkCore, waited: Duration) -> Message {
    error_message(
        ErrorCode::Full,
        format!("queue {:?} is full after {waited:?}", core.name),
    )
}
