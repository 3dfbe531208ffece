//! What the coordinator and its workers send each other through the queues: task items on
//! the source queue `tasks`, worker reports on the sink queue `results` (MessagePack, as the
//! library encodes every item).

use serde::{Deserialize, Serialize};

/// The source queue of tasks.
pub const TASKS_QUEUE: &str = "tasks";
/// The sink queue of worker reports. The coordinator creates it after every task is in the
/// source queue, so a worker whose feed opened knows the task list is complete.
pub const RESULTS_QUEUE: &str = "results";

/// One run of one task to hand out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskItem {
    /// Position in the tasks file's order, from 0.
    pub index: u32,
    /// The task string.
    pub task: String,
    /// 0 for the first run, 1 for the first retry after a failure...
    pub round: u32,
    /// Attempts made in earlier rounds (failed, timed out or lost), so that the worker can
    /// number this one: `HYDRA_ATTEMPT = before + delivery attempt`.
    pub before: u32,
}

/// How one attempt of a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// Exit code 0.
    Passed,
    /// A non-zero exit code, a signal, or a command that could not start.
    Failed,
    /// Killed at `--timeout`.
    TimedOut,
    /// The worker died or went silent while running it.
    Lost,
}

/// A finished attempt, as a worker reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptResult {
    /// The task's index.
    pub index: u32,
    /// The item's round.
    pub round: u32,
    /// The library's delivery attempt of that item (1 unless a lease was lost).
    pub delivery: u32,
    /// The slot that ran it (`HYDRA_WORKER`).
    pub worker: String,
    /// The worker's connection name: a retry avoids it.
    pub client: String,
    /// How it ended (never `Lost`).
    pub outcome: AttemptOutcome,
    /// The exit code, when the process exited by itself.
    pub exit_code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
    /// The last 64 KiB of its standard output and error, for attempts that did not pass.
    pub output: Option<String>,
}

/// What a worker puts on the results queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkerReport {
    /// A slot is about to run a task: the coordinator learns who holds it, to name the worker
    /// of an attempt that is later lost.
    Started {
        /// The task's index.
        index: u32,
        /// The item's round.
        round: u32,
        /// The library's delivery attempt.
        delivery: u32,
        /// The slot (`HYDRA_WORKER`).
        worker: String,
    },
    /// An attempt finished.
    Finished(AttemptResult),
}
