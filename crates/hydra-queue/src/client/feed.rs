//! A feed of a sink queue: put items (acknowledged once enqueued), then close.

use std::marker::PhantomData;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use super::{wire_timeout, Client, OpenHandle};
use crate::codec;
use crate::error::{Error, ErrorCode, Result};
use crate::protocol::Message;

/// A registered feed of one sink queue, over its client's connection.
///
/// Dropping it without [`close`](Self::close) unregisters it too.
#[derive(Debug)]
pub struct Feed<T> {
    open: OpenHandle,
    _item: PhantomData<fn(T)>,
}

impl<T: Serialize> Feed<T> {
    pub(super) fn new(client: Client, handle: u32, queue: &str) -> Self {
        Feed {
            open: OpenHandle::new(client, handle, queue),
            _item: PhantomData,
        }
    }

    /// The queue's name.
    pub fn queue(&self) -> &str {
        &self.open.queue
    }

    /// Puts an item, waiting while the sink is full. Returns once the server has
    /// enqueued it; an error means it may not have been.
    pub async fn put(&self, item: &T) -> Result<()> {
        self.put_raw(vec![codec::encode(item)?], None).await
    }

    /// Puts an item, waiting at most `timeout` for room; [`Error::Full`] after that (and
    /// then the item was not enqueued).
    pub async fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
        self.put_raw(vec![codec::encode(item)?], Some(timeout))
            .await
    }

    /// Puts several items in one request: all are enqueued together, in order.
    pub async fn put_many(&self, items: &[T]) -> Result<()> {
        let encoded = items
            .iter()
            .map(codec::encode)
            .collect::<Result<Vec<_>>>()?;
        self.put_raw(encoded, None).await
    }

    /// Puts already-encoded items, all or none, waiting at most `timeout` for room.
    pub async fn put_raw(&self, items: Vec<Bytes>, timeout: Option<Duration>) -> Result<()> {
        let reply = self
            .open
            .client
            .request(Message::Put {
                handle: self.open.handle,
                timeout_ms: wire_timeout(timeout),
                items,
            })
            .await;
        self.ok(reply, timeout)
    }

    fn ok(&self, reply: Result<Message>, timeout: Option<Duration>) -> Result<()> {
        match self.open.client.check(reply, &self.open.queue) {
            Ok(Message::Ok) => Ok(()),
            Ok(other) => Err(self.open.client.unexpected(&other)),
            Err(Error::Server { code, .. }) if code == ErrorCode::Full as u16 => Err(Error::Full {
                queue: self.open.queue.clone(),
                waited: timeout.unwrap_or_default(),
            }),
            Err(e) => Err(e),
        }
    }

    /// Unregisters the feed: the host's `join` no longer waits for it.
    pub async fn close(self) -> Result<()> {
        self.open.close().await
    }
}
