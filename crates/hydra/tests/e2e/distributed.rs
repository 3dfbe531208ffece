//! `hydra serve` with `hydra work` processes: a worker killed in the middle of a task, a
//! task lost after --max-attempts, a late worker, refusals, and TLS with a token.

use std::path::Path;

use crate::support::*;

/// Every task but `victim` waits for the file `go` (bounded), after saying which slot runs
/// it; `victim` on its first attempt records its worker's pid and waits for that worker to
/// die.
const TASK: &str = r#"
dir="$(dirname "$0")"
if [ "$1" = victim ] && [ "$HYDRA_ATTEMPT" = 1 ]; then
  echo "$PPID" > "$dir/victim.tmp" && mv "$dir/victim.tmp" "$dir/victim.pid"
  i=0
  while kill -0 "$PPID" 2>/dev/null && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done
  exit 1
fi
touch "$dir/seen-$HYDRA_WORKER"
i=0
while [ ! -e "$dir/go" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done
echo "$1 done on $HYDRA_WORKER attempt $HYDRA_ATTEMPT"
"#;

/// Starts `hydra serve` on a free port; returns it with the address workers connect to.
pub fn serve(dir: &Path, tasks: &Path, extra: &[&str]) -> (Proc, String) {
    let mut c = hydra();
    c.args(["serve", "--listen", "127.0.0.1:0", "--tasks"])
        .arg(tasks)
        .arg("--json")
        .arg(dir.join("report.json"))
        .args(extra);
    let p = Proc::spawn(c, "hydra serve");
    let line = p.wait_line("workers can connect to");
    let addr = line.rsplit(' ').next().unwrap().to_string();
    (p, addr)
}

fn worker(addr: &str, name: &str, cmd: &Path, extra: &[&str]) -> Proc {
    let mut c = hydra();
    c.args(["work", "--jobs", "1", "--connect", addr, "--name", name])
        .args(extra)
        .arg("--")
        .arg(cmd)
        .arg("{}");
    Proc::spawn(c, &format!("hydra work {name}"))
}

fn seen_workers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_prefix("seen-").map(str::to_string))
        .collect()
}

/// Runs `victim` plus eight other tasks on three workers, kills (or, with `freeze`, stops)
/// the worker running `victim` once every worker is busy, and returns the JSON report and
/// serve's exit code.
fn kill_one_of_three(
    max_attempts: &str,
    freeze: bool,
) -> (serde_json::Value, i32, Vec<&'static str>) {
    let dir = tempfile::tempdir().unwrap();
    let cmd = script(dir.path(), "task.sh", TASK);
    let input = vec!["victim", "t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8"];
    let tasks = tasks_file(dir.path(), &input);
    let (serve, addr) = serve(
        dir.path(),
        &tasks,
        &[
            "--max-attempts",
            max_attempts,
            "--worker-timeout",
            "30",
            "--lease-timeout",
            "2",
        ],
    );
    let mut workers: Vec<Proc> = ["w1", "w2", "w3"]
        .iter()
        .map(|n| worker(&addr, n, &cmd, &[]))
        .collect();
    let pidfile = dir.path().join("victim.pid");
    wait_until("the victim task to start", || pidfile.exists());
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let victim = workers
        .iter()
        .position(|w| w.pid() == pid)
        .expect("the victim's parent is one of our workers");
    wait_until("the two other workers to be busy", || {
        seen_workers(dir.path()).len() >= 2
    });
    if freeze {
        // A hung host: the connection stays open but heartbeats stop.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGSTOP,
        )
        .unwrap();
    } else {
        // SIGKILL in the middle of the task: no goodbye, no result.
        workers[victim].child.kill().unwrap();
        workers[victim].child.wait().unwrap();
    }
    std::fs::write(dir.path().join("go"), "").unwrap();
    let out = serve.finish();
    let report = json(&dir.path().join("report.json"));
    for (i, w) in workers.drain(..).enumerate() {
        if i != victim {
            let o = w.finish();
            assert_eq!(o.code(), 0, "a surviving worker exits 0: {}", o.stderr);
        }
    }
    (report, out.code(), input)
}

