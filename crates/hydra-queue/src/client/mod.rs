//! The async client: one persistent connection per [`Client`], multiplexing any number of
//! consumers and feeds; requests carry ids so a waiting `get` never stalls the others.
//!
//! A background task owns the connection: it writes queued requests in batches, routes
//! answers to their callers, and sends heartbeats on its own.

mod consumer;
mod feed;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

pub use consumer::{Consumer, Delivery};
pub use feed::Feed;

use crate::auth;
use crate::connection::{Connection, Stream};
use crate::error::{Error, ErrorCode, Result};
use crate::protocol::{Frame, Message, MAGIC, NONCE_LEN, VERSION, WAIT_FOREVER};
use crate::settings::{ClientSettings, Heartbeat, QueueSettings};

type Reply = oneshot::Sender<Result<Message>>;

struct Outgoing {
    message: Message,
    reply: Option<Reply>,
}

/// Why the connection ended, kept to explain every later failure.
#[derive(Debug, Clone)]
enum Ended {
    ShuttingDown,
    Lost(String),
}

#[derive(Debug)]
struct Inner {
    tx: mpsc::UnboundedSender<Outgoing>,
    name: String,
    addr: String,
    ended: Arc<Mutex<Option<Ended>>>,
}

/// A connection to a Hydra server. Cheap to clone; clones share the connection, which
/// closes when the last clone (and every consumer and feed made from it) is dropped.
///
/// ```no_run
/// # async fn demo() -> hydra_queue::Result<()> {
/// use hydra_queue::ClientSettings;
/// let client = ClientSettings::new("127.0.0.1:7878", "worker").connect().await?;
/// let tasks = client.consumer::<String>("tasks").await?;
/// while let Ok(task) = tasks.get(None).await {
///     tasks.task_started(task.id).await?;
///     println!("running {}", task.item);
///     tasks.task_done(task.id).await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl ClientSettings {
    /// Connects with these settings (the name as it is; see [`ClientSettings::unique`]).
    pub async fn connect(&self) -> Result<Client> {
        Client::connect(self).await
    }
}

impl QueueSettings {
    /// Connects (with a unique name) and opens a consumer of this source queue.
    pub async fn consumer<T: serde::de::DeserializeOwned>(&self) -> Result<Consumer<T>> {
        let client = self.client.unique().connect().await?;
        client.consumer(&self.queue).await
    }

    /// Connects (with a unique name) and opens a feed of this sink queue, named like the
    /// connection.
    pub async fn feed<T: serde::Serialize>(&self) -> Result<Feed<T>> {
        let client = self.client.unique().connect().await?;
        let name = client.name().to_string();
        client.feed(&self.queue, &name).await
    }
}

