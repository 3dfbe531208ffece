//! One task per connection: handshake, then read requests, answer them, and write
//! whatever other tasks hand it (deliveries to a waiting `get`, acknowledgements of a
//! waiting `put`), all in one loop so that answers are batched into few writes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::host::{error_message, Responder, SinkCore, SourceCore};
use super::sink::{FeedId, PutResult, RegisterRefused};
use super::source::{ConsumerId, GetResult};
use super::{QueueRef, Shared};
use crate::auth;
use crate::connection::{Connection, Stream};
use crate::error::{Error, ErrorCode};
use crate::protocol::{Frame, Message, MAGIC, NONCE_LEN, VERSION, WAIT_FOREVER};

/// Room left in a `Deliveries` frame for its header and per-item fields.
const FRAME_SLACK: usize = 1024;
/// Largest frame accepted before the handshake succeeds: an unauthenticated peer cannot
/// make the server buffer more than this.
const HANDSHAKE_MAX_FRAME: usize = 64 * 1024;

pub(super) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    connections: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = until_shutdown(&mut shutdown) => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        match connections.clone().try_acquire_owned() {
            Ok(permit) => {
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    serve(stream, peer, shared, shutdown, permit).await;
                });
            }
            Err(_) => {
                tracing::warn!("refusing {peer}: connection limit reached");
                tokio::spawn(refuse(stream, shared));
            }
        }
    }
}

async fn until_shutdown(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Tells a connection over the limit why it is refused (plain TCP only; a TLS client just
/// sees the connection close).
async fn refuse(stream: TcpStream, shared: Arc<Shared>) {
    if shared.tls.is_some() {
        return;
    }
    let mut conn = Connection::new(stream, shared.options.max_frame);
    let goodbye = Frame {
        id: 0,
        message: Message::Goodbye {
            code: ErrorCode::Limit as u16,
            reason: format!(
                "too many connections (limit {})",
                shared.options.max_connections
            ),
        },
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), conn.write_frame(&goodbye)).await;
}

/// Serves an in-process connection (see `Server::connect_local`): no TLS, same protocol.
pub(super) fn spawn_local<S: Stream>(
    stream: S,
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    permit: OwnedSemaphorePermit,
) {
    tokio::spawn(async move {
        let _permit = permit;
        let conn = Connection::new(stream, shared.options.max_frame);
        if let Err(e) = run(conn, peer, shared, shutdown).await {
            tracing::info!("in-process connection ended: {e}");
        }
    });
}

async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let max_frame = shared.options.max_frame;
    let result = match shared.tls.clone() {
        Some(acceptor) => {
            match tokio::time::timeout(shared.options.handshake_timeout, acceptor.accept(stream))
                .await
            {
                Ok(Ok(tls)) => run(Connection::new(tls, max_frame), peer, shared, shutdown).await,
                Ok(Err(e)) => Err(Error::Tls(format!("handshake with {peer} failed: {e}"))),
                Err(_) => Err(Error::Limit(format!(
                    "{peer} did not finish the TLS handshake within {:?}",
                    shared.options.handshake_timeout
                ))),
            }
        }
        None => run(Connection::new(stream, max_frame), peer, shared, shutdown).await,
    };
    match result {
        Ok(()) => tracing::debug!("connection from {peer} closed"),
        Err(e) => tracing::info!("connection from {peer} ended: {e}"),
    }
}

