//! A sink queue collecting results from several feed processes.
//!
//! Usage: `sink_host [FEEDS] [ITEMS_PER_FEED]` (default 3 feeds, 100 items each). It
//! starts `sink_feed` processes (built beside this example), gets items as they arrive,
//! joins until every feed has unregistered, then drains to end-of-stream.

use std::collections::HashMap;
use std::process::Stdio;

use std::time::Duration;
use tokio::process::Command;

use hydra_queue::{QueueSettings, Server, ServerOptions, SinkOptions};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let feeds: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(3);
    let per_feed: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(100);

    let server = Server::bind("127.0.0.1:0", ServerOptions::default()).await?;
    let results = server.sink::<(String, u64)>(
        "results",
        SinkOptions {
            capacity: 64,
            // join also waits until every feed we start has registered.
            expected_feeds: feeds,
        },
    )?;
    let settings = QueueSettings {
        client: server.client_settings("feed"),
        queue: "results".into(),
    };
    let json = serde_json::to_string(&settings)?;
    let exe = std::env::current_exe()?.with_file_name("sink_feed");
    let mut children = Vec::new();
    for _ in 0..feeds {
        children.push(
            Command::new(&exe)
                .arg(&json)
                .arg(per_feed.to_string())
                .stdout(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", exe.display()))?,
        );
    }
    let collector = {
        let results = results.clone();
        tokio::spawn(async move {
            let mut per_feed: HashMap<String, u64> = HashMap::new();
            loop {
                match results.get(None).await {
                    Ok((feed, _n)) => *per_feed.entry(feed).or_default() += 1,
                    Err(e) if e.is_end_of_stream() => return Ok(per_feed),
                    Err(e) => return Err(e),
                }
            }
        })
    };
    let report = results.join(Some(Duration::from_secs(120))).await?;
    let per_feed = collector.await??;
    println!(
        "{} feeds ({} lost) sent {} items: {:?}",
        report.feeds, report.lost, report.received, per_feed
    );
    for mut child in children {
        child.wait().await?;
    }
    server.shutdown().await;
    Ok(())
}
