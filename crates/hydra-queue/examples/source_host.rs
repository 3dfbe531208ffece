//! A source queue fed by one program and drained by several consumer processes.
//!
//! Usage: `source_host [ITEMS] [CONSUMERS]` (default 1000 items, 3 consumers). It serves
//! on a loopback port, starts `source_consumer` processes (built beside this example),
//! ships them the queue settings as JSON, puts the items, closes the queue and joins.

use std::process::Stdio;

use std::time::Duration;
use tokio::process::Command;

use hydra_queue::{QueueSettings, Server, ServerOptions, SourceOptions};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let items: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let consumers: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(3);

    let server = Server::bind("127.0.0.1:0", ServerOptions::default()).await?;
    let tasks = server.source::<u64>(
        "tasks",
        SourceOptions {
            capacity: 100,
            max_attempts: 3,
        },
    )?;
    let settings = QueueSettings {
        client: server.client_settings("consumer"),
        queue: "tasks".into(),
    };
    let json = serde_json::to_string(&settings)?;
    let exe = std::env::current_exe()?.with_file_name("source_consumer");
    let mut children = Vec::new();
    for _ in 0..consumers {
        children.push(
            Command::new(&exe)
                .arg(&json)
                .stdout(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", exe.display()))?,
        );
    }
    for i in 0..items {
        tasks.put(&i).await?; // waits while 100 items are queued
    }
    tasks.close();
    let report = tasks.join(Some(Duration::from_secs(120))).await?;
    println!(
        "{} items: {} done, {} failed, {} dead, {} redelivered",
        report.total, report.done, report.failed, report.dead, report.redelivered
    );
    for mut child in children {
        child.wait().await?;
    }
    server.shutdown().await;
    Ok(())
}
