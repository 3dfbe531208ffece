//! The server: accept loop, limits, named queues, graceful shutdown.
//!
//! One [`Server`] listens on one port and hosts any number of named source and sink
//! queues. Each connection runs in its own task ([`handler`]); queue state lives in
//! [`source`] and [`sink`] behind a mutex, and the host's handles are in [`host`].

mod handler;
pub(crate) mod host;
mod session;
pub mod sink;
pub mod source;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::error::{Error, Result};
use crate::settings::ClientSettings;
use crate::tls::ServerTls;
pub use host::{Changes, JoinReport, SinkJoinReport, SinkQueue, SourceQueue};
use host::{SinkCore, SourceCore};
use sink::{SinkOptions, SinkState};
use source::{SourceOptions, SourceState};

/// Server settings. Every limit has a safe default.
#[derive(Clone)]
pub struct ServerOptions {
    /// A connection silent this long (no request, no heartbeat) is dropped and its leases
    /// go back to their queues. Announced to clients, which heartbeat at a third of it.
    pub lease_timeout: Duration,
    /// Largest frame body accepted (default 16 MiB).
    pub max_frame: usize,
    /// Most connections at once; more are refused with a clear error.
    pub max_connections: usize,
    /// Time to finish the TLS and protocol handshake.
    pub handshake_timeout: Duration,
    /// Longest client, queue or feed name, in bytes.
    pub max_name_len: usize,
    /// Most consumer and feed handles open on one connection.
    pub max_handles: usize,
    /// Most requests of one connection waiting at once (a `get` for an item, a `put` for
    /// room); more are answered with a `Limit` error.
    pub max_pending: usize,
    /// When set, clients must prove they know this token.
    pub token: Option<String>,
    /// When set, connections use TLS.
    pub tls: Option<ServerTls>,
    /// How long `shutdown` waits for connections to say goodbye.
    pub shutdown_grace: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            lease_timeout: Duration::from_secs(30),
            max_frame: crate::protocol::DEFAULT_MAX_FRAME,
            max_connections: 4096,
            handshake_timeout: Duration::from_secs(10),
            max_name_len: 256,
            max_handles: 64,
            max_pending: 1024,
            token: None,
            tls: None,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

impl std::fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field("lease_timeout", &self.lease_timeout)
            .field("max_frame", &self.max_frame)
            .field("max_connections", &self.max_connections)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_name_len", &self.max_name_len)
            .field("max_handles", &self.max_handles)
            .field("max_pending", &self.max_pending)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .field("shutdown_grace", &self.shutdown_grace)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub(crate) enum QueueRef {
    Source(Arc<SourceCore>),
    Sink(Arc<SinkCore>),
}

/// What every connection task shares.
pub(crate) struct Shared {
    pub options: ServerOptions,
    pub queues: Mutex<HashMap<String, QueueRef>>,
    pub next_id: AtomicU64,
    pub tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("options", &self.options)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// A running server.
///
/// ```
/// # async fn demo() -> hydra_queue::Result<()> {
/// use hydra_queue::{Server, ServerOptions, SinkOptions, SourceOptions};
/// let server = Server::bind("127.0.0.1:0", ServerOptions::default()).await?;
/// let tasks = server.source::<String>("tasks", SourceOptions::default())?;
/// let results = server.sink::<String>("results", SinkOptions::default())?;
/// println!("serving on {}", server.local_addr());
/// server.shutdown().await;
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    connections: Arc<Semaphore>,
    accept: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Binds `addr` and starts serving in the background (on the current tokio runtime).
    pub async fn bind(addr: impl ToSocketAddrs, options: ServerOptions) -> Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        Server::from_listener(listener, options)
    }

