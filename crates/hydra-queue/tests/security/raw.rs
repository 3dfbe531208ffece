//! A raw protocol client over a plain TCP socket: sends any frame or any bytes, reads
//! frames with a bounded wait, and tells whether the server closed the connection. The
//! hostile tests use it to do what the real client never would.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use hydra_queue::protocol::{
    decode, encode, Frame, Message, WireDelivery, DEFAULT_MAX_FRAME, MAGIC, NONCE_LEN, VERSION,
    WAIT_FOREVER,
};
use hydra_queue::ErrorCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest any single wait in these tests may take before the test fails: generous,
/// since the machines are slow and shared.
pub const BOUND: Duration = Duration::from_secs(10);

/// Runs `f` or fails the test with `what` after [`BOUND`].
pub async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(BOUND, f).await {
        Ok(t) => t,
        Err(_) => panic!("{what}: did not finish within {BOUND:?}"),
    }
}

/// What the server did last on a raw connection.
#[derive(Debug)]
pub enum Ending {
    /// A `Goodbye` frame, then the connection closed.
    Goodbye { code: u16, reason: String },
    /// Closed (or reset) without a `Goodbye`.
    Closed,
}

pub struct Raw {
    stream: TcpStream,
    rbuf: BytesMut,
}

pub fn hello(name: &str) -> Message {
    Message::Hello {
        magic: MAGIC,
        min_version: VERSION,
        max_version: VERSION,
        name: name.to_string(),
    }
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        let stream = bounded("raw connect", TcpStream::connect(addr))
            .await
            .expect("raw connect");
        Raw {
            stream,
            rbuf: BytesMut::new(),
        }
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    pub async fn send(&mut self, id: u32, message: Message) -> std::io::Result<()> {
        let mut buf = BytesMut::new();
        encode(&Frame { id, message }, &mut buf);
        self.send_bytes(&buf).await
    }

    /// The next frame; `None` when the server closed (or reset) the connection.
    pub async fn recv(&mut self) -> Option<Frame> {
        bounded("waiting for a frame from the server", async {
            loop {
                match decode(&mut self.rbuf, DEFAULT_MAX_FRAME) {
                    Ok(Some(frame)) => return Some(frame),
                    Ok(None) => {}
                    Err(e) => panic!("server sent an undecodable frame: {e}"),
                }
                match self.stream.read_buf(&mut self.rbuf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
    }

    /// Reads until the server ends the connection; fails on any frame that is neither a
    /// `Goodbye` nor an answer the caller expected to skip (`skip` returns true).
    pub async fn ending(&mut self, skip: impl Fn(&Message) -> bool) -> Ending {
        let mut goodbye = None;
        while let Some(frame) = self.recv().await {
            match frame.message {
                Message::Goodbye { code, reason } if goodbye.is_none() => {
                    goodbye = Some(Ending::Goodbye { code, reason });
                }
                m if goodbye.is_none() && skip(&m) => {}
                m => panic!("unexpected {m:?} from the server"),
            }
        }
        goodbye.unwrap_or(Ending::Closed)
    }

    /// Reads until the connection ends and asserts it ended with a `Goodbye` of `code`
    /// whose reason contains `needle`.
    pub async fn expect_goodbye(&mut self, code: ErrorCode, needle: &str) -> String {
        match self.ending(|_| false).await {
            Ending::Goodbye { code: c, reason } => {
                assert_eq!(c, code as u16, "goodbye code (reason: {reason})");
                assert!(
                    reason.contains(needle),
                    "goodbye reason {reason:?} should mention {needle:?}"
                );
                reason
            }
            Ending::Closed => panic!("server closed without a goodbye ({code:?} expected)"),
        }
    }

    /// Runs the handshake without a token and returns the Welcome's connection id.
    pub async fn handshake(&mut self, name: &str) {
        self.send(1, hello(name)).await.expect("send Hello");
        match self.recv().await.map(|f| f.message) {
            Some(Message::Challenge {
                token_required: false,
                ..
            }) => {}
            other => panic!("expected a Challenge without token, got {other:?}"),
        }
        let zeros = [0; NONCE_LEN];
        self.send(
            2,
            Message::Auth {
                nonce: hydra_queue::auth::nonce(),
                proof: zeros,
            },
        )
        .await
        .expect("send Auth");
        match self.recv().await.map(|f| f.message) {
            Some(Message::Welcome { .. }) => {}
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    /// Sends a request and returns its answer (skipping unsolicited Pongs).
    pub async fn request(&mut self, id: u32, message: Message) -> Message {
        self.send(id, message).await.expect("send request");
        loop {
            match self.recv().await {
                Some(f) if f.id == id => return f.message,
                Some(f) if f.id == 0 && f.message == Message::Pong => {}
                Some(f) => panic!("unexpected {f:?} while waiting for answer {id}"),
                None => panic!("server closed the connection before answering {id}"),
            }
        }
    }

    /// A connected consumer of `queue` holding leases of up to `max` items.
    pub async fn consumer(addr: SocketAddr, queue: &str, max: u32) -> (Raw, Vec<WireDelivery>) {
        let mut raw = Raw::connect(addr).await;
        raw.handshake("hostile").await;
        let handle = match raw
            .request(
                3,
                Message::OpenConsumer {
                    queue: queue.to_string(),
                },
            )
            .await
        {
            Message::Opened { handle } => handle,
            other => panic!("OpenConsumer answered {other:?}"),
        };
        let get = Message::Get {
            handle,
            max,
            timeout_ms: WAIT_FOREVER,
        };
        match raw.request(4, get).await {
            Message::Deliveries { items } => (raw, items),
            other => panic!("Get answered {other:?}"),
        }
    }

    /// Closes the write side (the server sees end of stream).
    pub async fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown().await;
    }
}

/// Items of deliveries, decoded as the typed API encodes them.
pub fn items_of(deliveries: &[WireDelivery]) -> Vec<u32> {
    deliveries
        .iter()
        .map(|d| hydra_queue::codec::decode::<u32>(&d.payload).expect("decode item"))
        .collect()
}

/// Waits until `cond` holds, re-checking every 10 ms, up to [`BOUND`].
pub async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    bounded(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}
