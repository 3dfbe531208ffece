//! Reads and writes frames over any byte stream (TCP or TLS), with one read buffer and one
//! write buffer so that many frames go out in one write.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::{Error, Result};
use crate::protocol::{self, Frame};

/// Any stream a connection can run over.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// A framed connection.
///
/// [`read_frame`](Self::read_frame) is cancel-safe: dropping it loses no bytes, so it can sit
/// in a `select!` beside other work.
#[derive(Debug)]
pub struct Connection<S> {
    stream: S,
    rbuf: BytesMut,
    wbuf: BytesMut,
    max_frame: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Wraps `stream`; frames with bodies larger than `max_frame` are refused.
    pub fn new(stream: S, max_frame: usize) -> Self {
        Connection {
            stream,
            rbuf: BytesMut::with_capacity(16 * 1024),
            wbuf: BytesMut::with_capacity(16 * 1024),
            max_frame,
        }
    }

    /// Changes the largest frame body accepted from now on.
    pub fn set_max_frame(&mut self, max_frame: usize) {
        self.max_frame = max_frame;
    }

    /// A frame already in the read buffer, without any I/O.
    pub fn try_frame(&mut self) -> Result<Option<Frame>> {
        protocol::decode(&mut self.rbuf, self.max_frame).map_err(|e| Error::Protocol(e.to_string()))
    }

    /// The next frame; `Ok(None)` when the peer closed cleanly between frames.
    pub async fn read_frame(&mut self) -> Result<Option<Frame>> {
        loop {
            if let Some(frame) = self.try_frame()? {
                return Ok(Some(frame));
            }
            if self.rbuf.capacity() - self.rbuf.len() < 4096 {
                self.rbuf.reserve(16 * 1024);
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                return if self.rbuf.is_empty() {
                    Ok(None)
                } else {
                    Err(Error::Protocol(format!(
                        "connection closed in the middle of a frame ({} bytes received)",
                        self.rbuf.len()
                    )))
                };
            }
        }
    }

    /// Adds a frame to the write buffer; [`flush`](Self::flush) sends it.
    pub fn queue(&mut self, frame: &Frame) {
        protocol::encode(frame, &mut self.wbuf);
    }

    /// Whether queued frames wait to be flushed.
    pub fn has_pending_writes(&self) -> bool {
        !self.wbuf.is_empty()
    }

    /// Bytes waiting in the write buffer.
    pub fn pending_write_len(&self) -> usize {
        self.wbuf.len()
    }

    /// Writes every queued frame.
    pub async fn flush(&mut self) -> Result<()> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        }
        self.stream.flush().await?;
        Ok(())
    }

    /// Queues and writes one frame.
    pub async fn write_frame(&mut self, frame: &Frame) -> Result<()> {
        self.queue(frame);
        self.flush().await
    }

    /// Shuts the write side down (sends FIN, or TLS close_notify).
    pub async fn shutdown(&mut self) {
        let _ = self.stream.shutdown().await;
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }
}