async fn run<S: Stream>(
    mut conn: Connection<S>,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let options = &shared.options;
    conn.set_max_frame(HANDSHAKE_MAX_FRAME.min(options.max_frame));
    let name = match tokio::time::timeout(options.handshake_timeout, handshake(&mut conn, &shared))
        .await
    {
        Ok(Ok(name)) => name,
        Ok(Err(e)) => {
            let _ = conn.flush().await;
            return Err(e);
        }
        Err(_) => {
            let _ = goodbye(
                &mut conn,
                ErrorCode::Limit,
                format!(
                    "handshake not finished within {:?}",
                    options.handshake_timeout
                ),
            )
            .await;
            return Err(Error::Limit(format!("{peer}: handshake timeout")));
        }
    };
    tracing::debug!("{peer} connected as {name:?}");
    conn.set_max_frame(options.max_frame);

    let (tx, mut rx) = mpsc::unbounded_channel::<Frame>();
    let mut session = Session {
        shared: shared.clone(),
        name,
        tx,
        handles: Handles::default(),
        next_handle: 1,
        pending: Arc::new(AtomicUsize::new(0)),
    };
    let idle = options.lease_timeout;
    let mut deadline = Instant::now() + idle;
    loop {
        tokio::select! {
            biased;
            _ = until_shutdown(&mut shutdown) => {
                session.handles.why = "server shut down".into();
                let _ = goodbye(&mut conn, ErrorCode::ShuttingDown, "server is shutting down").await;
                return Ok(());
            }
            Some(frame) = rx.recv() => {
                conn.queue(&frame);
            }
            read = conn.read_frame() => match read {
                Ok(Some(frame)) => {
                    deadline = Instant::now() + idle;
                    let mut next = Some(frame);
                    while let Some(frame) = next {
                        if let Err(e) = session.handle(frame, &mut conn) {
                            session.handles.why = format!("protocol error: {e}");
                            let _ = goodbye(&mut conn, ErrorCode::Protocol, e.to_string()).await;
                            return Err(e);
                        }
                        next = match conn.try_frame() {
                            Ok(f) => f,
                            Err(e) => {
                                session.handles.why = format!("bad frame: {e}");
                                let _ = goodbye(&mut conn, ErrorCode::Protocol, e.to_string()).await;
                                return Err(e);
                            }
                        };
                    }
                }
                Ok(None) => {
                    session.handles.why = "connection closed".into();
                    return Ok(());
                }
                Err(e) => {
                    session.handles.why = format!("connection broken: {e}");
                    let _ = goodbye(&mut conn, ErrorCode::Protocol, e.to_string()).await;
                    return Err(e);
                }
            },
            _ = tokio::time::sleep_until(deadline) => {
                let why = format!("no request or heartbeat for {idle:?} (lease timeout)");
                session.handles.why = why.clone();
                let _ = goodbye(&mut conn, ErrorCode::Limit, why.clone()).await;
                return Err(Error::Limit(format!("{peer}: {why}")));
            }
        }
        while let Ok(frame) = rx.try_recv() {
            conn.queue(&frame);
        }
        if conn.has_pending_writes() {
            match tokio::time::timeout(idle, conn.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    session.handles.why = format!("write failed: {e}");
                    return Err(e);
                }
                Err(_) => {
                    session.handles.why = "client stopped reading".into();
                    return Err(Error::Limit(format!("{peer} stopped reading for {idle:?}")));
                }
            }
        }
    }
}

async fn goodbye<S: Stream>(
    conn: &mut Connection<S>,
    code: ErrorCode,
    reason: impl Into<String>,
) -> Result<(), Error> {
    conn.queue(&Frame {
        id: 0,
        message: Message::Goodbye {
            code: code as u16,
            reason: reason.into(),
        },
    });
    let r = tokio::time::timeout(Duration::from_secs(1), conn.flush()).await;
    conn.shutdown().await;
    r.map_err(|_| Error::Limit("goodbye not written in time".into()))?
}

