//! `--junit PATH`: JUnit XML as CI systems read it: one testcase per task, in input order;
//! a failure (`failure`, or `error` for a lost task) with the last attempt's output, earlier
//! failed attempts as `rerunFailure`, and a flaky task as a success with `flakyFailure`s.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestRerun, TestSuite};

use super::how;
use crate::error::{Error, Result};
use crate::events::{AttemptOutcome, AttemptReport, Event, Outcome, Reporter, RunReport};

/// Writes the JUnit report when the run finishes.
#[derive(Debug)]
pub struct JunitReporter {
    path: PathBuf,
    file: Option<File>,
}

impl Drop for JunitReporter {
    /// A run that ended in an error leaves no empty report behind for CI to choke on.
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl JunitReporter {
    /// Creates (truncates) the file now, so that a bad path fails before the run.
    pub fn create(path: &Path) -> Result<JunitReporter> {
        let file = File::create(path).map_err(|source| Error::Write {
            what: "JUnit report",
            path: path.to_path_buf(),
            source,
        })?;
        Ok(JunitReporter {
            path: path.to_path_buf(),
            file: Some(file),
        })
    }
}

impl Reporter for JunitReporter {
    fn event(&mut self, event: &Event<'_>) -> Result<()> {
        let Event::RunFinished { report } = event else {
            return Ok(());
        };
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        let write_err = |message: String| Error::Write {
            what: "JUnit report",
            path: self.path.clone(),
            source: std::io::Error::other(message),
        };
        build(report)
            .serialize(&file)
            .map_err(|e| write_err(e.to_string()))?;
        file.sync_all().map_err(|e| write_err(e.to_string()))
    }
}

fn kind(a: &AttemptReport) -> NonSuccessKind {
    match a.outcome {
        AttemptOutcome::Lost => NonSuccessKind::Error,
        _ => NonSuccessKind::Failure,
    }
}

fn ty(a: &AttemptReport) -> &'static str {
    match a.outcome {
        AttemptOutcome::TimedOut => "timeout",
        AttemptOutcome::Lost => "lost",
        _ => "failure",
    }
}

fn message(a: &AttemptReport) -> String {
    format!("attempt {} on {}: {}", a.attempt, a.worker, how(a))
}

fn rerun(a: &AttemptReport) -> TestRerun {
    let mut r = TestRerun::new(kind(a));
    r.set_message(message(a))
        .set_type(ty(a))
        .set_time(Duration::from_millis(a.duration_ms));
    if let Some(out) = &a.output {
        r.set_system_out_lossy(out);
    }
    r
}

/// The JUnit report of a run.
pub fn build(run: &RunReport) -> Report {
    let mut suite = TestSuite::new("hydra");
    suite.set_time(Duration::from_millis(run.summary.duration_ms));
    for task in &run.tasks {
        let last = task.attempts.last();
        let earlier: Vec<TestRerun> = task
            .attempts
            .iter()
            .take(task.attempts.len().saturating_sub(1))
            .filter(|a| a.outcome != AttemptOutcome::Passed)
            .map(rerun)
            .collect();
        let status = match (task.outcome, last) {
            (Outcome::Passed, _) => TestCaseStatus::success(),
            (Outcome::Flaky, _) => TestCaseStatus::Success {
                flaky_runs: earlier.clone(),
            },
            (_, Some(last)) => {
                let mut s = TestCaseStatus::non_success(kind(last));
                s.set_message(message(last)).set_type(ty(last));
                if let Some(out) = &last.output {
                    s.set_description(out.as_str());
                }
                s.add_reruns(earlier.clone());
                s
            }
            (_, None) => TestCaseStatus::non_success(NonSuccessKind::Error),
        };
        let mut case = TestCase::new(task.task.as_str(), status);
        case.set_classname("hydra")
            .set_time(Duration::from_millis(task.duration_ms()));
        if let Some(out) = last.and_then(|a| a.output.as_ref()) {
            case.set_system_out_lossy(out);
        }
        suite.add_test_case(case);
    }
    let mut report = Report::new("hydra");
    report
        .set_time(Duration::from_millis(run.summary.duration_ms))
        .add_test_suite(suite);
    report
}
