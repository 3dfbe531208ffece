//! After the run: the captured output of every attempt that did not pass, the counts per
//! outcome, the slowest tasks and the total time.

use std::io::Write;

use super::{how, seconds};
use crate::error::Result;
use crate::events::{AttemptOutcome, Event, Reporter, RunReport};

/// How many of the slowest tasks are listed.
const SLOWEST: usize = 5;

/// Prints the summary to standard output.
#[derive(Debug, Default)]
pub struct SummaryReporter;

impl Reporter for SummaryReporter {
    fn event(&mut self, event: &Event<'_>) -> Result<()> {
        if let Event::RunFinished { report } = event {
            let mut out = std::io::stdout().lock();
            // A closed pipe must not turn a finished run into an error.
            let _ = out.write_all(render(report).as_bytes());
        }
        Ok(())
    }
}

/// The summary text.
pub fn render(report: &RunReport) -> String {
    let mut s = String::new();
    for task in &report.tasks {
        for a in &task.attempts {
            if matches!(a.outcome, AttemptOutcome::Passed | AttemptOutcome::Lost) {
                continue;
            }
            s.push_str(&format!(
                "\n--- {} {} (attempt {} on {}: {}, {}) ---\n",
                task.outcome.label(),
                task.task,
                a.attempt,
                a.worker,
                how(a),
                seconds(a.duration_ms)
            ));
            let output = a.output.as_deref().unwrap_or("");
            s.push_str(output);
            if !output.is_empty() && !output.ends_with('\n') {
                s.push('\n');
            }
        }
    }
    let c = &report.summary;
    s.push_str(&format!(
        "\nSummary: {} tasks in {}: {} passed, {} flaky, {} failed, {} timed out, {} lost\n",
        c.total,
        seconds(c.duration_ms),
        c.passed,
        c.flaky,
        c.failed,
        c.timed_out,
        c.lost
    ));
    let mut slowest: Vec<_> = report.tasks.iter().collect();
    slowest.sort_by_key(|t| std::cmp::Reverse(t.duration_ms()));
    if !slowest.is_empty() {
        s.push_str("Slowest:\n");
        for t in slowest.iter().take(SLOWEST) {
            s.push_str(&format!("  {:>9} {}\n", seconds(t.duration_ms()), t.task));
        }
    }
    let unsuccessful: Vec<_> = report
        .tasks
        .iter()
        .filter(|t| !t.outcome.is_success())
        .collect();
    if !unsuccessful.is_empty() {
        s.push_str("Did not pass:\n");
        for t in unsuccessful {
            s.push_str(&format!("  {:<7} {}\n", t.outcome.label(), t.task));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{AttemptReport, Outcome, TaskReport};
    use std::time::Duration;

    fn attempt(outcome: AttemptOutcome, ms: u64, output: &str) -> AttemptReport {
        AttemptReport {
            attempt: 1,
            worker: "local-0".into(),
            outcome,
            exit_code: Some(if outcome == AttemptOutcome::Passed {
                0
            } else {
                1
            }),
            signal: None,
            duration_ms: ms,
            output: (!output.is_empty()).then(|| output.to_string()),
            reason: None,
        }
    }

    #[test]
    fn shows_failed_output_counts_and_slowest() {
        let tasks = vec![
            TaskReport {
                task: "fast".into(),
                outcome: Outcome::Passed,
                attempts: vec![attempt(AttemptOutcome::Passed, 5, "")],
            },
            TaskReport {
                task: "broken".into(),
                outcome: Outcome::Failed,
                attempts: vec![attempt(AttemptOutcome::Failed, 700, "boom")],
            },
        ];
        let text = render(&RunReport::new(tasks, Duration::from_millis(1500)));
        assert!(text
            .contains("--- FAIL broken (attempt 1 on local-0: exit code 1, 0.700s) ---\nboom\n"));
        assert!(text.contains(
            "Summary: 2 tasks in 1.500s: 1 passed, 0 flaky, 1 failed, 0 timed out, 0 lost"
        ));
        let slow = text.find("0.700s broken").unwrap();
        assert!(slow < text.find("0.005s fast").unwrap(), "{text}");
        assert!(text.contains("Did not pass:\n  FAIL    broken\n"));
    }
}
