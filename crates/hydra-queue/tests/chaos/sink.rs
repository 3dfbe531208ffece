//! Sink-queue chaos: feed processes put numbered items while a loop kills them (SIGKILL)
//! or freezes them past the lease timeout; every put a feed saw acknowledged must reach
//! the host exactly once, nothing may arrive twice, and `join` must complete although
//! the killed feeds never unregistered.

use std::collections::{HashMap, HashSet};
use std::thread;
use std::time::{Duration, Instant};

use hydra_queue::{blocking, ClientSettings, ServerOptions, SinkOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::children::{env_or, Event, Fleet, State};

const FEEDS: usize = 6;
const PER_FEED: u64 = 3000;
const LEASE: Duration = Duration::from_secs(1);

/// What one feed process said.
#[derive(Debug, Default)]
struct FeedLog {
    registered: bool,
    acked: Vec<u64>,
    closed: bool,
    failed: Option<String>,
}

#[test]
fn sink_chaos_every_acknowledged_put_received_exactly_once() {
    let secs: u64 = env_or("HYDRA_CHAOS_SINK_SECS", 8);
    let seed: u64 = env_or("HYDRA_CHAOS_SEED", rand::random());
    println!("sink chaos: {secs} s of chaos, seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let options = ServerOptions {
        lease_timeout: LEASE,
        ..ServerOptions::default()
    };
    let server = blocking::Server::bind("127.0.0.1:0", options).unwrap();
    let sink = server
        .sink::<(u32, u64)>(
            "results",
            SinkOptions {
                // Small, so that feeds also wait for room and are killed while waiting.
                capacity: 64,
                expected_feeds: 0,
            },
        )
        .unwrap();
    let getter = {
        let sink = sink.clone();
        thread::spawn(move || {
            let mut got = Vec::new();
            loop {
                match sink.get(Some(Duration::from_millis(200))) {
                    Ok(item) => got.push(item),
                    Err(e) if e.is_empty() => continue,
                    Err(e) if e.is_end_of_stream() => return got,
                    Err(e) => panic!("host get failed: {e}"),
                }
                if got.len() % 500 == 0 {
                    // A slow reader now and then, so that the sink fills up.
                    thread::sleep(Duration::from_millis(30));
                }
            }
        })
    };

    let addr = server.local_addr().to_string();
    let mut fleet = Fleet::new();
    let spawn = |fleet: &mut Fleet| {
        let n = fleet.len();
        fleet.spawn(
            "feed",
            &[
                ("HYDRA_CHAOS_ADDR", addr.clone()),
                ("HYDRA_CHAOS_FEED", n.to_string()),
                ("HYDRA_CHAOS_COUNT", PER_FEED.to_string()),
            ],
        )
    };
    for _ in 0..FEEDS {
        spawn(&mut fleet);
    }
    let mut logs: HashMap<usize, FeedLog> = HashMap::new();
    let mut eofs = 0usize;
    let fold = |logs: &mut HashMap<usize, FeedLog>, eofs: &mut usize, e: Event| match e {
        Event::Line(child, line) => {
            let log = logs.entry(child).or_default();
            match line.split_once(' ').unwrap_or((line.as_str(), "")) {
                ("R", _) => log.registered = true,
                ("K", seq) => log.acked.push(seq.parse().unwrap()),
                ("C", _) => log.closed = true,
                (_, why) => log.failed = Some(why.to_string()),
            }
        }
        Event::Eof => *eofs += 1,
    };

    let (mut kills, mut freezes) = (0u64, 0u64);
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut next_action = start + Duration::from_millis(rng.gen_range(100..400));
    while Instant::now() < end {
        if let Some(e) = fleet.next_event(next_action.min(end)) {
            fold(&mut logs, &mut eofs, e);
        }
        let now = Instant::now();
        if now < next_action {
            continue;
        }
        next_action = now + Duration::from_millis(rng.gen_range(150..400));
        let running = fleet.in_state(State::Running);
        if !running.is_empty() {
            let victim = running[rng.gen_range(0..running.len())];
            if fleet.in_state(State::Frozen).len() < 2 && rng.gen_bool(0.3) {
                let until = now + Duration::from_millis(rng.gen_range(1800..2600));
                fleet.freeze_until(victim, until);
                freezes += 1;
            } else {
                fleet.kill(victim);
                kills += 1;
            }
        }
        let alive = fleet.in_state(State::Running).len() + fleet.in_state(State::Frozen).len();
        for _ in alive..FEEDS {
            spawn(&mut fleet);
        }
    }
    fleet.thaw_all();

    // The sink's join seals it against new feeds: first let every living feed register.
    let ready_deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let waiting: Vec<usize> = fleet
            .in_state(State::Running)
            .into_iter()
            .filter(|i| {
                !logs
                    .get(i)
                    .is_some_and(|l| l.registered || l.failed.is_some())
            })
            .collect();
        if waiting.is_empty() {
            break;
        }
        let left = ready_deadline.saturating_duration_since(Instant::now());
        match fleet
            .events
            .recv_timeout(left.min(Duration::from_millis(50)))
        {
            Ok(e) => fold(&mut logs, &mut eofs, e),
            Err(_) if left.is_zero() => panic!("feeds {waiting:?} never registered"),
            Err(_) => {}
        }
    }
    let report = sink
        .join(Some(Duration::from_secs(60)))
        .expect("join must complete although killed feeds never unregistered");
    let received = getter.join().expect("the host's reader");
    fleet
        .wait_all(Duration::from_secs(20))
        .expect("feeds exit once done");
    let drain_deadline = Instant::now() + Duration::from_secs(10);
    while eofs < fleet.len() {
        let left = drain_deadline.saturating_duration_since(Instant::now());
        match fleet.events.recv_timeout(left) {
            Ok(e) => fold(&mut logs, &mut eofs, e),
            Err(_) => panic!("the output of {} feeds never ended", fleet.len() - eofs),
        }
    }

    let mut count: HashMap<(u32, u64), u32> = HashMap::new();
    for item in &received {
        *count.entry(*item).or_default() += 1;
    }
    let mut problems = Vec::new();
    for (item, n) in &count {
        if *n > 1 {
            problems.push(format!("{item:?} received {n} times"));
        }
    }
    let killed: HashSet<usize> = fleet.in_state(State::Killed).into_iter().collect();
    let (mut acked_total, mut unacked_received) = (0u64, 0u64);
    for i in 0..fleet.len() {
        let log = logs.remove(&i).unwrap_or_default();
        acked_total += log.acked.len() as u64;
        let acked: HashSet<u64> = log.acked.iter().copied().collect();
        for seq in &acked {
            if !count.contains_key(&(i as u32, *seq)) {
                problems.push(format!("feed {i}: acknowledged put {seq} never received"));
            }
        }
        let extra: Vec<u64> = (0..PER_FEED)
            .filter(|s| !acked.contains(s) && count.contains_key(&(i as u32, *s)))
            .collect();
        unacked_received += extra.len() as u64;
        // Puts are sequential: only the one in flight when the feed died may have landed.
        let next = acked.len() as u64;
        if extra.iter().any(|&s| s != next) {
            problems.push(format!(
                "feed {i}: received unacknowledged puts {extra:?} besides the one in flight"
            ));
        }
        if log.closed && acked.len() as u64 != PER_FEED {
            problems.push(format!(
                "feed {i} closed after {} of {PER_FEED} puts",
                acked.len()
            ));
        }
        if !log.closed && log.failed.is_none() && !killed.contains(&i) {
            problems.push(format!("feed {i} ended without closing or failing"));
        }
    }
    println!(
        "sink chaos figures: feeds_started={} kills={kills} freezes={freezes} \
         acked_puts={acked_total} received={} unacked_but_received={unacked_received} \
         duplicates={} join_feeds={} join_lost={}",
        fleet.len(),
        received.len(),
        count.values().filter(|&&n| n > 1).count(),
        report.feeds,
        report.lost
    );
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(report.received, received.len() as u64);
    server.shutdown();
}

/// A feed process: register, put `HYDRA_CHAOS_COUNT` numbered items one at a time,
/// printing each acknowledged one, then close.
pub fn feed_main() {
    let addr = std::env::var("HYDRA_CHAOS_ADDR").expect("HYDRA_CHAOS_ADDR");
    let no: u32 = env_or("HYDRA_CHAOS_FEED", 0);
    let count: u64 = env_or("HYDRA_CHAOS_COUNT", 100);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let name = format!("feed-{no}");
        let client = match ClientSettings::new(addr, name.clone()).connect().await {
            Ok(c) => c,
            Err(e) => return println!("@F connect: {e}"),
        };
        let feed = match client.feed::<(u32, u64)>("results", &name).await {
            Ok(f) => f,
            Err(e) => return println!("@F register: {e}"),
        };
        println!("@R");
        for seq in 0..count {
            if let Err(e) = feed.put(&(no, seq)).await {
                return println!("@F put {seq}: {e}");
            }
            println!("@K {seq}");
        }
        match feed.close().await {
            Ok(()) => println!("@C"),
            Err(e) => println!("@F close: {e}"),
        }
    });
}
