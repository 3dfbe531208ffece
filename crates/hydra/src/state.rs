//! The coordinator's bookkeeping, as plain synchronous code: every task's attempts, retries
//! and final outcome, fed with worker reports and dead items. No I/O, time passed in.

use std::time::Instant;

use crate::events::{AttemptOutcome, AttemptReport, Outcome, TaskReport};
use crate::messages::{AttemptResult, TaskItem};

const UNKNOWN_WORKER: &str = "unknown";

#[derive(Debug)]
struct Attempt {
    round: u32,
    delivery: u32,
    report: AttemptReport,
    /// Set while it runs.
    since: Option<Instant>,
}

#[derive(Debug)]
struct Task {
    task: String,
    round: u32,
    /// Attempts made before the current round.
    before: u32,
    attempts: Vec<Attempt>,
    outcome: Option<Outcome>,
}

/// What one report changed.
#[derive(Debug, Default)]
pub struct Step {
    /// The task's index.
    pub index: u32,
    /// Attempts that ended while the task goes on (lost, or failed before a retry).
    pub closed: Vec<AttemptReport>,
    /// A retry to put, avoiding this worker connection name.
    pub retry: Option<(TaskItem, String)>,
    /// The task's final report, when it just got its outcome.
    pub finished: Option<TaskReport>,
}

/// Every task of a run.
#[derive(Debug)]
pub struct RunState {
    tasks: Vec<Task>,
    retries: u32,
    finished: usize,
    unsuccessful: usize,
}

impl RunState {
    /// Tasks in input order; a failed task is run again up to `retries` times.
    pub fn new(tasks: &[String], retries: u32) -> RunState {
        RunState {
            tasks: tasks
                .iter()
                .map(|t| Task {
                    task: t.clone(),
                    round: 0,
                    before: 0,
                    attempts: Vec::new(),
                    outcome: None,
                })
                .collect(),
            retries,
            finished: 0,
            unsuccessful: 0,
        }
    }

    /// The first item of every task, in input order.
    pub fn first_items(&self) -> Vec<TaskItem> {
        (0..self.tasks.len())
            .map(|i| TaskItem {
                index: i as u32,
                task: self.tasks[i].task.clone(),
                round: 0,
                before: 0,
            })
            .collect()
    }

    /// Tasks with a final outcome.
    pub fn finished(&self) -> usize {
        self.finished
    }

    /// Tasks.
    pub fn total(&self) -> usize {
        self.tasks.len()
    }

    /// Finished tasks that neither passed nor were flaky.
    pub fn unsuccessful(&self) -> usize {
        self.unsuccessful
    }

    /// The task string of `index`.
    pub fn task(&self, index: u32) -> &str {
        &self.tasks[index as usize].task
    }

    /// Whether every task has its outcome.
    pub fn all_finished(&self) -> bool {
        self.finished == self.tasks.len()
    }

    /// The task of `index`, if it still waits for this round.
    fn current(&mut self, index: u32, round: u32) -> Option<&mut Task> {
        self.tasks
            .get_mut(index as usize)
            .filter(|t| t.outcome.is_none() && t.round == round)
    }

    /// A worker started delivery `delivery` of the task's round.
    pub fn started(
        &mut self,
        index: u32,
        round: u32,
        delivery: u32,
        worker: &str,
        now: Instant,
    ) -> Step {
        let Some(task) = self.current(index, round) else {
            return Step::default();
        };
        let mut step = Step {
            index,
            ..Step::default()
        };
        task.close_earlier(delivery, now, "its worker was lost", &mut step.closed);
        if task.find(round, delivery).is_none() {
            let attempt = task.number(delivery);
            task.attempts.push(Attempt {
                round,
                delivery,
                report: running(attempt, worker),
                since: Some(now),
            });
        }
        step
    }

