//! A progress bar on a terminal: done / total, failed so far, elapsed, ETA. Tasks that do
//! not pass are printed above it as they finish, so failures show at once.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{retry_line, seconds};
use crate::error::Result;
use crate::events::{Event, Outcome, Reporter};

/// Draws on standard error.
#[derive(Debug)]
pub struct ProgressReporter {
    bar: ProgressBar,
}

impl Default for ProgressReporter {
    fn default() -> Self {
        Self::new()
    }
}

impl ProgressReporter {
    /// A hidden bar until the run starts.
    pub fn new() -> ProgressReporter {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg} ETA {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        ProgressReporter { bar }
    }

    fn message(failed: usize) -> String {
        if failed == 0 {
            String::new()
        } else {
            format!("{failed} failed")
        }
    }
}

impl Reporter for ProgressReporter {
    fn event(&mut self, event: &Event<'_>) -> Result<()> {
        match event {
            Event::RunStarted { total, listen } => {
                self.bar.set_length(*total as u64);
                self.bar.enable_steady_tick(Duration::from_millis(200));
                if let Some(addr) = listen {
                    self.bar
                        .println(format!("hydra: workers can connect to {addr}"));
                }
            }
            Event::AttemptFinished { task, attempt } => self.bar.println(retry_line(task, attempt)),
            Event::TaskFinished {
                finished,
                failed_so_far,
                report,
                ..
            } => {
                if report.outcome != Outcome::Passed {
                    self.bar.println(format!(
                        "{:<7} {:>9} {}",
                        report.outcome.label(),
                        seconds(report.duration_ms()),
                        report.task
                    ));
                }
                self.bar.set_position(*finished as u64);
                self.bar.set_message(Self::message(*failed_so_far));
            }
            Event::RunFinished { .. } => self.bar.finish_and_clear(),
        }
        Ok(())
    }
}
