//! Chaos through the `hydra` command: `hydra serve` with several `hydra work` processes
//! while a loop kills workers (SIGKILL) and freezes them past the lease timeout (SIGSTOP,
//! then SIGCONT), starting replacements. Then the JSON report must list every task exactly
//! once, in input order, with the right outcome, and every exit status must be right.
//!
//! Sizes come from the environment: `HYDRA_CHAOS_TASKS` (default 400),
//! `HYDRA_CHAOS_SECS` (longest chaos time, default 15), `HYDRA_CHAOS_SEED` (printed).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const WORKERS: usize = 4;
const JOBS: &str = "2";
/// Every wait on a process is bounded by this.
const LIMIT: Duration = Duration::from_secs(120);

/// Each task appends a line to `runs.log` (an execution), runs briefly, and passes unless
/// its name starts with `bad-`.
const TASK: &str = r#"#!/bin/sh
echo "$1 $HYDRA_ATTEMPT $HYDRA_WORKER" >> "$(dirname "$0")/runs.log"
sleep 0.15
case "$1" in bad-*) exit 3 ;; esac
exit 0
"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Frozen,
    Killed,
}

/// The serve process and every worker; dropping it thaws and kills whatever still runs.
struct Procs {
    serve: Child,
    workers: Vec<(Child, State)>,
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (child, state) in &mut self.workers {
            if *state == State::Frozen {
                signal(child.id(), "CONT");
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self.serve.kill();
        let _ = self.serve.wait();
    }
}

/// Sends a signal with the shell's `kill` builtin: this file keeps to the crate's
/// dependencies, and `sh` is on every host that runs these tests (the tasks need it too).
fn signal(pid: u32, name: &str) {
    let _ = Command::new("sh")
        .args(["-c", "kill -s \"$0\" \"$1\"", name])
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

/// SplitMix64: a small seeded generator, so that a run can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `range`.
    fn gen_range(&mut self, range: std::ops::Range<u64>) -> u64 {
        range.start + self.next() % (range.end - range.start)
    }

    /// True with probability `p`.
    fn gen_bool(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn hydra() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hydra"));
    c.env_remove("HYDRA_TOKEN").env("HYDRA_LOG", "warn");
    c
}

fn spawn_worker(dir: &Path, addr: &str, n: usize) -> Child {
    let err = std::fs::File::create(dir.join(format!("worker-{n}.err"))).unwrap();
    hydra()
        .args(["work", "--jobs", JOBS, "--connect", addr])
        .args(["--name", &format!("w{n}")])
        .arg("--")
        .arg(dir.join("task.sh"))
        .arg("{}")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("spawn hydra work")
}

#[test]
fn serve_and_workers_under_chaos_report_every_task_once() {
    let count: usize = env_or("HYDRA_CHAOS_TASKS", 400);
    let secs: u64 = env_or("HYDRA_CHAOS_SECS", 15);
    let seed: u64 = env_or(
        "HYDRA_CHAOS_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    );
    println!("hydra chaos: {count} tasks, at most {secs} s of chaos, seed {seed}");
    let mut rng = Rng(seed);

    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("task.sh");
    std::fs::write(&script, TASK).unwrap();
    let made_executable = Command::new("chmod").arg("+x").arg(&script).status();
    assert!(made_executable.unwrap().success());
    let input: Vec<String> = (0..count)
        .map(|i| {
            if i % 10 == 3 {
                format!("bad-{i}")
            } else {
                format!("ok-{i}")
            }
        })
        .collect();
    std::fs::write(dir.path().join("tasks.txt"), input.join("\n") + "\n").unwrap();

    let report_path = dir.path().join("report.json");
    let mut serve = hydra()
        .args(["serve", "--listen", "127.0.0.1:0", "--tasks"])
        .arg(dir.path().join("tasks.txt"))
        .arg("--json")
        .arg(&report_path)
        .args(["--lease-timeout", "1", "--max-attempts", "50"])
        .args(["--worker-timeout", "60", "--progress", "lines"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hydra serve");
    let (tx, lines) = mpsc::channel();
    let out = serve.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut err = serve.stderr.take().unwrap();
    let serve_stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut procs = Procs {
        serve,
        workers: Vec::new(),
    };
    let addr = loop {
        match lines.recv_timeout(LIMIT) {
            Ok(line) if line.contains("workers can connect to") => {
                break line.rsplit(' ').next().unwrap().to_string();
            }
            Ok(_) => {}
            Err(_) => panic!("hydra serve never said where workers connect"),
        }
    };
    for _ in 0..WORKERS {
        let n = procs.workers.len();
        procs
            .workers
            .push((spawn_worker(dir.path(), &addr, n), State::Running));
    }

    let (mut kills, mut freezes) = (0u32, 0u32);
    let mut ever_frozen = HashSet::new();
    let mut frozen: Vec<(usize, Instant)> = Vec::new();
    let start = Instant::now();
    let chaos_end = start + Duration::from_secs(secs);
    let mut next_action = start + Duration::from_millis(rng.gen_range(300..800));
    let serve_code = loop {
        if let Some(status) = procs.serve.try_wait().unwrap() {
            break Some(status);
        }
        let now = Instant::now();
        if now >= chaos_end {
            break None;
        }
        frozen.retain(|&(i, at)| {
            if at <= now {
                signal(procs.workers[i].0.id(), "CONT");
                procs.workers[i].1 = State::Running;
            }
            at > now
        });
        if now >= next_action {
            next_action = now + Duration::from_millis(rng.gen_range(400..900));
            let mut running = Vec::new();
            for (i, (child, state)) in procs.workers.iter_mut().enumerate() {
                if *state == State::Running && matches!(child.try_wait(), Ok(None)) {
                    running.push(i);
                }
            }
            if !running.is_empty() {
                let victim = running[rng.gen_range(0..running.len() as u64) as usize];
                let (child, state) = &mut procs.workers[victim];
                if frozen.is_empty() && rng.gen_bool(0.4) {
                    signal(child.id(), "STOP");
                    *state = State::Frozen;
                    freezes += 1;
                    ever_frozen.insert(victim);
                    let hold = Duration::from_millis(rng.gen_range(1500..2500));
                    frozen.push((victim, now + hold));
                } else {
                    let _ = child.kill();
                    let _ = child.wait();
                    *state = State::Killed;
                    kills += 1;
                }
                let alive = procs
                    .workers
                    .iter_mut()
                    .filter_map(|(c, s)| {
                        (*s != State::Killed && matches!(c.try_wait(), Ok(None))).then_some(())
                    })
                    .count();
                for _ in alive..WORKERS {
                    let n = procs.workers.len();
                    procs
                        .workers
                        .push((spawn_worker(dir.path(), &addr, n), State::Running));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for (i, _) in frozen.drain(..) {
        signal(procs.workers[i].0.id(), "CONT");
        procs.workers[i].1 = State::Running;
    }
    let chaos_secs = start.elapsed().as_secs_f64();
    let serve_status = match serve_code {
        Some(s) => s,
        None => {
            let deadline = Instant::now() + LIMIT;
            loop {
                if let Some(s) = procs.serve.try_wait().unwrap() {
                    break s;
                }
                assert!(
                    Instant::now() < deadline,
                    "hydra serve did not finish within {LIMIT:?} after the chaos"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    let stderr = serve_stderr.join().unwrap_or_default();

    // Workers end once the coordinator's queue ends, with 0. Exit 2 ("cannot work for the
    // coordinator") is right for a worker frozen past the lease timeout (its connection is
    // gone when it wakes), and for a replacement that came as the coordinator finished and
    // ran nothing; a worker that ran tasks undisturbed must exit 0.
    let runs = std::fs::read_to_string(dir.path().join("runs.log")).unwrap_or_default();
    let ran_tasks: HashSet<&str> = runs
        .lines()
        .filter_map(|l| l.split(' ').nth(2)?.split('/').next())
        .collect();
    let deadline = Instant::now() + LIMIT;
    for (i, (child, state)) in procs.workers.iter_mut().enumerate() {
        if *state == State::Killed {
            continue;
        }
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "worker w{i} did not exit after the run ended"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let werr =
            std::fs::read_to_string(dir.path().join(format!("worker-{i}.err"))).unwrap_or_default();
        let frozen = ever_frozen.contains(&i);
        let ran = ran_tasks.contains(format!("w{i}").as_str());
        match status.code() {
            Some(0) => {}
            Some(2) if (frozen || !ran) && werr.contains("cannot work for the coordinator") => {}
            _ => panic!(
                "worker w{i} (frozen: {frozen}, ran tasks: {ran}) exited with {status}: {werr}"
            ),
        }
    }

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap())
            .unwrap_or_else(|e| panic!("the JSON report does not parse: {e}\n{stderr}"));
    let tasks = report["tasks"].as_array().expect("tasks");
    let mut executions: HashMap<&str, usize> = HashMap::new();
    for line in runs.lines() {
        *executions
            .entry(line.split(' ').next().unwrap_or_default())
            .or_default() += 1;
    }
    let lost_attempts: usize = tasks
        .iter()
        .flat_map(|t| t["attempts"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["outcome"] == "lost")
        .count();
    println!(
        "hydra chaos figures: tasks={count} workers_started={} kills={kills} freezes={freezes} \
         executions={} repeated_executions={} lost_attempts_reported={lost_attempts} \
         chaos_s={chaos_secs:.1} serve_exit={:?}",
        procs.workers.len(),
        runs.lines().count(),
        runs.lines().count().saturating_sub(count),
        serve_status.code(),
    );

    assert_eq!(tasks.len(), count, "every task exactly once");
    let mut problems = Vec::new();
    for (t, name) in tasks.iter().zip(&input) {
        if t["task"] != name.as_str() {
            problems.push(format!(
                "expected {name} in input order, found {}",
                t["task"]
            ));
            continue;
        }
        let want = if name.starts_with("bad-") {
            "failed"
        } else {
            "passed"
        };
        if t["outcome"] != want {
            problems.push(format!(
                "{name}: outcome {} instead of {want}: {t}",
                t["outcome"]
            ));
        }
        let attempts = t["attempts"].as_array().cloned().unwrap_or_default();
        match attempts.last() {
            Some(last) if last["outcome"] == want => {}
            _ => problems.push(format!("{name}: its last attempt is not {want}: {t}")),
        }
        let ran = attempts.iter().filter(|a| a["outcome"] != "lost").count();
        if ran != 1 {
            problems.push(format!("{name}: {ran} finished attempts reported: {t}"));
        }
        if executions.get(name.as_str()).copied().unwrap_or(0) == 0 {
            problems.push(format!("{name}: reported {want} but never ran"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}\nserve stderr:\n{stderr}",
        problems.len(),
        problems.join("\n")
    );
    let bad = input.iter().filter(|n| n.starts_with("bad-")).count();
    let s = &report["summary"];
    assert_eq!(
        (
            &s["total"],
            &s["passed"],
            &s["failed"],
            &s["flaky"],
            &s["lost"],
            &s["timed_out"]
        ),
        (
            &count.into(),
            &(count - bad).into(),
            &bad.into(),
            &0.into(),
            &0.into(),
            &0.into()
        ),
        "summary: {s}"
    );
    assert_eq!(
        serve_status.code(),
        Some(1),
        "serve exits 1 because tasks failed (and for no other reason): {stderr}"
    );
}
