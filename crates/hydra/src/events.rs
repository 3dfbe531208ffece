//! Typed events of a run and the reports they carry. The coordinator emits them and never
//! prints; reporters ([`crate::report`]) consume them.

use std::time::Duration;

use serde::Serialize;

pub use crate::messages::AttemptOutcome;

/// The final outcome of a task. Disjoint: every task has exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Passed on its first attempt that ran to the end.
    Passed,
    /// Failed on every attempt.
    Failed,
    /// Failed or timed out, then passed on a retry.
    Flaky,
    /// The last attempt hit `--timeout`.
    TimedOut,
    /// Its worker died or hung `--max-attempts` times.
    Lost,
}

impl Outcome {
    /// The label of the line reporter: `PASS`, `FAIL`, `FLAKY`, `TIMEOUT` or `LOST`.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Passed => "PASS",
            Outcome::Failed => "FAIL",
            Outcome::Flaky => "FLAKY",
            Outcome::TimedOut => "TIMEOUT",
            Outcome::Lost => "LOST",
        }
    }

    /// Whether the run still succeeds with this outcome.
    pub fn is_success(self) -> bool {
        matches!(self, Outcome::Passed | Outcome::Flaky)
    }
}

/// One attempt of a task, as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptReport {
    /// 1 for the first attempt (`HYDRA_ATTEMPT`).
    pub attempt: u32,
    /// The slot that ran it (`HYDRA_WORKER`), or "unknown" for a lost attempt whose worker
    /// never said it started.
    pub worker: String,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// The exit code, when the process exited by itself.
    pub exit_code: Option<i32>,
    /// The signal that ended the process, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Wall time in milliseconds (for a lost attempt: from its start to when the loss was
    /// noticed).
    pub duration_ms: u64,
    /// Captured output (last 64 KiB of stdout and stderr) of an attempt that did not pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Why it was lost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One task with its outcome and every attempt, in the order they started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskReport {
    /// The task string.
    pub task: String,
    /// The final outcome.
    pub outcome: Outcome,
    /// Every attempt.
    pub attempts: Vec<AttemptReport>,
}

impl TaskReport {
    /// The duration that stands for the task: its last attempt's.
    pub fn duration_ms(&self) -> u64 {
        self.attempts.last().map_or(0, |a| a.duration_ms)
    }
}

/// Counts per outcome; they add up to `total`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Tasks.
    pub total: usize,
    /// Passed at once.
    pub passed: usize,
    /// Failed.
    pub failed: usize,
    /// Passed on a retry.
    pub flaky: usize,
    /// Timed out.
    pub timed_out: usize,
    /// Lost.
    pub lost: usize,
    /// Wall time of the run in milliseconds.
    pub duration_ms: u64,
}

/// The whole run: what the JSON report holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunReport {
    /// Counts.
    pub summary: Summary,
    /// Every task exactly once, in input order.
    pub tasks: Vec<TaskReport>,
}

impl RunReport {
    /// A report over `tasks`, counting outcomes.
    pub fn new(tasks: Vec<TaskReport>, duration: Duration) -> RunReport {
        let mut s = Summary {
            total: tasks.len(),
            duration_ms: duration.as_millis() as u64,
            ..Summary::default()
        };
        for t in &tasks {
            match t.outcome {
                Outcome::Passed => s.passed += 1,
                Outcome::Failed => s.failed += 1,
                Outcome::Flaky => s.flaky += 1,
                Outcome::TimedOut => s.timed_out += 1,
                Outcome::Lost => s.lost += 1,
            }
        }
        RunReport { summary: s, tasks }
    }

    /// Whether every task passed or was flaky.
    pub fn success(&self) -> bool {
        self.tasks.iter().all(|t| t.outcome.is_success())
    }
}

/// Something that happened in a run.
#[derive(Debug)]
pub enum Event<'a> {
    /// Tasks are queued and workers may start.
    RunStarted {
        /// Number of tasks.
        total: usize,
        /// Where remote workers can connect, if anywhere.
        listen: Option<std::net::SocketAddr>,
    },
    /// An attempt finished and the task goes on (a retry follows).
    AttemptFinished {
        /// The task.
        task: &'a str,
        /// The attempt.
        attempt: &'a AttemptReport,
    },
    /// A task has its final outcome.
    TaskFinished {
        /// Tasks finished so far, this one included.
        finished: usize,
        /// Tasks that did not pass or were not flaky, so far.
        failed_so_far: usize,
        /// The task.
        report: &'a TaskReport,
    },
    /// Every task has an outcome.
    RunFinished {
        /// The whole run.
        report: &'a RunReport,
    },
}

/// A consumer of events: progress bar, line printer, summary, JUnit, JSON.
pub trait Reporter {
    /// Handles one event. Errors are writing failures (a report file that cannot be written).
    fn event(&mut self, event: &Event<'_>) -> crate::error::Result<()>;
}
