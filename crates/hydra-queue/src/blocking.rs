//! Blocking versions of the server, queues, client, consumer and feed, for programs
//! without an async runtime. Each owns (a share of) a small tokio runtime and calls
//! `block_on` on the async implementation: there is no second implementation.
//!
//! Do not use these from inside an async context; use the async types there.
//!
//! ```
//! use std::time::Duration;
//! use hydra_queue::blocking::{Client, Server};
//! use hydra_queue::{ServerOptions, SourceOptions};
//!
//! let server = Server::bind("127.0.0.1:0", ServerOptions::default()).unwrap();
//! let tasks = server.source::<u32>("tasks", SourceOptions::default()).unwrap();
//! tasks.put(&7).unwrap();
//! tasks.close();
//!
//! let client = Client::connect(&server.client_settings("worker")).unwrap();
//! let consumer = client.consumer::<u32>("tasks").unwrap();
//! let d = consumer.get(Some(Duration::from_secs(5))).unwrap();
//! assert_eq!(d.item, 7);
//! consumer.task_done(d.id).unwrap();
//! assert!(consumer.get(Some(Duration::from_secs(5))).unwrap_err().is_end_of_stream());
//! assert_eq!(tasks.join(Some(Duration::from_secs(5))).unwrap().done, 1);
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::client::Delivery;
use crate::error::Result;
use crate::server::sink::{SinkCounts, SinkOptions};
use crate::server::source::{DeadItem, FailedItem, SourceCounts, SourceOptions};
use crate::server::{JoinReport, ServerOptions, SinkJoinReport};
use crate::settings::ClientSettings;

type Rt = Arc<tokio::runtime::Runtime>;

fn runtime(threads: usize) -> Result<Rt> {
    Ok(Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("hydra")
            .enable_all()
            .build()?,
    ))
}

/// A blocking [`crate::Server`].
#[derive(Debug)]
pub struct Server {
    rt: Rt,
    inner: Option<crate::Server>,
}

impl Server {
    /// Binds `addr` and serves on a runtime of its own (two threads).
    pub fn bind(addr: &str, options: ServerOptions) -> Result<Server> {
        let rt = runtime(2)?;
        let inner = rt.block_on(crate::Server::bind(addr, options))?;
        Ok(Server {
            rt,
            inner: Some(inner),
        })
    }

    fn inner(&self) -> &crate::Server {
        self.inner
            .as_ref()
            .expect("server is running until shutdown")
    }

    /// See [`crate::Server::local_addr`].
    pub fn local_addr(&self) -> SocketAddr {
        self.inner().local_addr()
    }

    /// See [`crate::Server::client_settings`].
    pub fn client_settings(&self, name: &str) -> ClientSettings {
        self.inner().client_settings(name)
    }

    /// See [`crate::Server::source`].
    pub fn source<T: Serialize>(
        &self,
        name: &str,
        options: SourceOptions,
    ) -> Result<SourceQueue<T>> {
        let _guard = self.rt.enter();
        Ok(SourceQueue {
            rt: self.rt.clone(),
            inner: self.inner().source(name, options)?,
        })
    }

    /// See [`crate::Server::sink`].
    pub fn sink<T: DeserializeOwned>(
        &self,
        name: &str,
        options: SinkOptions,
    ) -> Result<SinkQueue<T>> {
        Ok(SinkQueue {
            rt: self.rt.clone(),
            inner: self.inner().sink(name, options)?,
        })
    }

    /// See [`crate::Server::shutdown`].
    pub fn shutdown(mut self) {
        if let Some(inner) = self.inner.take() {
            self.rt.block_on(inner.shutdown());
        }
    }
}

/// A blocking [`crate::SourceQueue`].
#[derive(Debug, Clone)]
pub struct SourceQueue<T> {
    rt: Rt,
    inner: crate::SourceQueue<T>,
}

impl<T: Serialize> SourceQueue<T> {
    /// See [`crate::SourceQueue::put`].
    pub fn put(&self, item: &T) -> Result<()> {
        self.rt.block_on(self.inner.put(item))
    }
    /// See [`crate::SourceQueue::put_timeout`].
    pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
        self.rt.block_on(self.inner.put_timeout(item, timeout))
    }
    /// See [`crate::SourceQueue::put_avoiding`].
    pub fn put_avoiding(&self, item: &T, avoid: &str) -> Result<()> {
        self.rt.block_on(self.inner.put_avoiding(item, avoid))
    }
    /// See [`crate::SourceQueue::put_raw`].
    pub fn put_raw(&self, payload: Bytes, timeout: Option<Duration>) -> Result<()> {
        self.rt.block_on(self.inner.put_raw(payload, timeout))
    }
    /// See [`crate::SourceQueue::close`].
    pub fn close(&self) {
        self.inner.close()
    }
    /// See [`crate::SourceQueue::join`].
    pub fn join(&self, timeout: Option<Duration>) -> Result<JoinReport> {
        self.rt.block_on(self.inner.join(timeout))
    }
    /// See [`crate::SourceQueue::counts`].
    pub fn counts(&self) -> SourceCounts {
        self.inner.counts()
    }
    /// See [`crate::SourceQueue::dead_items`].
    pub fn dead_items(&self) -> Vec<DeadItem> {
        self.inner.dead_items()
    }
    /// See [`crate::SourceQueue::failed_items`].
    pub fn failed_items(&self) -> Vec<FailedItem> {
        self.inner.failed_items()
    }
}

