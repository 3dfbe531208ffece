//! A consumer of a source queue: get deliveries, report them started, done or failed.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::{wire_timeout, Client, OpenHandle};
use crate::codec;
use crate::error::{Error, ErrorCode, Result};
use crate::protocol::{Message, WireDelivery};

/// One delivery of an item: finish it with its `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery<T> {
    /// The delivery id: unique for the server's lifetime. A redelivered item gets a new one.
    pub id: u64,
    /// 1 for the first delivery of the item, 2 for the second...
    pub attempt: u32,
    /// The item.
    pub item: T,
}

/// A consumer of one source queue, over its client's connection.
///
/// Items leased to it go back to the queue if the connection closes or its heartbeats
/// stop. Dropping the consumer closes its handle, which does the same for items it holds.
#[derive(Debug)]
pub struct Consumer<T> {
    open: OpenHandle,
    /// Deliveries received but not yet handed to the caller (see `done_and_get`).
    stash: Mutex<VecDeque<Delivery<Bytes>>>,
    _item: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Consumer<T> {
    pub(super) fn new(client: Client, handle: u32, queue: &str) -> Self {
        Consumer {
            open: OpenHandle::new(client, handle, queue),
            stash: Mutex::new(VecDeque::new()),
            _item: PhantomData,
        }
    }

    /// The queue's name.
    pub fn queue(&self) -> &str {
        &self.open.queue
    }

    /// The client this consumer uses.
    pub fn client(&self) -> &Client {
        &self.open.client
    }

    fn get_message(&self, max: u32, timeout: Option<Duration>) -> Message {
        Message::Get {
            handle: self.open.handle,
            max,
            timeout_ms: wire_timeout(timeout),
        }
    }

    fn deliveries(
        &self,
        reply: Result<Message>,
        timeout: Option<Duration>,
    ) -> Result<Vec<WireDelivery>> {
        match self.open.client.check(reply, &self.open.queue) {
            Ok(Message::Deliveries { items }) if !items.is_empty() => Ok(items),
            Ok(other) => Err(self.open.client.unexpected(&other)),
            Err(Error::Server { code, .. }) if code == ErrorCode::Empty as u16 => {
                Err(Error::Empty {
                    queue: self.open.queue.clone(),
                    waited: timeout.unwrap_or_default(),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Up to `max` deliveries (at least one), waiting at most `timeout` for the first
    /// (`None`: no limit), without decoding.
    pub async fn get_many_raw(
        &self,
        max: u32,
        timeout: Option<Duration>,
    ) -> Result<Vec<Delivery<Bytes>>> {
        let stashed = self.take_stash(max);
        if !stashed.is_empty() {
            return Ok(stashed);
        }
        let reply = self
            .open
            .client
            .request(self.get_message(max, timeout))
            .await;
        Ok(self
            .deliveries(reply, timeout)?
            .into_iter()
            .map(|d| Delivery {
                id: d.id,
                attempt: d.attempt,
                item: d.payload,
            })
            .collect())
    }

    /// Up to `max` deliveries (a prefetch window: the consumer holds all their leases),
    /// waiting at most `timeout` for the first.
    pub async fn get_many(&self, max: u32, timeout: Option<Duration>) -> Result<Vec<Delivery<T>>> {
        let raw = self.get_many_raw(max, timeout).await?;
        let mut out = Vec::with_capacity(raw.len());
        let mut first_error = None;
        for d in raw {
            match self.decode(d).await {
                Ok(d) => out.push(d),
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        match (out.is_empty(), first_error) {
            (true, Some(e)) => Err(e),
            _ => Ok(out),
        }
    }

    /// The next delivery, waiting at most `timeout` (`None`: no limit).
    ///
    /// [`Error::Empty`] when nothing came in time; [`Error::EndOfStream`] once the queue
    /// is closed and nothing can come back. An item that does not decode is reported as
    /// failed and returned as [`Error::Codec`].
    pub async fn get(&self, timeout: Option<Duration>) -> Result<Delivery<T>> {
        let mut raw = self.get_many_raw(1, timeout).await?;
        self.decode(raw.remove(0)).await
    }

    async fn decode(&self, d: Delivery<Bytes>) -> Result<Delivery<T>> {
        match codec::decode(&d.item) {
            Ok(item) => Ok(Delivery {
                id: d.id,
                attempt: d.attempt,
                item,
            }),
            Err(e) => {
                let _ = self
                    .task_failed(d.id, &format!("undecodable item: {e}"))
                    .await;
                Err(e)
            }
        }
    }

    fn not_leased(&self, delivery: u64) -> Error {
        Error::NotLeased {
            queue: self.open.queue.clone(),
            delivery,
        }
    }

    fn ok(&self, reply: Result<Message>, delivery: u64) -> Result<()> {
        match self.open.client.check(reply, &self.open.queue) {
            Ok(Message::Ok) => Ok(()),
            Ok(Message::Acked { refused }) => match refused.first() {
                None => Ok(()),
                Some(&id) => Err(self.not_leased(id)),
            },
            Ok(other) => Err(self.open.client.unexpected(&other)),
            Err(Error::Server { code, .. }) if code == ErrorCode::NotLeased as u16 => {
                Err(self.not_leased(delivery))
            }
            Err(e) => Err(e),
        }
    }

    /// Marks a delivery as running.
    pub async fn task_started(&self, delivery: u64) -> Result<()> {
        let reply = self
            .open
            .client
            .request(Message::Started {
                handle: self.open.handle,
                delivery,
            })
            .await;
        self.ok(reply, delivery)
    }

    /// Finishes a delivery as done. [`Error::NotLeased`] if it is not leased to this
    /// consumer any more (the first finish of an item wins).
    pub async fn task_done(&self, delivery: u64) -> Result<()> {
        self.task_done_many(&[delivery]).await
    }

    /// Finishes several deliveries as done in one request; every leased one is finished,
    /// and the first refused one is reported as [`Error::NotLeased`].
    pub async fn task_done_many(&self, deliveries: &[u64]) -> Result<()> {
        let reply = self
            .open
            .client
            .request(Message::Done {
                handle: self.open.handle,
                deliveries: deliveries.to_vec(),
            })
            .await;
        self.ok(reply, deliveries.first().copied().unwrap_or(0))
    }

    /// Finishes a delivery as failed, with a short reason the host can read.
    pub async fn task_failed(&self, delivery: u64, reason: &str) -> Result<()> {
        let reply = self
            .open
            .client
            .request(Message::Failed {
                handle: self.open.handle,
                delivery,
                reason: reason.to_string(),
            })
            .await;
        self.ok(reply, delivery)
    }

    fn take_stash(&self, max: u32) -> Vec<Delivery<Bytes>> {
        let mut stash = self.stash.lock().unwrap_or_else(|p| p.into_inner());
        let n = stash.len().min(max.max(1) as usize);
        stash.drain(..n).collect()
    }

    /// Finishes `delivery` as done and asks for the next one in the same write: one round
    /// trip per task. The done is applied even when the get then waits or fails.
    ///
    /// When the done is refused ([`Error::NotLeased`]), the delivery fetched beside it is
    /// not lost: the next `get` returns it.
    pub async fn done_and_get(
        &self,
        delivery: u64,
        timeout: Option<Duration>,
    ) -> Result<Delivery<T>> {
        let done = self.open.client.send(Message::Done {
            handle: self.open.handle,
            deliveries: vec![delivery],
        });
        let get = self.open.client.send(self.get_message(1, timeout));
        let done = self.open.client.receive(done).await;
        let got = self.open.client.receive(get).await;
        let got = self.deliveries(got, timeout).map(|items| {
            items
                .into_iter()
                .map(|d| Delivery {
                    id: d.id,
                    attempt: d.attempt,
                    item: d.payload,
                })
                .collect::<Vec<_>>()
        });
        if let Err(refused) = self.ok(done, delivery) {
            if let Ok(items) = got {
                let mut stash = self.stash.lock().unwrap_or_else(|p| p.into_inner());
                stash.extend(items);
            }
            return Err(refused);
        }
        let mut items = got?;
        self.decode(items.remove(0)).await
    }

    /// Closes the handle: items still leased go back to the queue.
    pub async fn close(self) -> Result<()> {
        self.open.close().await
    }
}