/// Runs the protocol handshake; returns the client's name.
async fn handshake<S: Stream>(conn: &mut Connection<S>, shared: &Shared) -> Result<String, Error> {
    let refuse = |conn: &mut Connection<S>, code: ErrorCode, msg: String| {
        conn.queue(&Frame {
            id: 0,
            message: Message::Goodbye {
                code: code as u16,
                reason: msg.clone(),
            },
        });
        match code {
            ErrorCode::Auth => Error::Auth(msg),
            ErrorCode::UnsupportedVersion => Error::UnsupportedVersion(msg),
            ErrorCode::Limit => Error::Limit(msg),
            _ => Error::Protocol(msg),
        }
    };
    let frame = match conn.read_frame().await {
        Ok(Some(frame)) => frame,
        Ok(None) => return Err(Error::Protocol("connection closed before Hello".into())),
        // Tell a peer that sent garbage why it is dropped (it may be a misconfigured client).
        Err(Error::Protocol(m)) => return Err(refuse(conn, ErrorCode::Protocol, m)),
        Err(e) => return Err(e),
    };
    let Message::Hello {
        magic,
        min_version,
        max_version,
        name,
    } = frame.message
    else {
        let m = format!("expected Hello, got {}", frame.message.name());
        return Err(refuse(conn, ErrorCode::Protocol, m));
    };
    if magic != MAGIC {
        return Err(refuse(
            conn,
            ErrorCode::Protocol,
            "bad magic in Hello".into(),
        ));
    }
    if !(min_version..=max_version).contains(&VERSION) {
        let m = format!(
            "client speaks versions {min_version}..={max_version}, server speaks {VERSION}"
        );
        return Err(refuse(conn, ErrorCode::UnsupportedVersion, m));
    }
    if name.len() > shared.options.max_name_len {
        let m = format!(
            "client name longer than {} bytes",
            shared.options.max_name_len
        );
        return Err(refuse(conn, ErrorCode::Limit, m));
    }
    let server_nonce = auth::nonce();
    conn.write_frame(&Frame {
        id: frame.id,
        message: Message::Challenge {
            version: VERSION,
            token_required: shared.options.token.is_some(),
            idle_timeout_ms: u32::try_from(shared.options.lease_timeout.as_millis())
                .unwrap_or(u32::MAX),
            nonce: server_nonce,
        },
    })
    .await?;
    let frame = match conn.read_frame().await {
        Ok(Some(frame)) => frame,
        Ok(None) => return Err(Error::Protocol("connection closed before Auth".into())),
        // Tell a peer that sent garbage why it is dropped (it may be a misconfigured client).
        Err(Error::Protocol(m)) => return Err(refuse(conn, ErrorCode::Protocol, m)),
        Err(e) => return Err(e),
    };
    let Message::Auth { nonce, proof } = frame.message else {
        let m = format!("expected Auth, got {}", frame.message.name());
        return Err(refuse(conn, ErrorCode::Protocol, m));
    };
    let server_proof = match &shared.options.token {
        Some(token) => {
            if !auth::verify_client(token.as_bytes(), &server_nonce, &nonce, &name, &proof) {
                return Err(refuse(
                    conn,
                    ErrorCode::Auth,
                    "wrong or missing token".into(),
                ));
            }
            auth::server_proof(token.as_bytes(), &server_nonce, &nonce)
        }
        None => [0; NONCE_LEN],
    };
    conn.write_frame(&Frame {
        id: frame.id,
        message: Message::Welcome {
            connection_id: shared.next_id.fetch_add(1, Ordering::Relaxed),
            proof: server_proof,
        },
    })
    .await?;
    Ok(name)
}

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

impl Drop for Handles {
    fn drop(&mut self) {
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

struct Session {
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
    /// Answers one request. An `Err` is a protocol violation that ends the connection;
    /// request-level failures are answered with an `Error` message instead.
    fn handle<S: Stream>(&mut self, frame: Frame, conn: &mut Connection<S>) -> Result<(), Error> {
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
                if let Some(timeout) = ms(timeout_ms) {
                    let core = core.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(timeout).await;
                        let cancelled = core.lock().cancel_wait(key);
                        if let Some(r) = cancelled {
                            r.send(empty(&core, timeout));
                        }
                    });
                }
                None
            }
        }
    }

    fn put(
        &self,
        request: u32,
        handle: u32,
        timeout_ms: u32,
        items: Vec<bytes::Bytes>,
    ) -> Option<Message> {
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
                if let Some(timeout) = ms(timeout_ms) {
                    let core = core.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(timeout).await;
                        let cancelled = core.lock().cancel_put(key);
                        if let Some(r) = cancelled {
                            r.send(full(&core, timeout));
                        }
                    });
                }
                None
            }
        }
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