/// A blocking [`crate::SinkQueue`].
#[derive(Debug, Clone)]
pub struct SinkQueue<T> {
    rt: Rt,
    inner: crate::SinkQueue<T>,
}

impl<T: DeserializeOwned> SinkQueue<T> {
    /// See [`crate::SinkQueue::get`].
    pub fn get(&self, timeout: Option<Duration>) -> Result<T> {
        self.rt.block_on(self.inner.get(timeout))
    }
    /// See [`crate::SinkQueue::join`].
    pub fn join(&self, timeout: Option<Duration>) -> Result<SinkJoinReport> {
        self.rt.block_on(self.inner.join(timeout))
    }
    /// See [`crate::SinkQueue::close`].
    pub fn close(&self) {
        self.inner.close()
    }
    /// See [`crate::SinkQueue::counts`].
    pub fn counts(&self) -> SinkCounts {
        self.inner.counts()
    }
}

/// A blocking [`crate::Client`].
#[derive(Debug, Clone)]
pub struct Client {
    rt: Rt,
    inner: crate::Client,
}

impl Client {
    /// Connects on a runtime of its own (one thread, which also sends heartbeats while the
    /// caller is busy).
    pub fn connect(settings: &ClientSettings) -> Result<Client> {
        let rt = runtime(1)?;
        let inner = rt.block_on(crate::Client::connect(settings))?;
        Ok(Client { rt, inner })
    }

    /// The name this client connected with.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// See [`crate::Client::consumer`].
    pub fn consumer<T: DeserializeOwned>(&self, queue: &str) -> Result<Consumer<T>> {
        Ok(Consumer {
            rt: self.rt.clone(),
            inner: self.rt.block_on(self.inner.consumer(queue))?,
        })
    }

    /// See [`crate::Client::feed`].
    pub fn feed<T: Serialize>(&self, queue: &str, name: &str) -> Result<Feed<T>> {
        Ok(Feed {
            rt: self.rt.clone(),
            inner: self.rt.block_on(self.inner.feed(queue, name))?,
        })
    }
}

/// A blocking [`crate::Consumer`].
#[derive(Debug)]
pub struct Consumer<T> {
    rt: Rt,
    inner: crate::Consumer<T>,
}

impl<T: DeserializeOwned> Consumer<T> {
    /// See [`crate::Consumer::get`].
    pub fn get(&self, timeout: Option<Duration>) -> Result<Delivery<T>> {
        self.rt.block_on(self.inner.get(timeout))
    }
    /// See [`crate::Consumer::get_many`].
    pub fn get_many(&self, max: u32, timeout: Option<Duration>) -> Result<Vec<Delivery<T>>> {
        self.rt.block_on(self.inner.get_many(max, timeout))
    }
    /// See [`crate::Consumer::task_started`].
    pub fn task_started(&self, delivery: u64) -> Result<()> {
        self.rt.block_on(self.inner.task_started(delivery))
    }
    /// See [`crate::Consumer::task_done`].
    pub fn task_done(&self, delivery: u64) -> Result<()> {
        self.rt.block_on(self.inner.task_done(delivery))
    }
    /// See [`crate::Consumer::task_done_many`].
    pub fn task_done_many(&self, deliveries: &[u64]) -> Result<()> {
        self.rt.block_on(self.inner.task_done_many(deliveries))
    }
    /// See [`crate::Consumer::task_failed`].
    pub fn task_failed(&self, delivery: u64, reason: &str) -> Result<()> {
        self.rt.block_on(self.inner.task_failed(delivery, reason))
    }
    /// See [`crate::Consumer::done_and_get`].
    pub fn done_and_get(&self, delivery: u64, timeout: Option<Duration>) -> Result<Delivery<T>> {
        self.rt.block_on(self.inner.done_and_get(delivery, timeout))
    }
    /// See [`crate::Consumer::close`].
    pub fn close(self) -> Result<()> {
        self.rt.block_on(self.inner.close())
    }
}

/// A blocking [`crate::Feed`].
#[derive(Debug)]
pub struct Feed<T> {
    rt: Rt,
    inner: crate::Feed<T>,
}

impl<T: Serialize> Feed<T> {
    /// See [`crate::Feed::put`].
    pub fn put(&self, item: &T) -> Result<()> {
        self.rt.block_on(self.inner.put(item))
    }
    /// See [`crate::Feed::put_timeout`].
    pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
        self.rt.block_on(self.inner.put_timeout(item, timeout))
    }
    /// See [`crate::Feed::put_many`].
    pub fn put_many(&self, items: &[T]) -> Result<()> {
        self.rt.block_on(self.inner.put_many(items))
    }
    /// See [`crate::Feed::close`].
    pub fn close(self) -> Result<()> {
        self.rt.block_on(self.inner.close())
    }
}
