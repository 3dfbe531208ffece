//! The coordinator: puts every task on the source queue (in hand-out order), reads worker
//! reports from the sink queue, retries failures on another worker, turns items the library
//! gave up on into lost tasks, and ends when every task has its outcome. It emits events
//! and never prints.

use std::time::{Duration, Instant};

use hydra_queue::{Server, SinkOptions, SinkQueue, SourceOptions, SourceQueue};
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::events::{Event, Reporter, RunReport};
use crate::messages::{TaskItem, WorkerReport, RESULTS_QUEUE, TASKS_QUEUE};
use crate::state::{RunState, Step};

/// How often the coordinator looks for dead items and absent workers.
const TICK: Duration = Duration::from_millis(100);
/// Reports taken from the sink at once.
const BATCH: usize = 256;

/// What to run and how to hand it out.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// Tasks in input order.
    pub tasks: Vec<String>,
    /// Indices of `tasks` in hand-out order.
    pub order: Vec<usize>,
    /// `--retries`.
    pub retries: u32,
    /// `--max-attempts`: deliveries of one run before it is lost.
    pub max_attempts: u32,
    /// `--worker-timeout` (`serve`): fail when no worker is connected this long.
    pub worker_timeout: Option<Duration>,
}

/// A coordinator with its queues on a running server.
#[derive(Debug)]
pub struct Coordinator {
    server: Server,
    source: SourceQueue<TaskItem>,
    sink: SinkQueue<WorkerReport>,
    state: RunState,
    worker_timeout: Option<Duration>,
}

impl Coordinator {
    /// Creates the queues on `server` and queues every task.
    pub async fn start(server: Server, config: CoordinatorConfig) -> Result<Coordinator> {
        let source = server.source::<TaskItem>(
            TASKS_QUEUE,
            SourceOptions {
                capacity: 0,
                max_attempts: config.max_attempts,
            },
        )?;
        let state = RunState::new(&config.tasks, config.retries);
        let items = state.first_items();
        for &i in &config.order {
            source.put(&items[i]).await?;
        }
        // Created last: a worker that can open its feed knows every task is queued.
        let sink = server.sink::<WorkerReport>(RESULTS_QUEUE, SinkOptions::default())?;
        Ok(Coordinator {
            server,
            source,
            sink,
            state,
            worker_timeout: config.worker_timeout,
        })
    }

    /// The server, to connect local workers.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// Runs until every task has its outcome, `stop` turns true ([`Error::Interrupted`]) or
    /// no worker came within the worker timeout ([`Error::NoWorkers`]).
    pub async fn run(
        &mut self,
        reporter: &mut dyn Reporter,
        listen: Option<std::net::SocketAddr>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<RunReport> {
        let start = Instant::now();
        let total = self.state.total();
        reporter.event(&Event::RunStarted { total, listen })?;
        let mut seen_dead = 0usize;
        let mut last_worker = Instant::now();
        let mut tick = tokio::time::interval(TICK);
        while !self.state.all_finished() {
            tokio::select! {
                got = self.sink.get_many_raw(BATCH, None) => {
                    let now = Instant::now();
                    for bytes in got? {
                        // A report this build cannot read (another version, or garbage from a
                        // peer that knows the token) must not end the run.
                        let report: WorkerReport = match hydra_queue::codec::decode(&bytes) {
                            Ok(report) => report,
                            Err(e) => {
                                tracing::warn!("ignoring an unreadable worker report: {e}");
                                continue;
                            }
                        };
                        let step = match report {
                            WorkerReport::Started { index, round, delivery, worker } => {
                                self.state.started(index, round, delivery, &worker, now)
                            }
                            WorkerReport::Finished(result) => {
                                self.state.finished_attempt(result, now)
                            }
                        };
                        self.apply(step, reporter).await?;
                    }
                }
                _ = tick.tick() => {
                    if let Some(limit) = self.worker_timeout {
                        let now = Instant::now();
                        if self.sink.counts().feeds > 0 {
                            last_worker = now;
                        } else if now.duration_since(last_worker) >= limit {
                            return Err(Error::NoWorkers {
                                secs: limit.as_secs_f64(),
                                unfinished: total - self.state.finished(),
                                total,
                            });
                        }
                    }
                }
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        return Err(Error::Interrupted);
                    }
                }
            }
            if self.source.counts().dead as usize > seen_dead {
                let dead = self.source.dead_items();
                let now = Instant::now();
                for item in &dead[seen_dead..] {
                    let task: TaskItem = hydra_queue::codec::decode(&item.payload)?;
                    let step =
                        self.state
                            .dead(task.index, task.round, item.attempts, &item.reason, now);
                    self.apply(step, reporter).await?;
                }
                seen_dead = dead.len();
            }
        }
        // Workers waiting for more now see end-of-stream.
        self.source.close();
        let report = RunReport::new(self.state.reports(), start.elapsed());
        reporter.event(&Event::RunFinished { report: &report })?;
        Ok(report)
    }

    async fn apply(&mut self, step: Step, reporter: &mut dyn Reporter) -> Result<()> {
        if let Some((item, avoid)) = &step.retry {
            self.source.put_avoiding(item, avoid).await?;
        }
        match &step.finished {
            Some(report) => reporter.event(&Event::TaskFinished {
                finished: self.state.finished(),
                failed_so_far: self.state.unsuccessful(),
                report,
            }),
            None => {
                for attempt in &step.closed {
                    reporter.event(&Event::AttemptFinished {
                        task: self.state.task(step.index),
                        attempt,
                    })?;
                }
                Ok(())
            }
        }
    }

    /// Closes the queues and stops the server: connected workers are told it is over.
    pub async fn shutdown(self) {
        self.source.close();
        self.sink.close();
        self.server.shutdown().await;
    }
}
