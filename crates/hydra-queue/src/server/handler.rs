//! One task per connection: handshake, then read requests, answer them, and write
//! whatever other tasks hand it (deliveries to a waiting `get`, acknowledgements of a
//! waiting `put`), all in one loop so that answers are batched into few writes.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::session::Session;
use super::Shared;
use crate::auth;
use crate::connection::{Connection, Stream};
use crate::error::{Error, ErrorCode};
use crate::protocol::{Frame, Message, MAGIC, NONCE_LEN, VERSION};

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
    let mut session = Session::new(shared.clone(), name, tx);
    let idle = options.lease_timeout;
    let mut deadline = Instant::now() + idle;
    loop {
        tokio::select! {
            biased;
            _ = until_shutdown(&mut shutdown) => {
                session.ending("server shut down");
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
                            session.ending(format!("protocol error: {e}"));
                            let _ = goodbye(&mut conn, ErrorCode::Protocol, e.to_string()).await;
                            return Err(e);
                        }
                        next = match conn.try_frame() {
                            Ok(f) => f,
                            Err(e) => {
                                session.ending(format!("bad frame: {e}"));
                                let _ = goodbye(&mut conn, ErrorCode::Protocol, e.to_string()).await;
                                return Err(e);
                            }
                        };
                    }
                }
                Ok(None) => {
                    session.ending("connection closed");
                    return Ok(());
                }
                Err(e) => {
                    session.ending(format!("connection broken: {e}"));
                    let _ = goodbye(&mut conn, ErrorCode::Protocol, e.to_string()).await;
                    return Err(e);
                }
            },
            _ = tokio::time::sleep_until(deadline) => {
                let why = format!("no request or heartbeat for {idle:?} (lease timeout)");
                session.ending(why.clone());
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
                    session.ending(format!("write failed: {e}"));
                    return Err(e);
                }
                Err(_) => {
                    session.ending("client stopped reading");
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
