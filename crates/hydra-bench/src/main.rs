//! `hydra-bench`: starts a Hydra server, spawns consumer and feed processes of its own
//! (this binary, re-executed with a subcommand), and prints each scenario's throughput and
//! latency beside a plain TCP floor measured in the same run.
//!
//! ```text
//! cargo run --release -p hydra-bench -- [--quick] [--json]
//! ```

mod child;
mod floor;
mod idle;
mod memory;
mod procinfo;
mod sink;
mod source;
mod stats;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use hydra_queue::{Server, ServerOptions};

use source::Mode;
use stats::Record;

/// Hydra's end-to-end benchmark.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// A short run (well under a minute) for CI smoke tests: same scenarios, fewer items.
    #[arg(long)]
    quick: bool,
    /// One JSON object per scenario instead of the table.
    #[arg(long)]
    json: bool,
    /// Runtime the server (this process) runs on. One thread by default: on two cores a
    /// worker pool hands each request from the thread that read it to another, which costs
    /// more than the request itself.
    #[arg(long, value_enum, default_value_t = Flavour::Current)]
    server_runtime: Flavour,
    /// Runs only the scenarios whose name contains this text (the floor always runs).
    #[arg(long)]
    only: Option<String>,
    #[command(subcommand)]
    role: Option<Role>,
}

/// A tokio runtime flavour.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Flavour {
    /// One thread.
    Current,
    /// A worker per core.
    Multi,
}

/// The roles of child processes (internal).
#[derive(Debug, Subcommand)]
enum Role {
    /// Floor client.
    #[command(hide = true)]
    FloorClient {
        #[arg(long)]
        addr: String,
        #[arg(long)]
        count: u64,
        #[arg(long)]
        in_flight: u64,
        #[arg(long, default_value_t = 0)]
        gap_us: u64,
    },
    /// Source-queue consumer.
    #[command(hide = true)]
    Consume {
        #[arg(long)]
        addr: String,
        #[arg(long)]
        queue: String,
        #[arg(long)]
        name: String,
        /// Prefetch window; one task at a time without it.
        #[arg(long)]
        window: Option<u32>,
        #[arg(long, default_value_t = 2)]
        lanes: u32,
    },
    /// Sink-queue feed.
    #[command(hide = true)]
    Feed {
        #[arg(long)]
        addr: String,
        #[arg(long)]
        queue: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        items: u64,
        #[arg(long)]
        batch: u32,
        #[arg(long)]
        lanes: u32,
        #[arg(long, default_value_t = 1)]
        connections: u32,
    },
    /// Server with idle consumers.
    #[command(hide = true)]
    IdleHost {
        #[arg(long)]
        consumers: usize,
        #[arg(long)]
        procs: usize,
        #[arg(long)]
        idle_ms: u64,
        #[arg(long)]
        puts: u64,
    },
    /// A process of idle consumers.
    #[command(hide = true)]
    IdleConsumer {
        #[arg(long)]
        addr: String,
        #[arg(long)]
        connections: usize,
        #[arg(long)]
        name: String,
    },
    /// Server memory per queued item.
    #[command(hide = true)]
    Memory {
        #[arg(long)]
        items: u64,
    },
}

/// A queue name not used before in this process.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn runtime(flavour: Flavour) -> Result<tokio::runtime::Runtime> {
    Ok(match flavour {
        Flavour::Current => tokio::runtime::Builder::new_current_thread(),
        Flavour::Multi => tokio::runtime::Builder::new_multi_thread(),
    }
    .enable_all()
    .build()?)
}

/// Runs `work` as a spawned task rather than as the `block_on` future itself: waking the
/// `block_on` future from a task makes a current-thread runtime poll the driver once more
/// (an extra `epoll_wait` per wake-up, measurable at one round trip per task), waking a
/// task does not.
fn run<F>(flavour: Flavour, work: F) -> Result<()>
where
    F: std::future::Future<Output = Result<()>> + Send + 'static,
{
    runtime(flavour)?.block_on(async move { tokio::spawn(work).await? })
}

/// Raises this process's open-file limit to its hard limit (children inherit it): the idle
/// scenario's server holds 1,000 connections, more than the usual soft limit of 1,024.
/// Returns the limit now in force.
fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    let want = hard.min(65_536);
    if want > soft && setrlimit(Resource::RLIMIT_NOFILE, want, hard).is_ok() {
        return want;
    }
    soft
}

