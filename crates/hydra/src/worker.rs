//! A worker: `--jobs` slots over one connection, each taking a task from the source queue,
//! running it, and reporting the attempt on the results queue before finishing the
//! delivery (so a result is never lost: at worst it arrives twice, and the coordinator keeps
//! the first).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hydra_queue::{Client, Consumer, Delivery, Feed};
use tokio::sync::watch;

use crate::exec::{self, Spawn};
use crate::messages::{
    AttemptOutcome, AttemptResult, TaskItem, WorkerReport, RESULTS_QUEUE, TASKS_QUEUE,
};
use crate::template::Template;

/// How often a worker whose slots are all busy checks that the coordinator is still there.
const PING_EVERY: Duration = Duration::from_secs(2);

/// What a worker runs and how.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Slots: tasks run at once.
    pub jobs: usize,
    /// The command template.
    pub template: Template,
    /// `--timeout` per attempt.
    pub timeout: Option<Duration>,
    /// End at once when nothing is queued at connection time (a late worker).
    pub leave_if_idle: bool,
}

/// How a worker's work ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkEnd {
    /// The queue ended or the coordinator finished: normal.
    Finished,
    /// Nothing was left to hand out when the worker arrived.
    NothingLeft,
    /// `stop` was set: running tasks were killed.
    Stopped,
}

/// What a worker did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkStats {
    /// How it ended.
    pub end: WorkEnd,
    /// Attempts run to their end.
    pub ran: u64,
}

struct Shared {
    consumer: Consumer<TaskItem>,
    feed: Feed<WorkerReport>,
    config: WorkerConfig,
    client_name: String,
    ran: AtomicU64,
    stop: watch::Sender<bool>,
}

/// Works for the coordinator behind `client` until its queue ends, it shuts down, or `stop`
/// turns true. Errors are lost connections and refusals.
pub async fn work(
    client: Client,
    config: WorkerConfig,
    mut stop: watch::Receiver<bool>,
) -> hydra_queue::Result<WorkStats> {
    let name = client.name().to_string();
    let feed = client.feed::<WorkerReport>(RESULTS_QUEUE, &name).await?;
    let consumer = client.consumer::<TaskItem>(TASKS_QUEUE).await?;
    let mut first = None;
    if config.leave_if_idle {
        match consumer.get(Some(Duration::ZERO)).await {
            Ok(d) => first = Some(d),
            Err(e) if e.is_empty() || e.is_end_of_stream() => {
                let _ = consumer.close().await;
                let _ = feed.close().await;
                return Ok(WorkStats {
                    end: WorkEnd::NothingLeft,
                    ran: 0,
                });
            }
            Err(e) => return Err(e),
        }
    }
    let (internal_stop, _) = watch::channel(false);
    let shared = Arc::new(Shared {
        consumer,
        feed,
        client_name: name.clone(),
        ran: AtomicU64::new(0),
        stop: internal_stop,
        config,
    });

    let mut slots = tokio::task::JoinSet::new();
    for slot in 0..shared.config.jobs {
        let worker = format!("{name}-{slot}");
        let first = if slot == 0 { first.take() } else { None };
        slots.spawn(run_slot(shared.clone(), worker, first));
    }
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut outcome: hydra_queue::Result<WorkEnd> = Ok(WorkEnd::Finished);
    loop {
        tokio::select! {
            joined = slots.join_next() => match joined {
                None => break,
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => {
                    if outcome.is_ok() && !is_normal_end(&e) {
                        outcome = Err(e);
                    }
                    shared.stop.send_replace(true);
                }
                Some(Err(join)) => {
                    shared.stop.send_replace(true);
                    if outcome.is_ok() {
                        outcome = Err(hydra_queue::Error::Io(std::io::Error::other(join.to_string())));
                    }
                }
            },
            changed = stop.changed(), if !*shared.stop.borrow() => {
                if changed.is_err() || *stop.borrow() {
                    outcome = outcome.map(|_| WorkEnd::Stopped);
                    shared.stop.send_replace(true);
                }
            }
            _ = ping.tick(), if !*shared.stop.borrow() => {
                if let Err(e) = client.ping().await {
                    if !is_normal_end(&e) && outcome.is_ok() {
                        outcome = Err(e);
                    }
                    shared.stop.send_replace(true);
                }
            }
        }
    }
    let end = outcome?;
    let ran = shared.ran.load(Ordering::Relaxed);
    if end == WorkEnd::Finished {
        // Unregister politely; a coordinator that is already gone does not care.
        if let Ok(shared) = Arc::try_unwrap(shared) {
            let _ = shared.consumer.close().await;
            let _ = shared.feed.close().await;
        }
    }
    Ok(WorkStats { end, ran })
}

