//! Source-queue chaos: numbered items, eight consumer processes, and a loop that kills
//! them (SIGKILL), freezes them past the lease timeout (SIGSTOP, then SIGCONT) and starts
//! replacements; then every item must be completed exactly once and `join` must return.
//!
//! Sizes come from the environment so that `scripts/soak` can run the long version:
//! `HYDRA_CHAOS_ITEMS` (default 20,000), `HYDRA_CHAOS_SECS` (chaos time, default 20),
//! `HYDRA_CHAOS_SEED` (random by default; printed, to replay a run).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use hydra_queue::{blocking, ClientSettings, Consumer, Error, ServerOptions, SourceOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::children::{env_or, rss_kib, Event, Fleet, State};
use super::ledger::Ledger;

const CONSUMERS: usize = 8;
const LEASE: Duration = Duration::from_secs(1);
/// A consumer whose own clock shows a gap this long while it held a delivery was stopped
/// long enough that the server must have dropped its connection: the lease timeout plus a
/// margin of 1.5 s for a server lagging on a busy host (a server that has not yet noticed
/// the silence rightly accepts a finish that arrives first).
const STALL: Duration = Duration::from_millis(2500);

#[test]
fn source_chaos_every_item_completed_exactly_once() {
    let items: u64 = env_or("HYDRA_CHAOS_ITEMS", 20_000);
    let secs: u64 = env_or("HYDRA_CHAOS_SECS", 20);
    let seed: u64 = env_or("HYDRA_CHAOS_SEED", rand::random());
    let join_bound = Duration::from_secs(env_or("HYDRA_CHAOS_JOIN_SECS", 90));
    println!("source chaos: {items} items, {secs} s of chaos, seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);

    let options = ServerOptions {
        lease_timeout: LEASE,
        ..ServerOptions::default()
    };
    let server = blocking::Server::bind("127.0.0.1:0", options).unwrap();
    let tasks = server
        .source::<u64>(
            "items",
            SourceOptions {
                capacity: 0,
                // Chaos may take an item from many consumers in a row: nothing may die.
                max_attempts: 1000,
            },
        )
        .unwrap();
    for i in 0..items {
        tasks.put(&i).unwrap();
    }
    tasks.close();
    let mut ledger = Ledger::new(items);
    let rss_start = rss_kib();
    let mut rss_max = rss_start;

    // Spread the work over the chaos time so that faults hit consumers mid-task.
    let exec_us = (secs * 1_000_000 * CONSUMERS as u64 / items.max(1)) * 3 / 4;
    let addr = server.local_addr().to_string();
    let mut fleet = Fleet::new();
    let spawn = |fleet: &mut Fleet, rng: &mut StdRng| {
        let n = fleet.len();
        fleet.spawn(
            "consumer",
            &[
                ("HYDRA_CHAOS_ADDR", addr.clone()),
                ("HYDRA_CHAOS_NAME", format!("consumer-{n}")),
                ("HYDRA_CHAOS_EXEC_US", exec_us.to_string()),
                ("HYDRA_CHAOS_PREFETCH", rng.gen_range(1..=4u32).to_string()),
            ],
        )
    };
    for _ in 0..CONSUMERS {
        spawn(&mut fleet, &mut rng);
    }

    let mut eofs = 0usize;
    let fold = |ledger: &mut Ledger, eofs: &mut usize, e: Event| match e {
        Event::Line(child, line) => ledger.apply(child, &line),
        Event::Eof => *eofs += 1,
    };
    let (mut kills, mut freezes) = (0u64, 0u64);
    let mut ever_frozen = HashSet::new();
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut next_action = start + Duration::from_millis(rng.gen_range(200..600));
    let mut next_sample = start;
    let mut next_kept = start;
    let mut rss_samples = Vec::new();
    while Instant::now() < end {
        if let Some(e) = fleet.next_event(next_action.min(end)) {
            fold(&mut ledger, &mut eofs, e);
        }
        let now = Instant::now();
        if now >= next_sample {
            let rss = rss_kib();
            rss_max = rss_max.max(rss);
            // One sample in twenty of the chaos time is kept, to show the trend.
            if now >= next_kept {
                rss_samples.push(rss);
                next_kept = now + Duration::from_secs(secs).max(Duration::from_secs(20)) / 20;
            }
            next_sample = now + Duration::from_secs(1);
        }
        if now < next_action {
            continue;
        }
        next_action = now + Duration::from_millis(rng.gen_range(300..700));
        let running = fleet.in_state(State::Running);
        if running.is_empty() {
            continue;
        }
        let victim = running[rng.gen_range(0..running.len())];
        if fleet.in_state(State::Frozen).len() < 2 && rng.gen_bool(0.5) {
            let hold = rng.gen_range(STALL.as_millis() as u64 + 200..3600);
            fleet.freeze_until(victim, now + Duration::from_millis(hold));
            freezes += 1;
            ever_frozen.insert(victim);
        } else {
            fleet.kill(victim);
            kills += 1;
        }
        // Keep eight consumers that are alive (frozen ones count: they come back).
        let alive = fleet.in_state(State::Running).len() + fleet.in_state(State::Frozen).len();
        for _ in alive..CONSUMERS {
            spawn(&mut fleet, &mut rng);
        }
    }
    fleet.thaw_all();
    let chaos_secs = start.elapsed().as_secs_f64();

    let join_start = Instant::now();
    let report = tasks.join(Some(join_bound)).unwrap_or_else(|e| {
        panic!("join did not return within {join_bound:?} after the chaos: {e}")
    });
    let join_secs = join_start.elapsed().as_secs_f64();
    fleet
        .wait_all(Duration::from_secs(30))
        .expect("consumers must exit after end-of-stream");
    let drain_deadline = Instant::now() + Duration::from_secs(10);
    while eofs < fleet.len() {
        let left = drain_deadline.saturating_duration_since(Instant::now());
        match fleet.events.recv_timeout(left) {
            Ok(e) => fold(&mut ledger, &mut eofs, e),
            Err(_) => panic!("the output of {} children never ended", fleet.len() - eofs),
        }
    }
    let rss_end = rss_kib();
    rss_max = rss_max.max(rss_end);

    let killed: HashSet<usize> = fleet.in_state(State::Killed).into_iter().collect();
    let verdict = ledger.verdict(&killed);
    let late_accepted: Vec<_> = ledger
        .stalled_acks
        .iter()
        .filter(|(child, ..)| ever_frozen.contains(child))
        .collect();
    println!(
        "source chaos figures: items={items} consumers_started={} kills={kills} \
         freezes={freezes} executions={} repeated_executions={} redelivered={} \
         finishes_not_leased={} finishes_connection_lost={} unknown_outcome_final_killed={} \
         unknown_outcome_final_connection_lost={} lost={} duplicate_completions={} \
         late_task_done_accepted={} chaos_s={chaos_secs:.1} join_after_chaos_s={join_secs:.1} \
         server_rss_kib_start={rss_start} server_rss_kib_max={rss_max} \
         server_rss_kib_end={rss_end}",
        fleet.len(),
        ledger.executions,
        ledger.executions.saturating_sub(items),
        report.redelivered,
        ledger.refused,
        ledger.connection_lost,
        verdict.unknown_killed,
        verdict.unknown_connection_lost,
        verdict.lost.len(),
        ledger
            .violations
            .iter()
            .filter(|v| v.contains("completed twice"))
            .count(),
        late_accepted.len(),
    );
    println!("source chaos rss_kib_samples: {rss_samples:?} end {rss_end}");
    assert!(
        ledger.violations.is_empty(),
        "{} violations, first ones: {:#?}",
        ledger.violations.len(),
        &ledger.violations[..ledger.violations.len().min(10)]
    );
    assert!(
        late_accepted.is_empty(),
        "task_done accepted from consumers stopped past the lease timeout: {late_accepted:?}"
    );
    assert!(
        verdict.lost.is_empty(),
        "{} items never completed, first: {:#?}",
        verdict.lost.len(),
        &verdict.lost[..verdict.lost.len().min(20)]
    );
    assert_eq!(
        verdict.completed + verdict.unknown_killed + verdict.unknown_connection_lost,
        items,
        "every item completed once"
    );
    assert_eq!(
        (report.total, report.done, report.failed, report.dead),
        (items, items, 0, 0),
        "the server's own count agrees"
    );
    server.shutdown();
}

/// Notices when this process was stopped: a thread that ticks every 20 ms and keeps the
/// gaps longer than [`STALL`].
struct Watchdog {
    stalls: Mutex<Vec<(Instant, Instant)>>,
}

impl Watchdog {
    fn start() -> Arc<Watchdog> {
        let dog = Arc::new(Watchdog {
            stalls: Mutex::new(Vec::new()),
        });
        let d = dog.clone();
        thread::spawn(move || {
            let mut last = Instant::now();
            loop {
                thread::sleep(Duration::from_millis(20));
                let now = Instant::now();
                if now - last > STALL {
                    d.stalls.lock().unwrap().push((last, now));
                }
                last = now;
            }
        });
        dog
    }

    /// The longest stall in ms that lay wholly between `from` and `to` (0 if none).
    fn stalled_ms(&self, from: Instant, to: Instant) -> u64 {
        let from = from - Duration::from_millis(25);
        let stalls = self.stalls.lock().unwrap();
        stalls
            .iter()
            .filter(|(s, e)| *s >= from && *e <= to)
            .map(|(s, e)| (*e - *s).as_millis() as u64)
            .max()
            .unwrap_or(0)
    }
}

/// A consumer process: take items, "run" them, finish them, print what happened; after a
/// lost connection (frozen past the lease timeout) connect again; exit at end-of-stream.
pub fn consumer_main() {
    let addr = std::env::var("HYDRA_CHAOS_ADDR").expect("HYDRA_CHAOS_ADDR");
    let name = std::env::var("HYDRA_CHAOS_NAME").expect("HYDRA_CHAOS_NAME");
    let exec = Duration::from_micros(env_or("HYDRA_CHAOS_EXEC_US", 1000));
    let prefetch: u32 = env_or("HYDRA_CHAOS_PREFETCH", 1);
    let dog = Watchdog::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        loop {
            let settings = ClientSettings::new(addr.clone(), name.clone());
            let client = match settings.connect().await {
                Ok(c) => c,
                Err(e) => {
                    println!("@gone {e}");
                    return;
                }
            };
            let consumer = match client.consumer::<u64>("items").await {
                Ok(c) => c,
                Err(e) if e.is_connection_lost() => continue,
                Err(e) => panic!("consumer: cannot open the queue: {e}"),
            };
            if session(&consumer, prefetch, exec, &dog).await {
                println!("@E");
                return;
            }
        }
    });
}

