//! `hydra run` and `hydra serve`: a coordinator, with local worker slots (`run`) or
//! without (`serve`), reporters, and the timings file.

use std::time::Duration;

use clap::Args;
use hydra_queue::{Server, ServerOptions};

use super::{runtime, stop_on_signals, ExecArgs, TaskArgs};
use crate::coordinator::{Coordinator, CoordinatorConfig};
use crate::error::{Error, Result, EXIT_OK, EXIT_TASKS_FAILED};
use crate::events::RunReport;
use crate::report::json::JsonReporter;
use crate::report::junit::JunitReporter;
use crate::report::summary::SummaryReporter;
use crate::report::Reporters;
use crate::security::{ServerTlsArgs, TokenArgs};
use crate::timings::Timings;
use crate::worker::{self, WorkerConfig};

/// How long the local slots may take to stop after the run.
const LOCAL_STOP: Duration = Duration::from_secs(10);

/// `hydra run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    tasks: TaskArgs,
    /// Local slots: tasks run at once in this process (default: the number of CPUs; 0 only
    /// with --listen, for remote workers only).
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<usize>,
    /// Also accept remote workers (`hydra work --connect ADDR`) on ADDR, beside the local
    /// slots.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// With --jobs 0: stop with an error when no worker is connected for SECS while tasks
    /// remain.
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = super::parse_secs)]
    worker_timeout: Duration,
    #[command(flatten)]
    tls: ServerTlsArgs,
    #[command(flatten)]
    token: TokenArgs,
    #[command(flatten)]
    exec: ExecArgs,
}

/// `hydra serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    tasks: TaskArgs,
    /// Where remote workers connect (`host:port`; port 0 picks a free one, printed at start).
    #[arg(long, value_name = "ADDR")]
    listen: String,
    /// Stop with an error when no worker is connected for SECS while tasks remain.
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = super::parse_secs)]
    worker_timeout: Duration,
    #[command(flatten)]
    tls: ServerTlsArgs,
    #[command(flatten)]
    token: TokenArgs,
}

impl RunArgs {
    /// Runs the tasks; the exit code says how they went.
    pub fn exec(self) -> Result<i32> {
        if self.listen.is_none() && (self.tls.tls_cert.is_some() || self.token.token_file.is_some())
        {
            return Err(Error::Usage(
                "--tls-* and --token-file on `run` need --listen: local slots need neither".into(),
            ));
        }
        let jobs = match self.jobs {
            Some(0) if self.listen.is_none() => {
                return Err(Error::Usage(
                    "--jobs must be at least 1 (0 only with --listen)".into(),
                ))
            }
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let template = self.exec.template()?;
        let local = (jobs > 0).then_some(WorkerConfig {
            jobs,
            template,
            timeout: self.exec.timeout,
            leave_if_idle: false,
        });
        let listen = self.listen.clone();
        let setup = Setup::new(&self.tasks, &self.tls, &self.token, listen.is_some())?;
        setup.execute(
            listen.as_deref().unwrap_or("127.0.0.1:0"),
            listen.is_some(),
            local,
            (jobs == 0).then_some(self.worker_timeout),
        )
    }
}

impl ServeArgs {
    /// Serves the tasks to remote workers; the exit code says how they went.
    pub fn exec(self) -> Result<i32> {
        let setup = Setup::new(&self.tasks, &self.tls, &self.token, true)?;
        setup.execute(&self.listen, true, None, Some(self.worker_timeout))
    }
}

/// Everything read and checked before the server starts.
struct Setup {
    args: TaskArgs,
    tasks: Vec<String>,
    timings: Option<Timings>,
    options: ServerOptions,
    reporters: Reporters,
}

impl Setup {
    fn new(args: &TaskArgs, tls: &ServerTlsArgs, token: &TokenArgs, remote: bool) -> Result<Setup> {
        let tasks = crate::tasks::read_tasks(&args.tasks)?;
        let timings = match &args.timings {
            Some(path) => Some(Timings::load(path)?),
            None => None,
        };
        let options = ServerOptions {
            lease_timeout: args.lease_timeout,
            // Without remote workers, the port is still open on loopback: a random token keeps
            // other local users from taking tasks or forging results.
            token: if remote {
                token.load()?
            } else {
                Some(random_token()?)
            },
            tls: tls.settings(),
            shutdown_grace: Duration::from_secs(3),
            ..ServerOptions::default()
        };
        let mut reporters = Reporters::default();
        super::progress_reporter(args.progress, &mut reporters);
        reporters.push(SummaryReporter);
        if let Some(path) = &args.junit {
            reporters.push(JunitReporter::create(path)?);
        }
        if let Some(path) = &args.json {
            reporters.push(JsonReporter::create(path)?);
        }
        Ok(Setup {
            args: args.clone(),
            tasks,
            timings,
            options,
            reporters,
        })
    }

