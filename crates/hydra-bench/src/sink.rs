//! Sink-queue scenario: feed processes putting batches with acknowledgements while the
//! host drains the queue.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use bytes::{Bytes, BytesMut};
use hydra_queue::{ClientSettings, Feed, Server, SinkOptions};

use crate::child::{self, Child};
use crate::stats::{ChildReport, Floor, FloorKind, Record, Samples};

/// How each feed process puts.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Items per put.
    pub batch: u32,
    /// Puts in flight per connection.
    pub lanes: u32,
    /// Connections (each its own client and feed) per process.
    pub connections: u32,
}

/// Spawns `procs` feeds putting `items` in all, and times them from go until the host has
/// taken every item.
pub async fn run(
    server: &Server,
    scenario: &str,
    procs: usize,
    items: u64,
    shape: Shape,
    floor: Floor,
) -> Result<Record> {
    let Shape {
        batch,
        lanes,
        connections,
    } = shape;
    let queue_name = crate::unique_name("sink");
    let sink = server.sink::<()>(&queue_name, SinkOptions::default())?;
    let addr = server.local_addr().to_string();
    let share = items / procs as u64;
    let mut children = Vec::new();
    for i in 0..procs {
        let mine = if i == 0 {
            items - share * (procs as u64 - 1)
        } else {
            share
        };
        children.push(Child::spawn(&[
            "feed".to_string(),
            "--addr".into(),
            addr.clone(),
            "--queue".into(),
            queue_name.clone(),
            "--name".into(),
            format!("feed-{i}"),
            "--items".into(),
            mine.to_string(),
            "--batch".into(),
            batch.to_string(),
            "--lanes".into(),
            lanes.to_string(),
            "--connections".into(),
            connections.to_string(),
        ])?);
    }
    let start = child::start_all(&mut children, Duration::from_secs(30)).await?;
    let mut received = 0u64;
    while received < items {
        let got = sink
            .get_many_raw(65_536, Some(Duration::from_secs(60)))
            .await?;
        received += got.len() as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    let (acked, latencies) = child::gather(children, Duration::from_secs(30)).await?;
    sink.join(Some(Duration::from_secs(30))).await?;
    ensure!(
        acked == items && received == items,
        "{scenario}: feeds had {acked} of {items} items acknowledged, host took {received}"
    );
    Ok(Record::throughput(
        scenario,
        procs,
        ChildReport {
            items,
            secs,
            latencies,
        },
        if batch == 1 {
            "an acknowledged put"
        } else {
            "an acknowledged put of a batch"
        },
        FloorKind::Stream,
        floor,
    ))
}

/// `n` 32-byte items cut from one buffer (one allocation per batch, as a client encoding
/// into a shared buffer would do).
fn batch_of(n: usize, first: u64) -> Vec<Bytes> {
    let mut buf = BytesMut::with_capacity(n * 32);
    for i in 0..n as u64 {
        buf.extend_from_slice(&(first + i).to_le_bytes());
        buf.extend_from_slice(&[7u8; 24]);
    }
    let mut buf = buf.freeze();
    (0..n).map(|_| buf.split_to(32)).collect()
}

/// Child side: registers `shape.connections` feeds (a client each), waits for go, puts
/// `items` in batches from `shape.lanes` concurrent loops per feed, closes the feeds,
/// reports.
pub async fn feed(addr: &str, queue: &str, name: &str, items: u64, shape: Shape) -> Result<()> {
    let mut feeds = Vec::new();
    for i in 0..shape.connections.max(1) {
        let name = format!("{name}-{i}");
        let client = ClientSettings::new(addr, &name).connect().await?;
        feeds.push(client.feed::<()>(queue, &name).await?);
    }
    child::ready_then_wait_for_go().await?;
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    // A task per connection, as a program with many connections would have.
    let tasks: Vec<_> = feeds
        .into_iter()
        .map(|feed| {
            let next = next.clone();
            tokio::spawn(async move {
                let lanes = (0..shape.lanes.max(1)).map(|_| lane(&feed, items, shape.batch, &next));
                let results = futures::future::join_all(lanes).await;
                (feed, results)
            })
        })
        .collect();
    let mut acked = 0;
    let mut latencies = Samples::default();
    let mut feeds = Vec::new();
    for task in tasks {
        let (feed, results) = task.await?;
        for r in results {
            let (n, l) = r?;
            acked += n;
            latencies.extend(l);
        }
        feeds.push(feed);
    }
    let secs = start.elapsed().as_secs_f64();
    for feed in feeds {
        feed.close().await?;
    }
    child::report(&ChildReport {
        items: acked,
        secs,
        latencies,
    })
}

async fn lane(feed: &Feed<()>, items: u64, batch: u32, next: &AtomicU64) -> Result<(u64, Samples)> {
    let mut latencies = Samples::default();
    let mut acked = 0;
    loop {
        let first = next.fetch_add(u64::from(batch), Ordering::Relaxed);
        if first >= items {
            return Ok((acked, latencies));
        }
        let n = (items - first).min(u64::from(batch));
        let items = batch_of(n as usize, first);
        let t = Instant::now();
        feed.put_raw(items, None).await?;
        latencies.push(t.elapsed());
        acked += n;
    }
}