    /// A worker finished an attempt. Reports of finished tasks or past rounds (a task run
    /// again after a lost lease whose first run finished anyway) change nothing.
    pub fn finished_attempt(&mut self, r: AttemptResult, now: Instant) -> Step {
        let retries = self.retries;
        let Some(task) = self.current(r.index, r.round) else {
            return Step::default();
        };
        let mut step = Step {
            index: r.index,
            ..Step::default()
        };
        task.close_earlier(r.delivery, now, "its worker was lost", &mut step.closed);
        let attempt = task.number(r.delivery);
        let report = AttemptReport {
            attempt,
            worker: r.worker,
            outcome: r.outcome,
            exit_code: r.exit_code,
            signal: r.signal,
            duration_ms: r.duration_ms,
            output: r.output,
            reason: None,
        };
        match task.find(r.round, r.delivery) {
            Some(i) => {
                task.attempts[i].report = report;
                task.attempts[i].since = None;
            }
            None => task.attempts.push(Attempt {
                round: r.round,
                delivery: r.delivery,
                report,
                since: None,
            }),
        }
        let outcome = match r.outcome {
            AttemptOutcome::Passed if task.any_failed() => Outcome::Flaky,
            AttemptOutcome::Passed => Outcome::Passed,
            _ if task.round < retries => {
                let closed = task
                    .attempts
                    .iter()
                    .find(|a| a.round == r.round && a.delivery == r.delivery);
                step.closed.extend(closed.map(|a| a.report.clone()));
                task.round += 1;
                task.before = task.attempts.len() as u32;
                step.retry = Some((
                    TaskItem {
                        index: r.index,
                        task: task.task.clone(),
                        round: task.round,
                        before: task.before,
                    },
                    r.client,
                ));
                return step;
            }
            AttemptOutcome::TimedOut => Outcome::TimedOut,
            _ => Outcome::Failed,
        };
        step.finished = Some(self.finish(r.index, outcome, now));
        step
    }

    /// The library gave the task's item up after `deliveries` lost leases.
    pub fn dead(
        &mut self,
        index: u32,
        round: u32,
        deliveries: u32,
        reason: &str,
        now: Instant,
    ) -> Step {
        let Some(task) = self.current(index, round) else {
            return Step::default();
        };
        let mut closed = Vec::new();
        task.close_earlier(deliveries + 1, now, reason, &mut closed);
        Step {
            index,
            finished: Some(self.finish(index, Outcome::Lost, now)),
            ..Step::default()
        }
    }

    fn finish(&mut self, index: u32, outcome: Outcome, now: Instant) -> TaskReport {
        let task = &mut self.tasks[index as usize];
        for a in &mut task.attempts {
            if let Some(since) = a.since.take() {
                a.report.outcome = AttemptOutcome::Lost;
                a.report.duration_ms = now.duration_since(since).as_millis() as u64;
                a.report.reason = Some("still running when the task finished".into());
            }
        }
        task.outcome = Some(outcome);
        self.finished += 1;
        if !outcome.is_success() {
            self.unsuccessful += 1;
        }
        task.report()
    }

    /// Every task's report, in input order; tasks without an outcome are left out.
    pub fn reports(&self) -> Vec<TaskReport> {
        self.tasks
            .iter()
            .filter(|t| t.outcome.is_some())
            .map(Task::report)
            .collect()
    }
}

fn running(attempt: u32, worker: &str) -> AttemptReport {
    AttemptReport {
        attempt,
        worker: worker.to_string(),
        outcome: AttemptOutcome::Lost,
        exit_code: None,
        signal: None,
        duration_ms: 0,
        output: None,
        reason: None,
    }
}

impl Task {
    fn number(&self, delivery: u32) -> u32 {
        self.before + delivery
    }

    fn find(&self, round: u32, delivery: u32) -> Option<usize> {
        self.attempts
            .iter()
            .position(|a| a.round == round && a.delivery == delivery)
    }

    fn any_failed(&self) -> bool {
        self.attempts.iter().any(|a| {
            matches!(
                a.report.outcome,
                AttemptOutcome::Failed | AttemptOutcome::TimedOut
            ) && a.since.is_none()
        })
    }

    /// Deliveries of the current round before `delivery` were lost: a running one is closed
    /// as lost, and one that never reported a start is recorded with an unknown worker.
    fn close_earlier(
        &mut self,
        delivery: u32,
        now: Instant,
        reason: &str,
        closed: &mut Vec<AttemptReport>,
    ) {
        for d in 1..delivery {
            match self.find(self.round, d) {
                Some(i) => {
                    let a = &mut self.attempts[i];
                    if let Some(since) = a.since.take() {
                        a.report.outcome = AttemptOutcome::Lost;
                        a.report.duration_ms = now.duration_since(since).as_millis() as u64;
                        a.report.reason = Some(reason.to_string());
                        closed.push(a.report.clone());
                    }
                }
                None => {
                    let mut report = running(self.number(d), UNKNOWN_WORKER);
                    report.reason = Some(reason.to_string());
                    closed.push(report.clone());
                    self.attempts.push(Attempt {
                        round: self.round,
                        delivery: d,
                        report,
                        since: None,
                    });
                }
            }
        }
        // Keep start order when a gap was filled after later attempts were recorded.
        self.attempts.sort_by_key(|a| (a.round, a.delivery));
    }