/// End-of-stream and a coordinator shutting down end a worker normally.
fn is_normal_end(e: &hydra_queue::Error) -> bool {
    e.is_end_of_stream() || matches!(e, hydra_queue::Error::ShuttingDown)
}

async fn next(shared: &Shared) -> hydra_queue::Result<Option<Delivery<TaskItem>>> {
    let mut stop = shared.stop.subscribe();
    if *stop.borrow() {
        return Ok(None);
    }
    tokio::select! {
        got = shared.consumer.get(None) => got.map(Some),
        _ = stop.changed() => Ok(None),
    }
}

async fn run_slot(
    shared: Arc<Shared>,
    worker: String,
    mut first: Option<Delivery<TaskItem>>,
) -> hydra_queue::Result<()> {
    let mut got = match first.take() {
        Some(d) => Ok(Some(d)),
        None => next(&shared).await,
    };
    loop {
        let delivery = match got {
            Ok(Some(d)) => d,
            Ok(None) => return Ok(()),
            Err(e) if is_normal_end(&e) => {
                shared.stop.send_replace(true);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let item = &delivery.item;
        let started = WorkerReport::Started {
            index: item.index,
            round: item.round,
            delivery: delivery.attempt,
            worker: worker.clone(),
        };
        let spawn = Spawn {
            argv: shared.config.template.render(&item.task),
            task: item.task.clone(),
            attempt: item.before + delivery.attempt,
            worker: worker.clone(),
            timeout: shared.config.timeout,
        };
        // The task starts at once; saying so to the coordinator goes on meanwhile.
        let announce = async {
            let (put, _) = tokio::join!(
                shared.feed.put(&started),
                shared.consumer.task_started(delivery.id)
            );
            put
        };
        let (exit, announced) = tokio::join!(exec::run(&spawn, shared.stop.subscribe()), announce);
        if exit.cancelled {
            // The lease goes back to the queue when the connection closes.
            return Ok(());
        }
        announced?;
        shared.ran.fetch_add(1, Ordering::Relaxed);
        let passed = exit.outcome == AttemptOutcome::Passed;
        let reason = match (exit.exit_code, exit.signal) {
            _ if exit.outcome == AttemptOutcome::TimedOut => "timed out".to_string(),
            (Some(code), _) => format!("exit code {code}"),
            (_, Some(signal)) => format!("killed by signal {signal}"),
            _ => "could not run".to_string(),
        };
        let result = AttemptResult {
            index: item.index,
            round: item.round,
            delivery: delivery.attempt,
            worker: worker.clone(),
            client: shared.client_name.clone(),
            outcome: exit.outcome,
            exit_code: exit.exit_code,
            signal: exit.signal,
            duration_ms: exit.duration.as_millis() as u64,
            output: (!passed).then_some(exit.output),
        };
        let finish = async {
            if passed {
                shared.consumer.task_done(delivery.id).await
            } else {
                shared.consumer.task_failed(delivery.id, &reason).await
            }
        };
        // Result, finish and the next get leave in one write and are applied in that order:
        // the result is in before the delivery is finished, so it is never lost.
        let report = WorkerReport::Finished(result);
        let (put, finished, next_got) =
            tokio::join!(shared.feed.put(&report), finish, next(&shared));
        put?;
        match finished {
            Ok(()) => {}
            // The lease was lost meanwhile and the item handed out again; our result is in.
            Err(hydra_queue::Error::NotLeased { .. }) => {}
            Err(e) => return Err(e),
        }
        got = next_got;
    }
}
