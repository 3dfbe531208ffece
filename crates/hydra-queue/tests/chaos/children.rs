//! Child processes of the chaos tests: this test binary re-executed in a role (consumer,
//! feed), the `@`-lines each one prints read on a thread per child, signals to kill,
//! freeze and thaw them, and a guard that kills whatever is left when the test ends.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Environment variable naming the role a re-executed child plays.
pub const ROLE_VAR: &str = "HYDRA_CHAOS_ROLE";
/// The test (in `tests/chaos.rs`) that a child runs: it does nothing without [`ROLE_VAR`].
pub const CHILD_TEST: &str = "chaos_child";

/// What the reader threads report, tagged with the child's index in the [`Fleet`].
#[derive(Debug)]
pub enum Event {
    /// A line the child printed that starts with `@` (without the `@`).
    Line(usize, String),
    /// The child's stdout closed: it exited or was killed.
    Eof,
}

/// Where a child is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Running.
    Running,
    /// Stopped with SIGSTOP.
    Frozen,
    /// Killed with SIGKILL by the test.
    Killed,
    /// Exited by itself (reaped).
    Exited,
}

struct Proc {
    child: Child,
    state: State,
    /// When a frozen child is due to be thawed by [`Fleet::next_event`].
    thaw_at: Option<Instant>,
}

/// Every child a test started. Dropping it thaws and kills those still alive, so that no
/// test leaves processes behind, whether it passes, fails or panics.
pub struct Fleet {
    procs: Vec<Proc>,
    tx: mpsc::Sender<Event>,
    /// Lines and ends of output of every child, in the order the readers saw them.
    pub events: mpsc::Receiver<Event>,
}

impl Fleet {
    /// No children yet.
    pub fn new() -> Self {
        let (tx, events) = mpsc::channel();
        Fleet {
            procs: Vec::new(),
            tx,
            events,
        }
    }

    /// Starts this test binary as a child in `role`, with `envs`; returns its index.
    pub fn spawn(&mut self, role: &str, envs: &[(&str, String)]) -> usize {
        let exe = std::env::current_exe().expect("the test binary's path");
        let mut cmd = Command::new(exe);
        cmd.args([
            CHILD_TEST,
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(ROLE_VAR, role)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("failed to start a child test process");
        let stdout = child.stdout.take().expect("stdout is piped");
        let index = self.procs.len();
        let tx = self.tx.clone();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix('@') {
                    if tx.send(Event::Line(index, rest.to_string())).is_err() {
                        return;
                    }
                }
            }
            let _ = tx.send(Event::Eof);
        });
        self.procs.push(Proc {
            child,
            state: State::Running,
            thaw_at: None,
        });
        index
    }

    /// The child's state, after reaping it if it exited by itself.
    pub fn state(&mut self, i: usize) -> State {
        let p = &mut self.procs[i];
        if p.state == State::Running {
            if let Ok(Some(_)) = p.child.try_wait() {
                p.state = State::Exited;
            }
        }
        p.state
    }

    /// Children in `state` now.
    pub fn in_state(&mut self, state: State) -> Vec<usize> {
        (0..self.procs.len())
            .filter(|&i| self.state(i) == state)
            .collect()
    }

    /// Children started so far.
    pub fn len(&self) -> usize {
        self.procs.len()
    }

    fn signal(&self, i: usize, signal: Signal) {
        let pid = Pid::from_raw(self.procs[i].child.id() as i32);
        // The child may have exited on its own in the meantime: nothing to do then.
        let _ = kill(pid, signal);
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self, i: usize) {
        let p = &mut self.procs[i];
        if matches!(p.state, State::Killed | State::Exited) {
            return;
        }
        let _ = p.child.kill();
        let _ = p.child.wait();
        p.state = State::Killed;
    }

    /// SIGSTOP: the process keeps its sockets open but sends nothing (a hung host).
    pub fn freeze(&mut self, i: usize) {
        if self.state(i) == State::Running {
            self.signal(i, Signal::SIGSTOP);
            self.procs[i].state = State::Frozen;
        }
    }

    /// SIGCONT.
    pub fn thaw(&mut self, i: usize) {
        if self.procs[i].state == State::Frozen {
            self.signal(i, Signal::SIGCONT);
            self.procs[i].state = State::Running;
        }
        self.procs[i].thaw_at = None;
    }

    /// Freezes a running child until `at`: [`next_event`](Self::next_event) thaws it then.
    pub fn freeze_until(&mut self, i: usize, at: Instant) {
        self.freeze(i);
        if self.procs[i].state == State::Frozen {
            self.procs[i].thaw_at = Some(at);
        }
    }

    /// Thaws every frozen child.
    pub fn thaw_all(&mut self) {
        for i in 0..self.procs.len() {
            self.thaw(i);
        }
    }

    /// The chaos loops' step: waits for the next line or end of output of any child, at
    /// most until `until` or the earliest due thaw, then thaws every child whose time came.
    pub fn next_event(&mut self, until: Instant) -> Option<Event> {
        let wake = self
            .procs
            .iter()
            .filter_map(|p| p.thaw_at)
            .chain([until])
            .min()
            .expect("until is always there");
        let event = self
            .events
            .recv_timeout(wake.saturating_duration_since(Instant::now()))
            .ok();
        let now = Instant::now();
        for i in 0..self.procs.len() {
            if self.procs[i].thaw_at.is_some_and(|at| at <= now) {
                self.thaw(i);
            }
        }
        event
    }

    /// Waits until every child has exited, at most `bound`; names those that did not.
    pub fn wait_all(&mut self, bound: Duration) -> Result<(), String> {
        let deadline = Instant::now() + bound;
        loop {
            let running: Vec<usize> = (0..self.procs.len())
                .filter(|&i| matches!(self.state(i), State::Running | State::Frozen))
                .collect();
            if running.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let pids: Vec<u32> = running.iter().map(|&i| self.procs[i].child.id()).collect();
                return Err(format!(
                    "{} children still running after {bound:?} (pids {pids:?})",
                    running.len()
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for p in &mut self.procs {
            if matches!(p.state, State::Running | State::Frozen) {
                let pid = Pid::from_raw(p.child.id() as i32);
                let _ = kill(pid, Signal::SIGCONT);
                let _ = p.child.kill();
                let _ = p.child.wait();
            }
        }
    }
}

/// Resident memory of this process in KiB, from `/proc/self/status` (0 if unreadable).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// An environment variable parsed, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