impl Client {
    /// Connects and runs the handshake (TLS, version, token), within the settings'
    /// connect timeout.
    pub async fn connect(settings: &ClientSettings) -> Result<Client> {
        let addr = settings.addr.clone();
        let timeout = settings.connect_timeout;
        match tokio::time::timeout(timeout, Self::connect_inner(settings)).await {
            Ok(r) => r,
            Err(_) => Err(Error::Connect {
                addr,
                source: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {timeout:?}"),
                ),
            }),
        }
    }

    async fn connect_inner(settings: &ClientSettings) -> Result<Client> {
        let addr = &settings.addr;
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| Error::Connect {
                addr: addr.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        match &settings.tls {
            Some(tls) => {
                let connector = TlsConnector::from(tls.config()?);
                let stream = connector
                    .connect(tls.server_name(addr)?, tcp)
                    .await
                    .map_err(|e| crate::tls::connect_error(addr, e))?;
                Self::start(Connection::new(stream, settings.max_frame), settings).await
            }
            None => Self::start(Connection::new(tcp, settings.max_frame), settings).await,
        }
    }

    /// Runs the handshake over an already-open stream (an in-process connection).
    pub(crate) async fn over<S: Stream>(stream: S, settings: &ClientSettings) -> Result<Client> {
        Self::start(Connection::new(stream, settings.max_frame), settings).await
    }

    async fn start<S: Stream>(
        mut conn: Connection<S>,
        settings: &ClientSettings,
    ) -> Result<Client> {
        let addr = settings.addr.clone();
        conn.write_frame(&Frame {
            id: 1,
            message: Message::Hello {
                magic: MAGIC,
                min_version: VERSION,
                max_version: VERSION,
                name: settings.name.clone(),
            },
        })
        .await
        .map_err(|e| handshake_io(&addr, e))?;
        let (token_required, idle_ms, server_nonce) = match handshake_read(&mut conn, &addr).await?
        {
            Message::Challenge { version, .. } if version != VERSION => {
                return Err(Error::UnsupportedVersion(format!(
                    "server {addr} chose protocol version {version}, this client speaks {VERSION}"
                )))
            }
            Message::Challenge {
                token_required,
                idle_timeout_ms,
                nonce,
                ..
            } => (token_required, idle_timeout_ms, nonce),
            other => return Err(unexpected(&addr, &other)),
        };
        let token = settings.token.as_deref().map(str::as_bytes);
        let client_nonce = auth::nonce();
        let proof = match (token_required, token) {
            (true, Some(token)) => {
                auth::client_proof(token, &server_nonce, &client_nonce, &settings.name)
            }
            (true, None) => {
                return Err(Error::Auth(format!(
                    "server {addr} requires a token and none was given"
                )))
            }
            (false, Some(_)) => {
                return Err(Error::Auth(format!(
                    "a token was given but server {addr} does not ask for one; refusing to trust it"
                )))
            }
            (false, None) => [0; NONCE_LEN],
        };
        conn.write_frame(&Frame {
            id: 2,
            message: Message::Auth {
                nonce: client_nonce,
                proof,
            },
        })
        .await
        .map_err(|e| handshake_io(&addr, e))?;
        match handshake_read(&mut conn, &addr).await? {
            Message::Welcome { proof, .. } => {
                if let Some(token) = token {
                    if !auth::verify_server(token, &server_nonce, &client_nonce, &proof) {
                        return Err(Error::Auth(format!(
                            "server {addr} could not prove it knows the token"
                        )));
                    }
                }
            }
            other => return Err(unexpected(&addr, &other)),
        }

        let server_idle = Duration::from_millis(u64::from(idle_ms.max(1)));
        let heartbeat = match settings.heartbeat {
            Heartbeat::Auto => Some(server_idle / 3),
            Heartbeat::Every(d) => Some(d.max(Duration::from_millis(1))),
            Heartbeat::Off => None,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let ended = Arc::new(Mutex::new(None));
        let task = Task {
            rx,
            pending: HashMap::new(),
            next_id: 1,
            heartbeat,
            server_idle,
            ended: ended.clone(),
            addr: addr.clone(),
        };
        tokio::spawn(task.run(conn));
        Ok(Client {
            inner: Arc::new(Inner {
                tx,
                name: settings.name.clone(),
                addr,
                ended,
            }),
        })
    }

    /// The name this client connected with.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The server's address.
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// Opens a consumer of the source queue `queue`.
    pub async fn consumer<T: serde::de::DeserializeOwned>(
        &self,
        queue: &str,
    ) -> Result<Consumer<T>> {
        let reply = self
            .request(Message::OpenConsumer {
                queue: queue.to_string(),
            })
            .await;
        match self.check(reply, queue)? {
            Message::Opened { handle } => Ok(Consumer::new(self.clone(), handle, queue)),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Registers a feed named `name` on the sink queue `queue`.
    pub async fn feed<T: serde::Serialize>(&self, queue: &str, name: &str) -> Result<Feed<T>> {
        let reply = self
            .request(Message::OpenFeed {
                queue: queue.to_string(),
                name: name.to_string(),
            })
            .await;
        match self.check(reply, queue) {
            Ok(Message::Opened { handle }) => Ok(Feed::new(self.clone(), handle, queue)),
            Ok(other) => Err(self.unexpected(&other)),
            Err(Error::Server { code, .. }) if code == ErrorCode::DuplicateName as u16 => {
                Err(Error::DuplicateName {
                    queue: queue.to_string(),
                    name: name.to_string(),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// One round trip to the server; returns how long it took.
    pub async fn ping(&self) -> Result<Duration> {
        let start = Instant::now();
        let reply = self.request(Message::Ping).await;
        self.check(reply, "")?;
        Ok(start.elapsed())
    }

    /// Queues a request for the connection task and returns where its answer will come;
    /// requests queued back to back go out in one write.
    pub(crate) fn send(&self, message: Message) -> oneshot::Receiver<Result<Message>> {
        let (reply, rx) = oneshot::channel();
        // A closed channel drops `reply`, which the caller sees as a lost connection.
        let _ = self.inner.tx.send(Outgoing {
            message,
            reply: Some(reply),
        });
        rx
    }

    /// Queues a request whose answer nobody waits for.
    pub(crate) fn send_and_forget(&self, message: Message) {
        let _ = self.inner.tx.send(Outgoing {
            message,
            reply: None,
        });
    }

    pub(crate) async fn request(&self, message: Message) -> Result<Message> {
        self.receive(self.send(message)).await
    }

    pub(crate) async fn receive(&self, rx: oneshot::Receiver<Result<Message>>) -> Result<Message> {
        match rx.await {
            Ok(r) => r,
            Err(_) => Err(self.ended_error()),
        }
    }

    fn ended_error(&self) -> Error {
        let ended = self
            .inner
            .ended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        ended_to_error(&self.inner.addr, ended)
    }

    /// Turns an `Error` answer into the matching [`Error`], with `queue` for context.
    pub(crate) fn check(&self, reply: Result<Message>, queue: &str) -> Result<Message> {
        match reply? {
            Message::Error { code, message } => Err(wire_error(code, message, queue)),
            other => Ok(other),
        }
    }

    pub(crate) fn unexpected(&self, message: &Message) -> Error {
        unexpected(&self.inner.addr, message)
    }
}

/// A consumer's or feed's handle on its connection: closed on purpose with
/// [`close`](Self::close), or by `Drop` without waiting for the answer.
#[derive(Debug)]
pub(crate) struct OpenHandle {
    pub client: Client,
    pub handle: u32,
    pub queue: String,
    closed: bool,
}

impl OpenHandle {
    pub fn new(client: Client, handle: u32, queue: &str) -> Self {
        OpenHandle {
            client,
            handle,
            queue: queue.to_string(),
            closed: false,
        }
    }

    /// Sends `CloseHandle` and waits for the server's answer.
    pub async fn close(mut self) -> Result<()> {
        self.closed = true;
        let reply = self
            .client
            .request(Message::CloseHandle {
                handle: self.handle,
            })
            .await;
        match self.client.check(reply, &self.queue)? {
            Message::Ok => Ok(()),
            other => Err(self.client.unexpected(&other)),
        }
    }
}

impl Drop for OpenHandle {
    fn drop(&mut self) {
        if !self.closed {
            self.client.send_and_forget(Message::CloseHandle {
                handle: self.handle,
            });
        }
    }
}

fn ended_to_error(addr: &str, ended: Option<Ended>) -> Error {
    match ended {
        Some(Ended::ShuttingDown) => Error::ShuttingDown,
        Some(Ended::Lost(reason)) => Error::ConnectionLost {
            addr: addr.to_string(),
            reason,
        },
        None => Error::ConnectionLost {
            addr: addr.to_string(),
            reason: "connection task ended".into(),
        },
    }
}

pub(crate) fn wire_timeout(timeout: Option<Duration>) -> u32 {
    match timeout {
        None => WAIT_FOREVER,
        Some(d) => u32::try_from(d.as_millis())
            .unwrap_or(WAIT_FOREVER - 1)
            .min(WAIT_FOREVER - 1),
    }
}

/// Maps a wire error to the crate's error type.
pub(crate) fn wire_error(code: u16, message: String, queue: &str) -> Error {
    let queue = queue.to_string();
    match ErrorCode::from_u16(code) {
        Some(ErrorCode::EndOfStream) => Error::EndOfStream { queue },
        Some(ErrorCode::UnknownQueue) => Error::UnknownQueue(message),
        Some(ErrorCode::Closed) => Error::Closed(message),
        Some(ErrorCode::Protocol) => Error::Protocol(message),
        Some(ErrorCode::UnsupportedVersion) => Error::UnsupportedVersion(message),
        Some(ErrorCode::Auth) => Error::Auth(message),
        Some(ErrorCode::Limit) => Error::Limit(message),
        Some(ErrorCode::ShuttingDown) => Error::ShuttingDown,
        // Empty, Full, NotLeased and DuplicateName carry details the caller fills in.
        _ => Error::Server { code, message },
    }
}

fn unexpected(addr: &str, message: &Message) -> Error {
    match message {
        Message::Goodbye { code, reason }
        | Message::Error {
            code,
            message: reason,
        } => wire_error(
            *code,
            format!("server {addr} refused the connection: {reason}"),
            "",
        ),
        other => Error::Protocol(format!("unexpected {} message from {addr}", other.name())),
    }
}

async fn handshake_read<S: Stream>(conn: &mut Connection<S>, addr: &str) -> Result<Message> {
    match conn.read_frame().await {
        Ok(Some(frame)) => Ok(frame.message),
        Ok(None) => Err(Error::ConnectionLost {
            addr: addr.to_string(),
            reason: "server closed the connection during the handshake (does it expect TLS, \
                     or refuse this client?)"
                .into(),
        }),
        Err(Error::Protocol(e)) => Err(Error::Protocol(format!(
            "unexpected answer from {addr} during the handshake ({e}); is the server using TLS?"
        ))),
        Err(e) => Err(handshake_io(addr, e)),
    }
}

/// An I/O error in the middle of the handshake: a TLS alert (a refused client certificate)
/// is a TLS error; anything else means the server went away.
fn handshake_io(addr: &str, e: Error) -> Error {
    match e {
        Error::Io(io) => crate::tls::refusal(addr, &io).unwrap_or_else(|| Error::ConnectionLost {
            addr: addr.to_string(),
            reason: format!("during the handshake: {io}"),
        }),
        other => other,
    }
}

/// The connection task.
struct Task {
    rx: mpsc::UnboundedReceiver<Outgoing>,
    pending: HashMap<u32, Reply>,
    next_id: u32,
    heartbeat: Option<Duration>,
    server_idle: Duration,
    ended: Arc<Mutex<Option<Ended>>>,
    addr: String,
}

impl Task {
    async fn run<S: Stream>(mut self, mut conn: Connection<S>) {
        let ended = self.serve(&mut conn).await;
        conn.shutdown().await;
        *self.ended.lock().unwrap_or_else(|p| p.into_inner()) = Some(ended.clone());
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(ended_to_error(&self.addr, Some(ended.clone()))));
        }
    }

    fn queue<S: Stream>(&mut self, conn: &mut Connection<S>, out: Outgoing) {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        if let Some(reply) = out.reply {
            self.pending.insert(id, reply);
        }
        conn.queue(&Frame {
            id,
            message: out.message,
        });
    }

    fn dispatch(&mut self, frame: Frame) -> Option<Ended> {
        if frame.id == 0 {
            return match frame.message {
                Message::Goodbye { code, .. } if code == ErrorCode::ShuttingDown as u16 => {
                    Some(Ended::ShuttingDown)
                }
                Message::Goodbye { reason, .. } => {
                    Some(Ended::Lost(format!("server said goodbye: {reason}")))
                }
                _ => None, // Pong to a heartbeat.
            };
        }
        if let Some(reply) = self.pending.remove(&frame.id) {
            let _ = reply.send(Ok(frame.message));
        }
        None
    }

    async fn serve<S: Stream>(&mut self, conn: &mut Connection<S>) -> Ended {
        let far = Duration::from_secs(365 * 24 * 3600);
        let beat = self.heartbeat.unwrap_or(far);
        let mut next_beat = Instant::now() + beat;
        // The server answers every heartbeat: silence for a lease timeout (plus one beat,
        // for a client that beats slower than the server expects) means it is gone.
        let silent = self.server_idle + self.heartbeat.unwrap_or_default();
        let mut silent_deadline = Instant::now() + silent;
        loop {
            tokio::select! {
                biased;
                out = self.rx.recv() => match out {
                    Some(out) => {
                        self.queue(conn, out);
                        while let Ok(out) = self.rx.try_recv() {
                            self.queue(conn, out);
                        }
                    }
                    None => return Ended::Lost("client closed".into()),
                },
                read = conn.read_frame() => match read {
                    Ok(Some(frame)) => {
                        silent_deadline = Instant::now() + silent;
                        let mut next = Some(frame);
                        while let Some(frame) = next {
                            if let Some(ended) = self.dispatch(frame) {
                                return ended;
                            }
                            next = match conn.try_frame() {
                                Ok(f) => f,
                                Err(e) => return Ended::Lost(e.to_string()),
                            };
                        }
                    }
                    Ok(None) => return Ended::Lost("server closed the connection".into()),
                    Err(e) => return Ended::Lost(e.to_string()),
                },
                _ = tokio::time::sleep_until(next_beat), if self.heartbeat.is_some() => {
                    next_beat = Instant::now() + beat;
                    conn.queue(&Frame { id: 0, message: Message::Ping });
                }
                _ = tokio::time::sleep_until(silent_deadline), if self.heartbeat.is_some() => {
                    return Ended::Lost(format!("server silent for {silent:?}"));
                }
            }
            if conn.has_pending_writes() {
                if let Err(e) = conn.flush().await {
                    return Ended::Lost(format!("write failed: {e}"));
                }
            }
        }
    }
}
