//! Reporters: each consumes the coordinator's events and writes one kind of output.
//!
//! - [`progress`]: a progress bar on a terminal; failures printed above it.
//! - [`lines`]: one line per finished task when standard error is not a terminal.
//! - [`summary`]: after the run, the output of failed attempts, counts, slowest tasks.
//! - [`junit`] and [`json`]: report files, opened when the run starts (so a bad path fails
//!   before any task runs) and written when it ends.

pub mod json;
pub mod junit;
pub mod lines;
pub mod progress;
pub mod summary;

use crate::error::Result;
use crate::events::{Event, Reporter};

/// Several reporters fed the same events in order.
#[derive(Default)]
pub struct Reporters {
    reporters: Vec<Box<dyn Reporter>>,
}

impl Reporters {
    /// Adds a reporter.
    pub fn push(&mut self, reporter: impl Reporter + 'static) {
        self.reporters.push(Box::new(reporter));
    }
}

impl Reporter for Reporters {
    fn event(&mut self, event: &Event<'_>) -> Result<()> {
        // Every reporter sees every event even when one fails; the first error is returned.
        let mut first = Ok(());
        for r in &mut self.reporters {
            let result = r.event(event);
            if first.is_ok() {
                first = result;
            }
        }
        first
    }
}

/// `1.234s`, or `12m03s` for long durations.
pub fn seconds(ms: u64) -> String {
    if ms >= 600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{}.{:03}s", ms / 1000, ms % 1000)
    }
}

/// A short explanation of how an attempt ended: "exit code 1", "killed by signal 9"...
pub fn how(attempt: &crate::events::AttemptReport) -> String {
    use crate::events::AttemptOutcome::*;
    match (attempt.outcome, attempt.exit_code, attempt.signal) {
        (Passed, _, _) => "passed".into(),
        (TimedOut, _, _) => "timed out".into(),
        (Lost, _, _) => match &attempt.reason {
            Some(r) => format!("lost: {r}"),
            None => "lost".into(),
        },
        (Failed, Some(code), _) => format!("exit code {code}"),
        (Failed, None, Some(signal)) => format!("killed by signal {signal}"),
        (Failed, None, None) => "could not run".into(),
    }
}

/// The line for an attempt that is run again: `RETRY  0.428s TASK (attempt 1 on W: ...)`.
pub fn retry_line(task: &str, attempt: &crate::events::AttemptReport) -> String {
    format!(
        "{:<7} {:>9} {task} (attempt {} on {}: {}; running it again)",
        "RETRY",
        seconds(attempt.duration_ms),
        attempt.attempt,
        attempt.worker,
        how(attempt)
    )
}

#[cfg(test)]
mod tests {
    use super::seconds;

    #[test]
    fn seconds_are_readable() {
        assert_eq!(seconds(0), "0.000s");
        assert_eq!(seconds(1234), "1.234s");
        assert_eq!(seconds(723_000), "12m03s");
    }
}