#[test]
fn serve_with_three_workers_finishes_the_task_of_a_killed_worker_on_another() {
    let (report, code, input) = kill_one_of_three("3", false);
    assert_eq!(code, 0, "every task passed: {report}");
    let tasks = check_report(&report, &input);
    for name in &input {
        assert_eq!(tasks[*name]["outcome"], "passed", "{name}: {report}");
    }
    let victim = &tasks["victim"];
    assert_eq!(attempt_outcomes(victim), ["lost", "passed"]);
    let first = victim["attempts"][0]["worker"].as_str().unwrap();
    let second = victim["attempts"][1]["worker"].as_str().unwrap();
    assert_ne!(first, second, "run again on another worker");
    assert!(first.ends_with("-0") && second.ends_with("-0"));
}

#[test]
fn the_task_of_a_frozen_worker_goes_to_another_after_the_lease_timeout() {
    let (report, code, input) = kill_one_of_three("3", true);
    assert_eq!(code, 0, "every task passed: {report}");
    let tasks = check_report(&report, &input);
    let victim = &tasks["victim"];
    assert_eq!(attempt_outcomes(victim), ["lost", "passed"]);
    assert_ne!(
        victim["attempts"][0]["worker"],
        victim["attempts"][1]["worker"]
    );
}

#[test]
fn a_task_whose_worker_dies_max_attempts_times_is_lost() {
    let (report, code, input) = kill_one_of_three("1", false);
    assert_eq!(code, 1, "a lost task makes exit 1");
    let tasks = check_report(&report, &input);
    assert_eq!(tasks["victim"]["outcome"], "lost");
    assert_eq!(attempt_outcomes(&tasks["victim"]), ["lost"]);
    assert_eq!(report["summary"]["lost"], 1);
    assert_eq!(report["summary"]["passed"], 8);
}

#[test]
fn a_worker_arriving_after_everything_is_handed_out_ends_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let cmd = script(dir.path(), "task.sh", TASK);
    let tasks = tasks_file(dir.path(), &["only"]);
    let (serve, addr) = serve(dir.path(), &tasks, &[]);
    let first = worker(&addr, "first", &cmd, &[]);
    wait_until("the only task to start", || {
        !seen_workers(dir.path()).is_empty()
    });
    let twin = worker(&addr, "first", &cmd, &[]).finish();
    assert_eq!(twin.code(), 2, "a duplicate worker name is refused");
    assert!(twin.stderr.contains("already connected"), "{}", twin.stderr);
    let late = worker(&addr, "late", &cmd, &[]).finish();
    assert_eq!(late.code(), 0, "{}", late.stderr);
    assert!(
        late.stderr.contains("nothing left to run"),
        "{}",
        late.stderr
    );
    std::fs::write(dir.path().join("go"), "").unwrap();
    assert_eq!(serve.finish().code(), 0);
    assert_eq!(first.finish().code(), 0);
}

#[test]
fn serve_stops_with_exit_2_when_no_worker_connects() {
    let dir = tempfile::tempdir().unwrap();
    let tasks = tasks_file(dir.path(), &["a"]);
    let (serve, _) = serve(dir.path(), &tasks, &["--worker-timeout", "0.5"]);
    let out = serve.finish();
    assert_eq!(out.code(), 2);
    assert!(out.stderr.contains("no worker connected"), "{}", out.stderr);
    assert!(
        !dir.path().join("report.json").exists(),
        "no empty report is left behind"
    );
}

