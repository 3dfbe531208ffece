//! Spawning the real `hydra` binary: a guard that kills what it started, bounded waits that
//! fail with a clear message, and helpers for task scripts and reports.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Every wait in these tests is bounded by this.
pub const LIMIT: Duration = Duration::from_secs(60);

/// The binary under test.
pub fn hydra() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hydra"));
    c.env_remove("HYDRA_TOKEN").env("HYDRA_LOG", "warn");
    c
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn code(&self) -> i32 {
        self.status.code().expect("hydra exited by a signal")
    }
}

/// A spawned process, killed (SIGKILL) and reaped when dropped; its output is collected by
/// threads so that it never blocks on a full pipe.
pub struct Proc {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    stdout: Option<std::thread::JoinHandle<String>>,
    stderr: Option<std::thread::JoinHandle<String>>,
    what: String,
}

impl Proc {
    pub fn spawn(mut command: Command, what: &str) -> Proc {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn hydra");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line.clone());
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        let mut err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Proc {
            child,
            lines,
            stdout: Some(stdout),
            stderr: Some(stderr),
            what: what.to_string(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first line of standard output that contains `needle`.
    pub fn wait_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("{}: no line with {needle:?} within {LIMIT:?}", self.what),
            }
        }
    }

    /// Waits for the exit (bounded) and collects the output.
    pub fn finish(mut self) -> Output {
        let deadline = Instant::now() + LIMIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let stderr = self.stderr.take().unwrap().join().unwrap_or_default();
                panic!(
                    "{} did not exit within {LIMIT:?}; stderr:\n{stderr}",
                    self.what
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Output {
            status,
            stdout: self.stdout.take().unwrap().join().unwrap_or_default(),
            stderr: self.stderr.take().unwrap().join().unwrap_or_default(),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a command to its end (bounded).
pub fn run(command: Command, what: &str) -> Output {
    Proc::spawn(command, what).finish()
}

/// Writes an executable shell script.
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Writes a tasks file.
pub fn tasks_file(dir: &Path, tasks: &[&str]) -> PathBuf {
    let path = dir.join("tasks.txt");
    std::fs::write(&path, tasks.join("\n") + "\n").unwrap();
    path
}

/// Reads and parses the JSON report.
pub fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("JSON report written");
    serde_json::from_str(&text).expect("JSON report parses")
}

/// Waits until `check` holds (bounded), polling.
pub fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Checks the JSON report's shape: every listed field present with the right type, every
/// task exactly once in input order, disjoint counts that add up. Returns tasks by name.
pub fn check_report(
    report: &serde_json::Value,
    input: &[&str],
) -> std::collections::HashMap<String, serde_json::Value> {
    let summary = &report["summary"];
    let tasks = report["tasks"].as_array().expect("tasks array");
    let names: Vec<&str> = tasks.iter().map(|t| t["task"].as_str().unwrap()).collect();
    assert_eq!(names, input, "every task exactly once, in input order");
    let count = |k: &str| summary[k].as_u64().unwrap_or_else(|| panic!("summary.{k}"));
    assert_eq!(count("total"), input.len() as u64);
    assert_eq!(
        count("passed") + count("failed") + count("flaky") + count("timed_out") + count("lost"),
        count("total"),
        "outcome counts are disjoint and add up"
    );
    assert!(summary["duration_ms"].is_u64());
    for (outcome, key) in [
        ("passed", "passed"),
        ("failed", "failed"),
        ("flaky", "flaky"),
        ("timed_out", "timed_out"),
        ("lost", "lost"),
    ] {
        let n = tasks.iter().filter(|t| t["outcome"] == outcome).count() as u64;
        assert_eq!(n, count(key), "summary.{key} matches the tasks");
    }
    for t in tasks {
        let attempts = t["attempts"].as_array().expect("attempts array");
        assert!(!attempts.is_empty(), "{t}");
        for (i, a) in attempts.iter().enumerate() {
            assert_eq!(
                a["attempt"],
                i as u64 + 1,
                "attempts numbered in order: {t}"
            );
            assert!(a["worker"].is_string(), "{a}");
            let outcome = a["outcome"].as_str().unwrap();
            assert!(
                ["passed", "failed", "timed_out", "lost"].contains(&outcome),
                "{a}"
            );
            assert!(a["exit_code"].is_i64() || a["exit_code"].is_null(), "{a}");
            assert!(a["duration_ms"].is_u64(), "{a}");
        }
    }
    tasks
        .iter()
        .map(|t| (t["task"].as_str().unwrap().to_string(), t.clone()))
        .collect()
}

/// The outcomes of a task's attempts.
pub fn attempt_outcomes(task: &serde_json::Value) -> Vec<String> {
    task["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap().to_string())
        .collect()
}
