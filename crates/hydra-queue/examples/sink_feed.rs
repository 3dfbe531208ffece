//! A sink-queue feed process: registers, puts numbered items, unregisters.
//!
//! Usage: `sink_feed SETTINGS_JSON COUNT [--hang]`. Prints `ACK <n>` after each
//! acknowledged put. With `--hang` it never unregisters: it waits to be killed after its
//! last put (for tests of lost feeds).

use std::io::Write;
use std::time::Duration;

use hydra_queue::QueueSettings;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [json, count, ..] = &args[..] else {
        return Err("usage: sink_feed SETTINGS_JSON COUNT [--hang]".into());
    };
    let settings: QueueSettings = serde_json::from_str(json)?;
    let count: u64 = count.parse()?;
    let feed = settings.feed::<(String, u64)>().await?;
    let name = feed_name();
    let mut out = std::io::stdout();
    for n in 0..count {
        feed.put(&(name.clone(), n)).await?;
        writeln!(out, "ACK {n}")?;
        out.flush()?;
    }
    if args.iter().any(|a| a == "--hang") {
        writeln!(out, "HANGING")?;
        out.flush()?;
        loop {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }
    feed.close().await?;
    Ok(())
}

fn feed_name() -> String {
    format!("feed-{}", std::process::id())
}