#[test]
fn a_worker_with_the_wrong_token_is_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let tasks = tasks_file(dir.path(), &["a"]);
    std::fs::write(dir.path().join("token"), "right\n").unwrap();
    let token = dir.path().join("token").display().to_string();
    let (serve, addr) = serve(
        dir.path(),
        &tasks,
        &["--token-file", &token, "--worker-timeout", "30"],
    );
    let cmd = script(dir.path(), "task.sh", "true");
    let mut c = hydra();
    c.args(["work", "--connect", &addr, "--", "true"])
        .env("HYDRA_TOKEN", "wrong");
    let out = run(c, "hydra work");
    assert_eq!(out.code(), 2, "{}", out.stderr);
    assert!(out.stderr.contains("authentication"), "{}", out.stderr);
    // The right token works, and the run completes.
    let ok = worker(&addr, "ok", &cmd, &["--token-file", &token]).finish();
    assert_eq!(ok.code(), 0, "{}", ok.stderr);
    assert_eq!(serve.finish().code(), 0);
}

#[test]
fn an_unreachable_coordinator_is_exit_2() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut c = hydra();
    c.args([
        "work",
        "--connect",
        &format!("127.0.0.1:{port}"),
        "--connect-timeout",
        "0.5",
        "--",
        "true",
    ]);
    let out = run(c, "hydra work");
    assert_eq!(out.code(), 2);
    assert!(
        out.stderr.contains(&format!("127.0.0.1:{port}")),
        "{}",
        out.stderr
    );
}

#[test]
fn a_failed_task_is_retried_on_another_connected_worker() {
    let dir = tempfile::tempdir().unwrap();
    // Both tasks wait until both workers hold one; `a` then fails on its first attempt.
    let cmd = script(
        dir.path(),
        "task.sh",
        r#"dir="$(dirname "$0")"
touch "$dir/seen-$HYDRA_WORKER"
i=0
while [ ! -e "$dir/go" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done
if [ "$1" = a ] && [ "$HYDRA_ATTEMPT" = 1 ]; then exit 1; fi"#,
    );
    let tasks = tasks_file(dir.path(), &["a", "b"]);
    let (serve, addr) = serve(dir.path(), &tasks, &["--retries", "1"]);
    let w1 = worker(&addr, "w1", &cmd, &[]);
    let w2 = worker(&addr, "w2", &cmd, &[]);
    wait_until("both workers to hold a task", || {
        seen_workers(dir.path()).len() == 2
    });
    std::fs::write(dir.path().join("go"), "").unwrap();
    assert_eq!(serve.finish().code(), 0);
    let tasks = check_report(&json(&dir.path().join("report.json")), &["a", "b"]);
    assert_eq!(tasks["a"]["outcome"], "flaky");
    assert_eq!(attempt_outcomes(&tasks["a"]), ["failed", "passed"]);
    assert_ne!(
        tasks["a"]["attempts"][0]["worker"], tasks["a"]["attempts"][1]["worker"],
        "the retry ran on the other worker"
    );
    assert_eq!(w1.finish().code(), 0);
    assert_eq!(w2.finish().code(), 0);
}

#[test]
fn run_listen_shares_tasks_between_local_slots_and_a_remote_worker() {
    let dir = tempfile::tempdir().unwrap();
    let cmd = script(dir.path(), "task.sh", TASK);
    let tasks = tasks_file(dir.path(), &["a", "b"]);
    let json_path = dir.path().join("r.json");
    let mut c = hydra();
    c.args(["run", "--jobs", "1", "--listen", "127.0.0.1:0", "--tasks"])
        .arg(&tasks)
        .arg("--json")
        .arg(&json_path)
        .arg("--")
        .arg(&cmd)
        .arg("{}");
    let run = Proc::spawn(c, "hydra run --listen");
    let line = run.wait_line("workers can connect to");
    let addr = line.rsplit(' ').next().unwrap().to_string();
    let remote = worker(&addr, "remote", &cmd, &[]);
    wait_until(
        "the local slot and the remote worker to hold a task each",
        || seen_workers(dir.path()).len() == 2,
    );
    std::fs::write(dir.path().join("go"), "").unwrap();
    let out = run.finish();
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(remote.finish().code(), 0);
    let mut workers = seen_workers(dir.path());
    workers.sort();
    assert_eq!(workers, ["local-0", "remote-0"]);
    check_report(&json(&json_path), &["a", "b"]);
}
