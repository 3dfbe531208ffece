//! Server memory per queued item: RSS before and after putting many 64-byte items into a
//! source queue, in a process of its own so that nothing else moves its RSS.

use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use hydra_queue::{Server, ServerOptions, SourceOptions};
use serde::{Deserialize, Serialize};

use crate::child::{self, Child};
use crate::procinfo;
use crate::stats::{ChildReport, Floor, FloorKind, Record, Samples};

/// Payload bytes per item.
pub const ITEM: usize = 64;

/// What the `memory` child reports.
#[derive(Debug, Serialize, Deserialize)]
pub struct MemoryReport {
    /// Items queued.
    pub items: u64,
    /// RSS before the puts.
    pub rss_before: u64,
    /// RSS with every item queued.
    pub rss_after: u64,
}

/// Parent side.
pub async fn run(items: u64, floor: Floor) -> Result<Record> {
    let child = Child::spawn(&["memory".to_string(), "--items".into(), items.to_string()])?;
    let r: MemoryReport = child.report(Duration::from_secs(300)).await?;
    let per_item = r.rss_after.saturating_sub(r.rss_before) as f64 / r.items as f64;
    let mut record = Record::throughput(
        &format!("memory: queued {ITEM}-byte items"),
        0,
        ChildReport {
            items: r.items,
            secs: 1.0,
            latencies: Samples::default(),
        },
        "-",
        FloorKind::None,
        floor,
    );
    record.items_per_s = None;
    record.server_rss_bytes = Some(r.rss_after);
    record.overhead_bytes_per_item = Some(per_item - ITEM as f64);
    Ok(record)
}

/// Child side: a server with one source queue holding `items` items, each its own
/// allocation as a host's encoded item would be.
pub async fn child(items: u64) -> Result<()> {
    let server = Server::bind("127.0.0.1:0", ServerOptions::default()).await?;
    let queue = server.source::<()>("memory", SourceOptions::default())?;
    let rss_before = procinfo::rss_bytes();
    for n in 0..items {
        let mut payload = vec![0u8; ITEM];
        payload[..8].copy_from_slice(&n.to_le_bytes());
        queue.put_raw(Bytes::from(payload), None).await?;
    }
    let rss_after = procinfo::rss_bytes();
    assert_eq!(queue.counts().queued as u64, items);
    child::report(&MemoryReport {
        items,
        rss_before,
        rss_after,
    })
}
