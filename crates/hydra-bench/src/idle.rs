//! Idle consumers: a server process with 1,000 consumers waiting in `get` on their own
//! connections; its CPU while they wait, its RSS, and the latency from `put` to a
//! consumer holding the item.
//!
//! The server runs in a child process of its own (`idle-host`) so that its CPU and
//! memory are its own; it spawns the consumer processes (`idle-consumer`).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use hydra_queue::{ClientSettings, Server, ServerOptions, SourceOptions};
use serde::{Deserialize, Serialize};

use crate::child::{self, Child};
use crate::procinfo;
use crate::stats::{ChildReport, Floor, FloorKind, Record, Samples};

/// What `idle-host` reports.
#[derive(Debug, Serialize, Deserialize)]
pub struct IdleReport {
    /// Consumers connected.
    pub consumers: usize,
    /// CPU used while they waited, percent of one core.
    pub cpu_percent: f64,
    /// Server RSS while they waited.
    pub rss_bytes: u64,
    /// Items put one at a time.
    pub puts: u64,
    /// Put-to-get latencies.
    pub latencies: Samples,
}

/// Parent side: runs `idle-host` and turns its report into a record.
pub async fn run(
    consumers: usize,
    procs: usize,
    idle: Duration,
    puts: u64,
    floor: Floor,
) -> Result<Record> {
    let host = Child::spawn(&[
        "idle-host".to_string(),
        "--consumers".into(),
        consumers.to_string(),
        "--procs".into(),
        procs.to_string(),
        "--idle-ms".into(),
        idle.as_millis().to_string(),
        "--puts".into(),
        puts.to_string(),
    ])?;
    let mut r: IdleReport = host.report(Duration::from_secs(300)).await?;
    let mut record = Record::throughput(
        &format!("idle: {consumers} consumers waiting, put to get"),
        procs,
        ChildReport {
            items: r.puts,
            secs: 1.0,
            latencies: std::mem::take(&mut r.latencies),
        },
        "put to a waiting consumer holding it",
        FloorKind::None,
        floor,
    );
    record.items_per_s = None;
    record.consumers = r.consumers;
    record.server_cpu_percent = Some(r.cpu_percent);
    record.server_rss_bytes = Some(r.rss_bytes);
    Ok(record)
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The server process.
pub async fn host(consumers: usize, procs: usize, idle: Duration, puts: u64) -> Result<()> {
    let server = Server::bind("127.0.0.1:0", ServerOptions::default()).await?;
    let queue = server.source::<()>("idle", SourceOptions::default())?;
    let addr = server.local_addr().to_string();
    let per = consumers.div_ceil(procs.max(1));
    let mut children = Vec::new();
    let mut left = consumers;
    for i in 0..procs {
        let n = per.min(left);
        left -= n;
        children.push(Child::spawn(&[
            "idle-consumer".to_string(),
            "--addr".into(),
            addr.clone(),
            "--connections".into(),
            n.to_string(),
            "--name".into(),
            format!("idle-{i}"),
        ])?);
    }
    child::start_all(&mut children, Duration::from_secs(60)).await?;
    // The go makes every consumer send its get; let those settle before measuring.
    let settle = Instant::now() + Duration::from_millis(500);
    while server.connection_count() < consumers && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep_until(settle.into()).await;
    let cpu0 = procinfo::cpu_time();
    let t0 = Instant::now();
    tokio::time::sleep(idle).await;
    let cpu = procinfo::cpu_time().saturating_sub(cpu0);
    let cpu_percent = 100.0 * cpu.as_secs_f64() / t0.elapsed().as_secs_f64();
    let rss_bytes = procinfo::rss_bytes();
    for _ in 0..puts {
        let mut payload = now_ns().to_le_bytes().to_vec();
        payload.resize(32, 0);
        queue.put_raw(Bytes::from(payload), None).await?;
        // One at a time, apart, so that each put meets idle consumers.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    queue.close();
    let report = queue.join(Some(Duration::from_secs(60))).await?;
    ensure!(report.done == puts, "{} of {puts} items done", report.done);
    let (_, latencies) = child::gather(children, Duration::from_secs(60)).await?;
    child::report(&IdleReport {
        consumers: server.connection_count().max(consumers),
        cpu_percent,
        rss_bytes,
        puts,
        latencies,
    })
}

/// A consumer process with `connections` connections, each with one consumer that waits
/// in `get`, records how long each item took from its put, and acknowledges it.
pub async fn consumer(addr: &str, connections: usize, name: &str) -> Result<()> {
    let mut consumers = Vec::with_capacity(connections);
    for i in 0..connections {
        let client = ClientSettings::new(addr, format!("{name}-{i}"))
            .connect()
            .await
            .with_context(|| format!("connection {i} of {connections}"))?;
        consumers.push(client.consumer::<()>("idle").await?);
    }
    child::ready_then_wait_for_go().await?;
    let runs = consumers.iter().map(|c| async move {
        let mut latencies = Samples::default();
        loop {
            match c.get_many_raw(1, None).await {
                Ok(ds) => {
                    let received = now_ns();
                    for d in ds {
                        let sent = u64::from_le_bytes(d.item[..8].try_into().expect("8 bytes"));
                        latencies.push(Duration::from_nanos(received.saturating_sub(sent)));
                        c.task_done(d.id).await?;
                    }
                }
                Err(e) if e.is_end_of_stream() => return anyhow::Ok(latencies),
                Err(e) => return Err(e.into()),
            }
        }
    });
    let mut all = Samples::default();
    let mut items = 0;
    for r in futures::future::join_all(runs).await {
        let l = r?;
        items += l.0.len() as u64;
        all.extend(l);
    }
    child::report(&ChildReport {
        items,
        secs: 0.0,
        latencies: all,
    })
}