    /// Starts serving on a bound listener.
    pub fn from_listener(listener: TcpListener, options: ServerOptions) -> Result<Server> {
        let local_addr = listener.local_addr()?;
        let tls = match &options.tls {
            Some(tls) => Some(TlsAcceptor::from(tls.config()?)),
            None => None,
        };
        if !local_addr.ip().is_loopback() && tls.is_none() && options.token.is_none() {
            // On stderr rather than through tracing: a library user may have no subscriber,
            // and this must be seen.
            eprintln!(
                "hydra: WARNING: listening on {local_addr} without TLS or a token; \
                 anyone who can reach this port can use its queues"
            );
        }
        let connections = Arc::new(Semaphore::new(options.max_connections));
        let shared = Arc::new(Shared {
            options,
            queues: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            tls,
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let accept = tokio::spawn(handler::accept_loop(
            listener,
            shared.clone(),
            connections.clone(),
            shutdown_rx,
        ));
        Ok(Server {
            shared,
            local_addr,
            shutdown,
            connections,
            accept,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Settings a client on this machine needs to connect (address, token; TLS settings
    /// must be added by the caller since the server holds no client certificate).
    pub fn client_settings(&self, name: &str) -> ClientSettings {
        let mut s = ClientSettings::new(self.local_addr.to_string(), name);
        s.token = self.shared.options.token.clone();
        s
    }

    fn register(&self, name: &str, queue: QueueRef) -> Result<()> {
        if name.is_empty() || name.len() > self.shared.options.max_name_len {
            return Err(Error::Limit(format!(
                "queue name must be 1 to {} bytes",
                self.shared.options.max_name_len
            )));
        }
        let mut queues = self.shared.queues.lock().unwrap_or_else(|p| p.into_inner());
        if queues.contains_key(name) {
            return Err(Error::QueueExists(name.to_string()));
        }
        queues.insert(name.to_string(), queue);
        Ok(())
    }

    /// Creates a source queue that remote consumers can open by `name`.
    pub fn source<T: Serialize>(
        &self,
        name: &str,
        options: SourceOptions,
    ) -> Result<SourceQueue<T>> {
        let core = Arc::new(SourceCore::new(name, SourceState::new(options)));
        self.register(name, QueueRef::Source(core.clone()))?;
        Ok(SourceQueue::new(core))
    }

    /// Creates a sink queue that remote feeds can open by `name`.
    pub fn sink<T: DeserializeOwned>(
        &self,
        name: &str,
        options: SinkOptions,
    ) -> Result<SinkQueue<T>> {
        let core = Arc::new(SinkCore::new(name, SinkState::new(options)));
        self.register(name, QueueRef::Sink(core.clone()))?;
        Ok(SinkQueue::new(core))
    }

    /// Serves `stream` as one more connection, without TLS: the server side of an
    /// in-process client ([`Server::connect_local`]).
    pub(crate) fn attach<S: crate::connection::Stream>(&self, stream: S) -> Result<()> {
        let permit = self.connections.clone().try_acquire_owned().map_err(|_| {
            Error::Limit(format!(
                "too many connections (limit {})",
                self.shared.options.max_connections
            ))
        })?;
        handler::spawn_local(
            stream,
            self.local_addr,
            self.shared.clone(),
            self.shutdown.subscribe(),
            permit,
        );
        Ok(())
    }

    /// Connections open now.
    pub fn connection_count(&self) -> usize {
        self.shared.options.max_connections - self.connections.available_permits()
    }

    /// Stops accepting, tells every connected client (a `Goodbye` frame), waits up to the
    /// grace period for connections to close, and makes host-side waits return
    /// [`Error::ShuttingDown`].
    pub async fn shutdown(mut self) {
        // Queues first: the connections' teardown requeues leases and drops feeds, which
        // must not let a host's join succeed as if the work had finished.
        self.shut_down_queues();
        let _ = self.shutdown.send(true);
        let _ = (&mut self.accept).await;
        let all = self.shared.options.max_connections as u32;
        let _ = tokio::time::timeout(
            self.shared.options.shutdown_grace,
            self.connections.acquire_many(all),
        )
        .await;
    }

    fn shut_down_queues(&self) {
        let queues = self.shared.queues.lock().unwrap_or_else(|p| p.into_inner());
        for q in queues.values() {
            match q {
                QueueRef::Source(core) => core.shut_down(),
                QueueRef::Sink(core) => core.shut_down(),
            }
        }
    }
}

impl Drop for Server {
    /// A dropped server stops accepting and closes its connections, as `shutdown` does,
    /// without waiting for them.
    fn drop(&mut self) {
        self.shut_down_queues();
        let _ = self.shutdown.send(true);
    }
}
