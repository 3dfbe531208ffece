//! Shared by the integration tests: example processes as real consumers and feeds, a
//! guard that kills them, and bounded waits on their output.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::sync::Once;
use std::time::Duration;

use hydra_queue::QueueSettings;

/// The path of an example binary of this crate.
///
/// `cargo test` builds the examples before it runs tests; `cargo test --test x` does not,
/// so a missing example is built here (an existing one may then be stale: run plain
/// `cargo test -p hydra-queue` after changing the examples).
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> -> target/<profile>/examples/<name>
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = dir.join("examples").join(name);
    static BUILD: Once = Once::new();
    if !path.exists() {
        BUILD.call_once(|| {
            let status = Command::new(env!("CARGO"))
                .args(["build", "-q", "-p", "hydra-queue", "--examples"])
                .status()
                .expect("run cargo to build the examples");
            assert!(status.success(), "building the examples failed");
        });
    }
    path
}

/// A child process that is killed when the guard drops, whatever the test's outcome.
pub struct ChildGuard {
    pub child: Child,
    lines: mpsc::Receiver<String>,
}

impl ChildGuard {
    /// Starts an example with `settings` (as JSON) and extra args; stdout is read line by line.
    pub fn spawn(name: &str, settings: &QueueSettings, args: &[&str]) -> ChildGuard {
        let json = serde_json::to_string(settings).unwrap();
        let mut child = Command::new(example(name))
            .arg(json)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start example {name}: {e}"));
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        ChildGuard { child, lines }
    }

    /// The next stdout line that starts with `prefix`, waiting at most `timeout`.
    pub fn expect_line(&self, prefix: &str, timeout: Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => continue,
                Err(_) => panic!("no line starting with {prefix:?} within {timeout:?}"),
            }
        }
    }

    /// Every stdout line until the process exits (bounded).
    pub fn drain(&self, timeout: Duration) -> Vec<String> {
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => out.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => return out,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("process still writing after {timeout:?}")
                }
            }
        }
    }

    /// Sends a signal (SIGKILL, SIGSTOP, SIGCONT...).
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, sig).expect("signal child");
    }

    /// Waits (bounded) for the process to exit; returns whether it succeeded.
    pub fn wait(&mut self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "process did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Bounds an async operation in a test: fails with `what` if it takes longer than `secs`.
pub async fn within<F: std::future::Future>(secs: u64, what: &str, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {secs} s"))
}
