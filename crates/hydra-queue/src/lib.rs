//! Hydra's queues: a **source queue** that hands items to remote consumers first come,
//! first served, with leases and redelivery, and a **sink queue** that collects items
//! pushed by remote feeds, both served by one [`Server`] on one port.
//!
//! Delivery guarantee of the source queue: **at-least-once execution, at-most-once
//! completion**. An item is delivered again when the consumer holding it disconnects or
//! stops heartbeating, so it may run more than once; but only one finish (`task_done` or
//! `task_failed`) is ever accepted for it, and `join` counts it once. After
//! `max_attempts` deliveries whose leases were lost, the item is *dead*: reported to the
//! host and counted as finished, so `join` cannot hang on lost workers.
//!
//! Payloads are opaque bytes to the server; the typed API encodes items as MessagePack
//! ([`codec`]). The wire protocol is described in `docs/PROTOCOL.md`.
//!
//! ```
//! # async fn demo() -> hydra_queue::Result<()> {
//! use std::time::Duration;
//! use hydra_queue::{Server, ServerOptions, SinkOptions, SourceOptions};
//!
//! let server = Server::bind("127.0.0.1:0", ServerOptions::default()).await?;
//! let tasks = server.source::<String>("tasks", SourceOptions::default())?;
//! let results = server.sink::<(String, bool)>("results", SinkOptions::default())?;
//! tasks.put(&"test_a".to_string()).await?;
//! tasks.close();
//!
//! // Usually in another process or on another host:
//! let client = server.client_settings("worker").connect().await?;
//! let consumer = client.consumer::<String>("tasks").await?;
//! let feed = client.feed::<(String, bool)>("results", "worker-1").await?;
//! let task = consumer.get(Some(Duration::from_secs(5))).await?;
//! feed.put(&(task.item.clone(), true)).await?;
//! consumer.task_done(task.id).await?;
//! feed.close().await?;
//!
//! assert_eq!(tasks.join(Some(Duration::from_secs(5))).await?.done, 1);
//! results.join(Some(Duration::from_secs(5))).await?;
//! assert_eq!(results.get(None).await?, ("test_a".to_string(), true));
//! assert!(results.get(None).await.unwrap_err().is_end_of_stream());
//! # Ok(()) }
//! # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
//! ```
//!
//! # Layout
//! - [`protocol`]: frames and messages, pure encode/decode.
//! - [`connection`]: frames over any stream (TCP or TLS).
//! - `server`: accept loop and connections; [`source`] and [`sink`] hold queue state as
//!   plain synchronous code.
//! - `client`: [`Client`], [`Consumer`], [`Feed`].
//! - [`blocking`]: the same for programs without an async runtime.
//! - [`settings`], [`tls`], [`auth`]: what a client needs to connect, and how it proves it.
//! - `local`: [`Server::connect_local`], a client in the serving process over memory.

pub mod auth;
pub mod blocking;
mod client;
pub mod codec;
pub mod connection;
mod error;
mod local;
pub mod protocol;
mod server;
pub mod settings;
pub mod tls;

pub use client::{Client, Consumer, Delivery, Feed};
pub use error::{Error, ErrorCode, Result};
pub use server::sink::{self, SinkCounts, SinkOptions};
pub use server::source::{self, DeadItem, FailedItem, SourceCounts, SourceOptions};
pub use server::{
    Changes, JoinReport, Server, ServerOptions, SinkJoinReport, SinkQueue, SourceQueue,
};
pub use settings::{ClientSettings, Heartbeat, QueueSettings};
pub use tls::{ClientTls, Pem, ServerTls};
