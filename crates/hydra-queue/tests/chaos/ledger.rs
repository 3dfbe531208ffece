//! The source chaos test's bookkeeping: every line the consumers print, folded into a
//! completion bitset per item, and the checks that prove exactly-once completion.
//!
//! A consumer prints, for each delivery it runs, `S item id attempt` when it starts,
//! `T item id attempt` just before it sends `task_done`, then one answer: `A item id
//! attempt stalled_ms` (the server acknowledged it), `R ...` (refused: not leased) or
//! `L ...` (the connection was lost with the request in flight). Only `A` counts as a
//! completion, and a second `A` for an item fails the test.
//!
//! Two cases leave the outcome of a `task_done` unknown to the consumer, as the library
//! documents: `L` (the server may have applied it just before the connection broke), and
//! a consumer killed between `T` and its answer. Such an item is accepted as completed
//! only when no later delivery of it was ever seen: had the server refused that finish,
//! the item would have come back with a higher attempt number.

use std::collections::{HashMap, HashSet};

/// Where an unknown outcome came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unknown {
    /// The consumer was killed before it read the answer.
    Killed,
    /// The answer was `ConnectionLost`.
    ConnectionLost,
}

/// Everything learnt from the consumers' lines.
#[derive(Debug)]
pub struct Ledger {
    done: Vec<u64>,
    done_attempt: Vec<u32>,
    max_attempt: Vec<u32>,
    pending: HashMap<(usize, u64), (u64, u32)>,
    /// Finishes answered with `ConnectionLost`: item to (attempt, child).
    lost_answers: HashMap<u64, Vec<(u32, usize)>>,
    /// Executions started (`S` lines).
    pub executions: u64,
    /// Finishes refused with `NotLeased` (`R`).
    pub refused: u64,
    /// Finishes answered with `ConnectionLost` (`L`).
    pub connection_lost: u64,
    /// Completions accepted twice, and other broken rules, as messages.
    pub violations: Vec<String>,
    /// Acknowledged completions whose consumer had been stopped long enough that the
    /// server must have dropped its connection: (child, item, stalled ms).
    pub stalled_acks: Vec<(usize, u64, u64)>,
}

/// The verdict once every consumer is gone.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Items acknowledged exactly once.
    pub completed: u64,
    /// Items whose last finish was sent by a consumer killed before it read the answer,
    /// and that were never delivered again (so that finish was accepted).
    pub unknown_killed: u64,
    /// The same for a finish answered with `ConnectionLost`.
    pub unknown_connection_lost: u64,
    /// Items never completed, with what is known of them.
    pub lost: Vec<String>,
}

impl Ledger {
    /// A ledger for items `0..items`.
    pub fn new(items: u64) -> Self {
        let n = items as usize;
        Ledger {
            done: vec![0; n.div_ceil(64)],
            done_attempt: vec![0; n],
            max_attempt: vec![0; n],
            pending: HashMap::new(),
            lost_answers: HashMap::new(),
            executions: 0,
            refused: 0,
            connection_lost: 0,
            violations: Vec::new(),
            stalled_acks: Vec::new(),
        }
    }

    fn is_done(&self, item: u64) -> bool {
        self.done[(item / 64) as usize] & (1 << (item % 64)) != 0
    }

    /// Folds in one line printed by consumer `child`.
    pub fn apply(&mut self, child: usize, line: &str) {
        let mut parts = line.split_whitespace();
        let kind = parts.next().unwrap_or_default();
        let mut num = || -> Option<u64> { parts.next()?.parse().ok() };
        if !matches!(kind, "S" | "T" | "A" | "R" | "L") {
            return;
        }
        let (Some(item), Some(id), Some(attempt)) = (num(), num(), num()) else {
            self.violations
                .push(format!("child {child} printed a malformed line {line:?}"));
            return;
        };
        let attempt = attempt as u32;
        let Some(max) = self.max_attempt.get_mut(item as usize) else {
            self.violations.push(format!(
                "child {child} ran item {item}, which was never put"
            ));
            return;
        };
        *max = (*max).max(attempt);
        match kind {
            "S" => self.executions += 1,
            "T" => {
                self.pending.insert((child, id), (item, attempt));
            }
            "A" => {
                self.pending.remove(&(child, id));
                let stalled = num().unwrap_or(0);
                if stalled > 0 {
                    self.stalled_acks.push((child, item, stalled));
                }
                if self.is_done(item) {
                    self.violations.push(format!(
                        "item {item} completed twice: attempt {} and attempt {attempt} \
                         (delivery {id}, child {child}) were both acknowledged",
                        self.done_attempt[item as usize]
                    ));
                } else {
                    self.done[(item / 64) as usize] |= 1 << (item % 64);
                    self.done_attempt[item as usize] = attempt;
                }
            }
            "L" => {
                self.pending.remove(&(child, id));
                self.connection_lost += 1;
                self.lost_answers
                    .entry(item)
                    .or_default()
                    .push((attempt, child));
            }
            _ => {
                self.pending.remove(&(child, id));
                self.refused += 1;
            }
        }
    }

    /// Checks every item once all consumers are gone. `killed` are the children killed
    /// by the test: only they may leave a `task_done` unanswered.
    pub fn verdict(&mut self, killed: &HashSet<usize>) -> Verdict {
        let mut unknown: HashMap<u64, Vec<(u32, usize, Unknown)>> = HashMap::new();
        for (&(child, id), &(item, attempt)) in &self.pending {
            if !killed.contains(&child) {
                self.violations.push(format!(
                    "child {child} exited without an answer to task_done of delivery {id}"
                ));
            }
            unknown
                .entry(item)
                .or_default()
                .push((attempt, child, Unknown::Killed));
        }
        for (&item, answers) in &self.lost_answers {
            let u = unknown.entry(item).or_default();
            u.extend(
                answers
                    .iter()
                    .map(|&(a, c)| (a, c, Unknown::ConnectionLost)),
            );
        }
        let mut v = Verdict::default();
        for item in 0..self.max_attempt.len() as u64 {
            let max = self.max_attempt[item as usize];
            if self.is_done(item) {
                v.completed += 1;
                let at = self.done_attempt[item as usize];
                if at < max {
                    self.violations.push(format!(
                        "item {item} was delivered again (attempt {max}) after its completion \
                         at attempt {at} was acknowledged: a late task_done was accepted"
                    ));
                }
                continue;
            }
            let finals: Vec<_> = unknown
                .get(&item)
                .map(|u| u.iter().filter(|&&(a, ..)| a == max && max > 0).collect())
                .unwrap_or_default();
            match finals.first() {
                Some((.., Unknown::Killed)) => v.unknown_killed += 1,
                Some((.., Unknown::ConnectionLost)) => v.unknown_connection_lost += 1,
                None => v.lost.push(format!(
                    "item {item}: highest attempt seen {max}, unknown-outcome finishes \
                     (attempt, child, why) {:?}",
                    unknown.get(&item)
                )),
            }
        }
        v
    }
}
