//! Source-queue scenarios: consumer processes taking tasks one at a time (done and next get
//! in one round trip) or with a prefetch window acknowledged in batches.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use bytes::Bytes;
use hydra_queue::{ClientSettings, Consumer, Server, SourceOptions};

use crate::child::{self, Child};
use crate::stats::{ChildReport, Floor, FloorKind, Record, Samples};

/// How a consumer takes its tasks.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// One task at a time: `get`, then `done_and_get` for every next one.
    One,
    /// `lanes` concurrent batches of up to `window` leases, each finished with
    /// `task_done_many` in the same write as the next batch's `get`.
    Prefetch {
        /// Leases per batch.
        window: u32,
        /// Batches in flight.
        lanes: u32,
    },
}

/// A 32-byte payload that decodes as a MessagePack string of 31 characters, so that the
/// typed API can read it.
pub fn payload(n: u64) -> Bytes {
    let s = format!("{n:031}");
    let bytes = hydra_queue::codec::encode(&s).expect("strings encode");
    debug_assert_eq!(bytes.len(), 32);
    bytes
}

/// Puts `items` tasks, spawns `procs` consumer processes, and times them from go to join.
pub async fn run(
    server: &Server,
    scenario: &str,
    procs: usize,
    items: u64,
    mode: Mode,
    floor: Floor,
) -> Result<Record> {
    let queue_name = crate::unique_name("source");
    let queue = server.source::<String>(&queue_name, SourceOptions::default())?;
    for n in 0..items {
        queue.put_raw(payload(n), None).await?;
    }
    queue.close();
    let addr = server.local_addr().to_string();
    let mut children = Vec::new();
    for i in 0..procs {
        let mut args = vec![
            "consume".to_string(),
            "--addr".into(),
            addr.clone(),
            "--queue".into(),
            queue_name.clone(),
            "--name".into(),
            format!("consumer-{i}"),
        ];
        if let Mode::Prefetch { window, lanes } = mode {
            args.extend([
                "--window".into(),
                window.to_string(),
                "--lanes".into(),
                lanes.to_string(),
            ]);
        }
        children.push(Child::spawn(&args)?);
    }
    let start = child::start_all(&mut children, Duration::from_secs(30)).await?;
    let report = queue.join(Some(Duration::from_secs(600))).await?;
    let secs = start.elapsed().as_secs_f64();
    let (handled, latencies) = child::gather(children, Duration::from_secs(30)).await?;
    ensure!(
        report.done == items && handled == items,
        "{scenario}: {} of {items} tasks done, consumers acknowledged {handled}",
        report.done
    );
    let latency_of = match mode {
        Mode::One => "done + next get (one round trip)",
        Mode::Prefetch { .. } => "a batch's done + next get",
    };
    let kind = match mode {
        Mode::One => FloorKind::RoundTrip,
        Mode::Prefetch { .. } => FloorKind::Stream,
    };
    Ok(Record::throughput(
        scenario,
        procs,
        ChildReport {
            items,
            secs,
            latencies,
        },
        latency_of,
        kind,
        floor,
    ))
}

/// Child side: connects, waits for go, consumes until end-of-stream, reports.
pub async fn consume(addr: &str, queue: &str, name: &str, mode: Mode) -> Result<()> {
    let client = ClientSettings::new(addr, name).connect().await?;
    let consumer = client.consumer::<String>(queue).await?;
    child::ready_then_wait_for_go().await?;
    let start = Instant::now();
    let (items, latencies) = match mode {
        Mode::One => one_at_a_time(&consumer).await?,
        Mode::Prefetch { window, lanes } => {
            let runs = (0..lanes).map(|_| lane(&consumer, window));
            let mut items = 0;
            let mut latencies = Samples::default();
            for r in futures::future::join_all(runs).await {
                let (n, l) = r?;
                items += n;
                latencies.extend(l);
            }
            (items, latencies)
        }
    };
    child::report(&ChildReport {
        items,
        secs: start.elapsed().as_secs_f64(),
        latencies,
    })
}

async fn one_at_a_time(consumer: &Consumer<String>) -> Result<(u64, Samples)> {
    let mut latencies = Samples::default();
    let mut id = match consumer.get(None).await {
        Ok(d) => d.id,
        Err(e) if e.is_end_of_stream() => return Ok((0, latencies)),
        Err(e) => return Err(e.into()),
    };
    let mut items = 0;
    loop {
        let t = Instant::now();
        let next = consumer.done_and_get(id, None).await;
        items += 1;
        match next {
            Ok(d) => {
                latencies.push(t.elapsed());
                id = d.id;
            }
            Err(e) if e.is_end_of_stream() => return Ok((items, latencies)),
            Err(e) => return Err(e.into()),
        }
    }
}

async fn lane(consumer: &Consumer<String>, window: u32) -> Result<(u64, Samples)> {
    let mut latencies = Samples::default();
    let mut batch = match consumer.get_many_raw(window, None).await {
        Ok(b) => b,
        Err(e) if e.is_end_of_stream() => return Ok((0, latencies)),
        Err(e) => return Err(e.into()),
    };
    let mut items = 0;
    loop {
        let ids: Vec<u64> = batch.iter().map(|d| d.id).collect();
        let t = Instant::now();
        let (done, next) = tokio::join!(
            consumer.task_done_many(&ids),
            consumer.get_many_raw(window, None)
        );
        if let Err(e) = done {
            bail!("acknowledging {} tasks failed: {e}", ids.len());
        }
        items += ids.len() as u64;
        match next {
            Ok(b) => {
                latencies.push(t.elapsed());
                batch = b;
            }
            Err(e) if e.is_end_of_stream() => return Ok((items, latencies)),
            Err(e) => return Err(e.into()),
        }
    }
}