/// One connection's worth of work; true at end-of-stream, false when the connection is
/// lost.
async fn session(consumer: &Consumer<u64>, prefetch: u32, exec: Duration, dog: &Watchdog) -> bool {
    loop {
        let batch = match consumer
            .get_many(prefetch, Some(Duration::from_secs(5)))
            .await
        {
            Ok(b) => b,
            Err(e) if e.is_end_of_stream() => return true,
            Err(e) if e.is_empty() => continue,
            Err(e) if e.is_connection_lost() => return false,
            Err(e) => panic!("consumer: unexpected error from get: {e}"),
        };
        let leased_at = Instant::now();
        for d in batch {
            let (item, id, attempt) = (d.item, d.id, d.attempt);
            println!("@S {item} {id} {attempt}");
            tokio::time::sleep(exec).await;
            println!("@T {item} {id} {attempt}");
            let sent = Instant::now();
            match consumer.task_done(id).await {
                Ok(()) => println!(
                    "@A {item} {id} {attempt} {}",
                    dog.stalled_ms(leased_at, sent)
                ),
                Err(Error::NotLeased { .. }) => println!("@R {item} {id} {attempt}"),
                Err(e) if e.is_connection_lost() => {
                    println!("@L {item} {id} {attempt}");
                    return false;
                }
                Err(e) => panic!("consumer: unexpected error from task_done: {e}"),
            }
        }
    }
}
