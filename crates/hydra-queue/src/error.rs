//! The crate's one error type, and the wire error codes it maps to and from.

use std::time::Duration;

/// Every failure the library reports.
///
/// Messages are lowercase and say what happened and where, so they can be shown to a user
/// as they are.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `get` found nothing within its timeout. The queue may still receive items.
    #[error("queue {queue:?} is empty: nothing arrived within {waited:?}")]
    Empty {
        /// Queue name.
        queue: String,
        /// How long the caller waited.
        waited: Duration,
    },
    /// `put` found no room within its timeout.
    #[error("queue {queue:?} is full: no room within {waited:?}")]
    Full {
        /// Queue name.
        queue: String,
        /// How long the caller waited.
        waited: Duration,
    },
    /// A `join` did not complete within its timeout.
    #[error("join on queue {queue:?} timed out after {waited:?}: {pending}")]
    Timeout {
        /// Queue name.
        queue: String,
        /// How long the caller waited.
        waited: Duration,
        /// What was still pending, for example "3 of 20 items unfinished".
        pending: String,
    },
    /// The queue is closed and nothing can come any more.
    #[error("queue {queue:?} reached end-of-stream")]
    EndOfStream {
        /// Queue name.
        queue: String,
    },
    /// A delivery id that is not leased to this consumer: unknown, already finished, or
    /// requeued after the lease was lost. Nothing was changed.
    #[error("delivery {delivery} on queue {queue:?} is not leased to this consumer (unknown, already finished, or requeued after a lost lease)")]
    NotLeased {
        /// Queue name.
        queue: String,
        /// The refused delivery id.
        delivery: u64,
    },
    /// A sink feed name that is already registered.
    #[error("feed name {name:?} is already registered on queue {queue:?}")]
    DuplicateName {
        /// Queue name.
        queue: String,
        /// The duplicate feed name.
        name: String,
    },
    /// A queue name that the server does not host (or hosts as the other kind).
    #[error("no such queue: {0}")]
    UnknownQueue(String),
    /// A queue that the host already created.
    #[error("queue {0:?} already exists on this server")]
    QueueExists(String),
    /// The queue was closed to new items or new feeds.
    #[error("queue {0:?} is closed")]
    Closed(String),
    /// The peer broke the protocol (bad frame, unknown message, oversized frame...).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The peer speaks a protocol version this build does not.
    #[error("unsupported protocol version: {0}")]
    UnsupportedVersion(String),
    /// Authentication failed (wrong or missing token, or the server could not prove it
    /// knows the token).
    #[error("authentication failed: {0}")]
    Auth(String),
    /// TLS configuration or handshake failure.
    #[error("tls: {0}")]
    Tls(String),
    /// A server limit was exceeded (connections, frame size, name length, handles...).
    #[error("limit exceeded: {0}")]
    Limit(String),
    /// Connecting to the server failed.
    #[error("failed to connect to {addr}: {source}")]
    Connect {
        /// The address that was dialled.
        addr: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The connection to the server was lost; requests in flight have unknown outcome.
    #[error("connection to {addr} lost: {reason}")]
    ConnectionLost {
        /// The server's address.
        addr: String,
        /// Why, as far as is known.
        reason: String,
    },
    /// The server is shutting down.
    #[error("server is shutting down")]
    ShuttingDown,
    /// An item could not be encoded or decoded with the typed API's encoding (MessagePack).
    #[error("failed to {action} item: {message}")]
    Codec {
        /// "encode" or "decode".
        action: &'static str,
        /// What the encoder said.
        message: String,
    },
    /// A local I/O error.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The server answered with an error this build does not know.
    #[error("server error {code}: {message}")]
    Server {
        /// The wire code.
        code: u16,
        /// The server's message.
        message: String,
    },
}

/// Shorthand for `std::result::Result<T, hydra_queue::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Wire codes of [`Error`]s, as listed in `docs/PROTOCOL.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
#[allow(missing_docs)]
pub enum ErrorCode {
    Empty = 1,
    Full = 2,
    EndOfStream = 3,
    NotLeased = 4,
    DuplicateName = 5,
    UnknownQueue = 6,
    UnknownHandle = 7,
    Closed = 8,
    Protocol = 9,
    UnsupportedVersion = 10,
    Auth = 11,
    Limit = 12,
    ShuttingDown = 13,
}

impl ErrorCode {
    /// The code for a wire value, if known.
    pub fn from_u16(v: u16) -> Option<Self> {
        use ErrorCode::*;
        Some(match v {
            1 => Empty,
            2 => Full,
            3 => EndOfStream,
            4 => NotLeased,
            5 => DuplicateName,
            6 => UnknownQueue,
            7 => UnknownHandle,
            8 => Closed,
            9 => Protocol,
            10 => UnsupportedVersion,
            11 => Auth,
            12 => Limit,
            13 => ShuttingDown,
            _ => return None,
        })
    }
}

impl Error {
    /// Whether this is [`Error::EndOfStream`].
    pub fn is_end_of_stream(&self) -> bool {
        matches!(self, Error::EndOfStream { .. })
    }

    /// Whether this is [`Error::Empty`].
    pub fn is_empty(&self) -> bool {
        matches!(self, Error::Empty { .. })
    }

    /// Whether the connection is gone (lost, or the server shut down).
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, Error::ConnectionLost { .. } | Error::ShuttingDown)
    }
}