    fn report(&self) -> TaskReport {
        TaskReport {
            task: self.task.clone(),
            outcome: self.outcome.expect("reported tasks are finished"),
            attempts: self.attempts.iter().map(|a| a.report.clone()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(index: u32, round: u32, delivery: u32, outcome: AttemptOutcome) -> AttemptResult {
        AttemptResult {
            index,
            round,
            delivery,
            worker: "w-0".into(),
            client: "w".into(),
            outcome,
            exit_code: Some(if outcome == AttemptOutcome::Passed {
                0
            } else {
                1
            }),
            signal: None,
            duration_ms: 5,
            output: None,
        }
    }

    fn state(retries: u32) -> (RunState, Instant) {
        (
            RunState::new(&["a".into(), "b".into()], retries),
            Instant::now(),
        )
    }

    #[test]
    fn pass_at_once_is_passed() {
        let (mut s, now) = state(2);
        s.started(0, 0, 1, "w-0", now);
        let step = s.finished_attempt(result(0, 0, 1, AttemptOutcome::Passed), now);
        let r = step.finished.unwrap();
        assert_eq!(r.outcome, Outcome::Passed);
        assert_eq!(r.attempts.len(), 1);
        assert_eq!(s.finished(), 1);
    }

    #[test]
    fn failure_then_pass_is_flaky_and_retry_avoids_the_worker() {
        let (mut s, now) = state(1);
        let step = s.finished_attempt(result(1, 0, 1, AttemptOutcome::Failed), now);
        let (item, avoid) = step.retry.unwrap();
        assert_eq!((item.index, item.round, item.before), (1, 1, 1));
        assert_eq!(avoid, "w");
        assert_eq!(step.closed.len(), 1);
        let step = s.finished_attempt(result(1, 1, 1, AttemptOutcome::Passed), now);
        let r = step.finished.unwrap();
        assert_eq!(r.outcome, Outcome::Flaky);
        let numbers: Vec<u32> = r.attempts.iter().map(|a| a.attempt).collect();
        assert_eq!(numbers, vec![1, 2]);
    }

    #[test]
    fn retries_exhausted_keep_the_last_outcome() {
        let (mut s, now) = state(1);
        s.finished_attempt(result(0, 0, 1, AttemptOutcome::Failed), now);
        let step = s.finished_attempt(result(0, 1, 1, AttemptOutcome::TimedOut), now);
        assert_eq!(step.finished.unwrap().outcome, Outcome::TimedOut);
        assert_eq!(s.unsuccessful(), 1);
    }

    #[test]
    fn lost_lease_then_pass_is_passed_with_a_lost_attempt() {
        let (mut s, now) = state(0);
        s.started(0, 0, 1, "dead-0", now);
        let step = s.started(0, 0, 2, "w-1", now);
        assert_eq!(step.closed[0].outcome, AttemptOutcome::Lost);
        assert_eq!(step.closed[0].worker, "dead-0");
        let r = s
            .finished_attempt(result(0, 0, 2, AttemptOutcome::Passed), now)
            .finished
            .unwrap();
        assert_eq!(r.outcome, Outcome::Passed);
        let outcomes: Vec<_> = r.attempts.iter().map(|a| a.outcome).collect();
        assert_eq!(outcomes, vec![AttemptOutcome::Lost, AttemptOutcome::Passed]);
    }

    #[test]
    fn dead_item_is_lost_with_every_attempt_recorded() {
        let (mut s, now) = state(0);
        s.started(0, 0, 2, "w-0", now);
        let r = s.dead(0, 0, 3, "lease lost", now).finished.unwrap();
        assert_eq!(r.outcome, Outcome::Lost);
        assert_eq!(r.attempts.len(), 3);
        assert_eq!(r.attempts[0].worker, "unknown");
        assert_eq!(r.attempts[1].worker, "w-0");
        assert!(r.attempts.iter().all(|a| a.outcome == AttemptOutcome::Lost));
    }

    #[test]
    fn late_duplicates_change_nothing() {
        let (mut s, now) = state(0);
        s.finished_attempt(result(0, 0, 1, AttemptOutcome::Passed), now);
        let step = s.finished_attempt(result(0, 0, 2, AttemptOutcome::Failed), now);
        assert!(step.finished.is_none() && step.retry.is_none());
        assert!(s.dead(0, 0, 3, "x", now).finished.is_none());
        assert_eq!(s.finished(), 1);
        assert_eq!(s.reports()[0].attempts.len(), 1);
    }
}
