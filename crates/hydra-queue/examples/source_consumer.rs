//! A source-queue consumer process: connects with shipped settings, takes tasks until
//! end-of-stream, and finishes each one.
//!
//! Usage: `source_consumer SETTINGS_JSON [--hold] [--no-heartbeat] [--fail-odd]`
//!
//! - `SETTINGS_JSON`: a `QueueSettings` value as JSON (what `source_host` passes).
//! - `--hold`: take one task, print `HELD <delivery id> <item>`, and keep it without
//!   finishing (for tests that kill or freeze a consumer mid-task).
//! - `--no-heartbeat`: send no heartbeats (the server drops the lease after its timeout).
//! - `--fail-odd`: report odd-numbered tasks as failed.

use std::io::Write;
use std::time::Duration;

use hydra_queue::{Heartbeat, QueueSettings};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args
        .first()
        .ok_or("usage: source_consumer SETTINGS_JSON [flags]")?;
    let mut settings: QueueSettings = serde_json::from_str(json)?;
    let flag = |f: &str| args.iter().any(|a| a == f);
    if flag("--no-heartbeat") {
        settings.client.heartbeat = Heartbeat::Off;
    }
    let consumer = settings.consumer::<u64>().await?;
    let name = consumer.client().name().to_string();
    let mut out = std::io::stdout();
    if flag("--hold") {
        let d = consumer.get(None).await?;
        consumer.task_started(d.id).await?;
        writeln!(out, "HELD {} {}", d.id, d.item)?;
        out.flush()?;
        // Keep the lease until killed (or until the server drops us).
        loop {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }
    let mut done = 0u64;
    loop {
        let d = match consumer.get(None).await {
            Ok(d) => d,
            Err(e) if e.is_end_of_stream() => break,
            Err(e) => return Err(e.into()),
        };
        consumer.task_started(d.id).await?;
        if flag("--fail-odd") && d.item % 2 == 1 {
            consumer.task_failed(d.id, "odd").await?;
        } else {
            consumer.task_done(d.id).await?;
        }
        writeln!(out, "DONE {}", d.item)?;
        done += 1;
    }
    writeln!(out, "END {name} {done}")?;
    Ok(())
}