fn main() -> Result<()> {
    let fd_limit = raise_fd_limit();
    let cli = Cli::parse();
    let Some(role) = cli.role else {
        return run(
            cli.server_runtime,
            bench(cli.quick, cli.json, cli.only, fd_limit),
        );
    };
    // Clients and the idle server need one thread: no cross-core hand-offs inside them.
    let one = Flavour::Current;
    match role {
        Role::FloorClient {
            addr,
            count,
            in_flight,
            gap_us,
        } => floor::client(&addr, count, in_flight, Duration::from_micros(gap_us)),
        Role::Consume {
            addr,
            queue,
            name,
            window,
            lanes,
        } => {
            let mode = match window {
                None => Mode::One,
                Some(window) => Mode::Prefetch { window, lanes },
            };
            run(one, async move {
                source::consume(&addr, &queue, &name, mode).await
            })
        }
        Role::Feed {
            addr,
            queue,
            name,
            items,
            batch,
            lanes,
            connections,
        } => {
            let shape = sink::Shape {
                batch,
                lanes,
                connections,
            };
            run(one, async move {
                sink::feed(&addr, &queue, &name, items, shape).await
            })
        }
        Role::IdleHost {
            consumers,
            procs,
            idle_ms,
            puts,
        } => run(
            one,
            idle::host(consumers, procs, Duration::from_millis(idle_ms), puts),
        ),
        Role::IdleConsumer {
            addr,
            connections,
            name,
        } => run(one, async move {
            idle::consumer(&addr, connections, &name).await
        }),
        Role::Memory { items } => run(one, memory::child(items)),
    }
}

/// Items per scenario.
struct Sizes {
    round_trips: u64,
    streamed: u64,
    one_at_a_time: u64,
    prefetch: u64,
    sink: u64,
    requests: u64,
    idle: Duration,
    idle_puts: u64,
    memory: u64,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                round_trips: 3_000,
                streamed: 300_000,
                one_at_a_time: 3_000,
                prefetch: 200_000,
                sink: 200_000,
                requests: 20_000,
                idle: Duration::from_secs(1),
                idle_puts: 200,
                memory: 100_000,
            }
        } else {
            Sizes {
                round_trips: 50_000,
                streamed: 5_000_000,
                one_at_a_time: 50_000,
                prefetch: 4_000_000,
                sink: 4_000_000,
                requests: 200_000,
                idle: Duration::from_secs(5),
                idle_puts: 2_000,
                memory: 1_000_000,
            }
        }
    }
}

async fn bench(quick: bool, json: bool, only: Option<String>, fd_limit: u64) -> Result<()> {
    let wanted = |name: &str| only.as_deref().map_or(true, |o| name.contains(o));
    let sizes = Sizes::new(quick);
    let mut records: Vec<Record> = Vec::new();
    let emit = |r: &Record, records: &mut Vec<Record>| -> Result<()> {
        if json {
            println!("{}", serde_json::to_string(r)?);
        } else {
            eprintln!("done: {}", r.scenario);
        }
        records.push(r.clone());
        Ok(())
    };
    let (floor, floor_records) =
        floor::measure(sizes.round_trips, sizes.streamed, sizes.idle_puts).await?;
    for r in &floor_records {
        emit(r, &mut records)?;
    }

    let server = Server::bind("127.0.0.1:0", ServerOptions::default()).await?;
    let window = Mode::Prefetch {
        window: 1024,
        lanes: 2,
    };
    let runs: [(&str, usize, u64, Mode); 3] = [
        (
            "source: one task at a time",
            1,
            sizes.one_at_a_time,
            Mode::One,
        ),
        ("source: prefetch", 1, sizes.prefetch, window),
        ("source: prefetch", 4, sizes.prefetch, window),
    ];
    for (name, procs, items, mode) in runs {
        if !wanted(name) {
            continue;
        }
        let r = source::run(&server, name, procs, items, mode, floor).await?;
        emit(&r, &mut records)?;
    }
    let batches = sink::Shape {
        batch: 1024,
        lanes: 2,
        connections: 1,
    };
    for procs in [1, 4].into_iter().filter(|_| wanted("sink")) {
        let r = sink::run(
            &server,
            "sink: feeds putting",
            procs,
            sizes.sink,
            batches,
            floor,
        )
        .await?;
        emit(&r, &mut records)?;
    }
    // redis-benchmark's shape: 50 clients in one process, one item per request, 1 or 16
    // requests in flight per client.
    for depth in [1, 16] {
        let name = format!("requests: 50 clients, pipeline {depth}, 1 item per put");
        if !wanted(&name) {
            continue;
        }
        let shape = sink::Shape {
            batch: 1,
            lanes: depth,
            connections: 50,
        };
        let items = sizes.requests * u64::from(depth).min(4);
        let r = sink::run(&server, &name, 1, items, shape, floor).await?;
        emit(&r, &mut records)?;
    }
    server.shutdown().await;

    if wanted("idle") {
        // 1,000 unless the open-file limit cannot be raised that far (the name says how many).
        let consumers = fd_limit.saturating_sub(100).clamp(4, 1000) as usize;
        if consumers < 1000 {
            eprintln!("open-file limit {fd_limit}: the idle scenario uses {consumers} consumers");
        }
        let r = idle::run(consumers, 4, sizes.idle, sizes.idle_puts, floor).await?;
        emit(&r, &mut records)?;
    }
    if wanted("memory") {
        let r = memory::run(sizes.memory, floor).await?;
        emit(&r, &mut records)?;
    }

    if !json {
        print!("{}", stats::table(&records));
    }
    Ok(())
}
