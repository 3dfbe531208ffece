//! One line per finished task (`PASS`, `FAIL`, `FLAKY`, `TIMEOUT`, `LOST`) with its
//! duration, and one per retried attempt: for logs and CI, where there is no terminal.

use std::io::Write;

use super::{how, retry_line, seconds};
use crate::error::Result;
use crate::events::{Event, Outcome, Reporter};

/// Prints lines to standard output.
#[derive(Debug, Default)]
pub struct LineReporter;

impl Reporter for LineReporter {
    fn event(&mut self, event: &Event<'_>) -> Result<()> {
        let mut out = std::io::stdout().lock();
        // A closed pipe (`hydra run ... | head`) must not stop the run.
        let _ = match event {
            Event::RunStarted { total, listen } => match listen {
                Some(addr) => writeln!(out, "hydra: {total} tasks; workers can connect to {addr}"),
                None => writeln!(out, "hydra: {total} tasks"),
            },
            Event::AttemptFinished { task, attempt } => {
                writeln!(out, "{}", retry_line(task, attempt))
            }
            Event::TaskFinished { report, .. } => {
                let detail = match (report.outcome, report.attempts.last()) {
                    (Outcome::Passed, _) | (_, None) => String::new(),
                    (Outcome::Flaky, _) => {
                        format!(" (passed on attempt {})", report.attempts.len())
                    }
                    (_, Some(last)) => format!(" ({} on {})", how(last), last.worker),
                };
                writeln!(
                    out,
                    "{:<7} {:>9} {}{detail}",
                    report.outcome.label(),
                    seconds(report.duration_ms()),
                    report.task
                )
            }
            Event::RunFinished { .. } => Ok(()),
        };
        Ok(())
    }
}
