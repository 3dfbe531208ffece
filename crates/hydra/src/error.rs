//! The command's one error type and the exit codes it maps to, in one place.
//!
//! Exit codes (also in `hydra --help` and the README):
//! - 0: every task passed or was flaky (`run`, `serve`); the queue ended (`work`).
//! - 1: a task failed, timed out or was lost (`run`, `serve`).
//! - 2: a usage or configuration error, or a worker that cannot reach the coordinator or is
//!   refused by it.
//! - 130: interrupted (SIGINT or SIGTERM); running tasks were killed.

use std::path::PathBuf;

/// Exit code when every task passed or was flaky.
pub const EXIT_OK: i32 = 0;
/// Exit code when any task failed, timed out or was lost.
pub const EXIT_TASKS_FAILED: i32 = 1;
/// Exit code for usage and configuration errors, and for unreachable or refusing coordinators.
pub const EXIT_USAGE: i32 = 2;
/// Exit code after SIGINT or SIGTERM.
pub const EXIT_INTERRUPTED: i32 = 130;

/// Everything that stops a `hydra` command before it can report task outcomes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An option value that makes no sense ("--jobs must be at least 1").
    #[error("{0}")]
    Usage(String),
    /// A file the command needs could not be read.
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        /// What the file is for ("tasks file", "token file"...).
        what: &'static str,
        /// The path given.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file the command writes could not be written.
    #[error("cannot write {what} {}: {source}", path.display())]
    Write {
        /// What the file is for ("JSON report"...).
        what: &'static str,
        /// The path given.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file's content is not what it should be.
    #[error("bad {what} {}: {message}", path.display())]
    BadFile {
        /// What the file is for.
        what: &'static str,
        /// The path given.
        path: PathBuf,
        /// What is wrong, with a line number where there is one.
        message: String,
    },
    /// The command to run cannot be started at all.
    #[error("cannot run {program:?}: {message}")]
    Command {
        /// The program named after `--`.
        program: String,
        /// Why.
        message: String,
    },
    /// Setting up the coordinator's server failed (address in use, TLS files...).
    #[error("cannot serve on {addr}: {source}")]
    Serve {
        /// The address to listen on.
        addr: String,
        /// The library's error.
        #[source]
        source: hydra_queue::Error,
    },
    /// A worker could not reach the coordinator, or was refused by it.
    #[error("cannot work for the coordinator at {addr}: {source}")]
    Connect {
        /// The coordinator's address.
        addr: String,
        /// The library's error.
        #[source]
        source: hydra_queue::Error,
    },
    /// `serve` waited for a worker in vain.
    #[error("no worker connected within {secs}s (--worker-timeout); {unfinished} of {total} tasks did not finish")]
    NoWorkers {
        /// The timeout in seconds.
        secs: f64,
        /// Tasks without an outcome.
        unfinished: usize,
        /// All tasks.
        total: usize,
    },
    /// SIGINT or SIGTERM.
    #[error("interrupted; running tasks were killed")]
    Interrupted,
    /// An error of the queue library while the run was going on.
    #[error("queue error: {0}")]
    Queue(#[from] hydra_queue::Error),
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Interrupted => EXIT_INTERRUPTED,
            Error::Queue(_) => EXIT_USAGE,
            Error::Usage(_)
            | Error::Read { .. }
            | Error::Write { .. }
            | Error::BadFile { .. }
            | Error::Command { .. }
            | Error::Serve { .. }
            | Error::Connect { .. }
            | Error::NoWorkers { .. } => EXIT_USAGE,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setup_error_exits_2_and_interrupt_130() {
        assert_eq!(Error::Usage("x".into()).exit_code(), 2);
        let read = Error::Read {
            what: "tasks file",
            path: "t.txt".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert_eq!(read.exit_code(), 2);
        assert!(read.to_string().contains("tasks file t.txt"), "{read}");
        assert_eq!(Error::Interrupted.exit_code(), 130);
    }
}