    fn execute(
        mut self,
        addr: &str,
        announce: bool,
        local: Option<WorkerConfig>,
        worker_timeout: Option<Duration>,
    ) -> Result<i32> {
        let order = match &self.timings {
            Some(t) => t.order(&self.tasks),
            None => (0..self.tasks.len()).collect(),
        };
        let config = CoordinatorConfig {
            tasks: self.tasks.clone(),
            order,
            retries: self.args.retries,
            max_attempts: self.args.max_attempts,
            worker_timeout,
        };
        let report = runtime()?.block_on(async {
            let stop = stop_on_signals()?;
            let server = Server::bind(addr, self.options.clone())
                .await
                .map_err(|source| Error::Serve {
                    addr: addr.to_string(),
                    source,
                })?;
            let listen = server.local_addr();
            let mut coordinator = Coordinator::start(server, config).await?;
            let mut local_worker = match local {
                Some(cfg) => {
                    // Over memory: no TLS or client certificate needed for our own slots.
                    let client = coordinator
                        .server()
                        .connect_local("local")
                        .await
                        .map_err(|source| Error::Connect {
                            addr: listen.to_string(),
                            source,
                        })?;
                    Some(tokio::spawn(worker::work(client, cfg, stop.clone())))
                }
                None => None,
            };
            let interrupted = stop.clone();
            let result = {
                let run = coordinator.run(&mut self.reporters, announce.then_some(listen), stop);
                match &mut local_worker {
                    None => run.await,
                    Some(handle) => {
                        tokio::pin!(run);
                        tokio::select! {
                            result = &mut run => result,
                            // The local slots only end before the run on an error; without
                            // them the run could wait forever.
                            ended = handle => Err(match ended {
                                _ if *interrupted.borrow() => Error::Interrupted,
                                Ok(Err(source)) => Error::Connect { addr: "in-process".into(), source },
                                Ok(Ok(_)) | Err(_) => Error::Queue(hydra_queue::Error::Protocol(
                                    "the local slots stopped before the run ended".into(),
                                )),
                            }),
                        }
                    }
                }
            };
            coordinator.shutdown().await;
            if let Some(handle) = local_worker.filter(|h| !h.is_finished()) {
                match tokio::time::timeout(LOCAL_STOP, handle).await {
                    Ok(Ok(Err(e))) if result.is_ok() => {
                        tracing::warn!("local slots ended with an error: {e}")
                    }
                    Err(_) => tracing::warn!("local slots did not stop within {LOCAL_STOP:?}"),
                    _ => {}
                }
            }
            result
        })?;
        if let (Some(mut timings), Some(path)) = (self.timings, &self.args.timings) {
            timings.update(measured(&report));
            timings.save(path)?;
        }
        Ok(if report.success() {
            EXIT_OK
        } else {
            EXIT_TASKS_FAILED
        })
    }
}

/// Durations worth recording: of tasks whose last attempt ran to its end.
fn measured(report: &RunReport) -> Vec<(String, u64)> {
    report
        .tasks
        .iter()
        .filter(|t| {
            t.attempts
                .last()
                .is_some_and(|a| a.outcome != crate::events::AttemptOutcome::Lost)
        })
        .map(|t| (t.task.clone(), t.duration_ms()))
        .collect()
}

/// 32 random hex digits from the kernel.
fn random_token() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|source| Error::Read {
            what: "random source",
            path: "/dev/urandom".into(),
            source,
        })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
