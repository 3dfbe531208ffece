//! `hydra work`: connect to a coordinator (retrying while it is not up yet), then run its
//! tasks with --jobs slots until its queue ends.

use std::time::{Duration, Instant};

use clap::Args;
use hydra_queue::{ClientSettings, Heartbeat};

use super::{runtime, stop_on_signals, ExecArgs};
use crate::error::{Error, Result, EXIT_INTERRUPTED, EXIT_OK};
use crate::security::{ClientTlsArgs, TokenArgs};
use crate::worker::{self, WorkEnd, WorkerConfig};

/// Pause between connection attempts while the coordinator is not up.
const RETRY_EVERY: Duration = Duration::from_millis(200);

/// `hydra work`.
#[derive(Debug, Args)]
pub struct WorkArgs {
    /// The coordinator's address (`host:port`), as given to `serve --listen` or `run --listen`.
    #[arg(long, value_name = "ADDR")]
    connect: String,
    /// Slots: tasks run at once on this host (default: the number of CPUs).
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    jobs: Option<u32>,
    /// This worker's name in reports and in HYDRA_WORKER (`NAME-SLOT`); default
    /// `HOSTNAME-PID`. Must be unique among connected workers.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Keep trying to reach the coordinator this long (it may start after the workers).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = super::parse_secs)]
    connect_timeout: Duration,
    #[command(flatten)]
    tls: ClientTlsArgs,
    #[command(flatten)]
    token: TokenArgs,
    #[command(flatten)]
    exec: ExecArgs,
}

impl WorkArgs {
    /// Works until the coordinator's queue ends: 0; 2 when it cannot be reached or refuses.
    pub fn exec(self) -> Result<i32> {
        let template = self.exec.template()?;
        let jobs = match self.jobs {
            Some(n) => n as usize,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let name = self.name.clone().unwrap_or_else(|| {
            format!(
                "{}-{}",
                hydra_queue::settings::hostname(),
                std::process::id()
            )
        });
        let mut settings = ClientSettings::new(self.connect.clone(), name.clone());
        settings.token = self.token.load()?;
        settings.tls = self.tls.settings();
        settings.heartbeat = Heartbeat::Auto;
        let config = WorkerConfig {
            jobs,
            template,
            timeout: self.exec.timeout,
            leave_if_idle: true,
        };
        let addr = self.connect.clone();
        let connect_timeout = self.connect_timeout;
        runtime()?.block_on(async move {
            let stop = stop_on_signals()?;
            let deadline = Instant::now() + connect_timeout;
            let stats = loop {
                let attempt = async {
                    let client = settings.connect().await?;
                    worker::work(client, config.clone(), stop.clone()).await
                };
                match attempt.await {
                    Ok(stats) => break stats,
                    Err(e) if retryable(&e) && Instant::now() + RETRY_EVERY < deadline => {
                        tracing::debug!("coordinator at {addr} not ready: {e}");
                        if *stop.borrow() {
                            return Ok(EXIT_INTERRUPTED);
                        }
                        tokio::time::sleep(RETRY_EVERY).await;
                    }
                    Err(hydra_queue::Error::DuplicateName { .. }) => {
                        return Err(Error::Usage(format!(
                            "a worker named {name:?} is already connected to {addr}; \
                             give each worker its own --name"
                        )))
                    }
                    Err(source) => return Err(Error::Connect { addr, source }),
                }
            };
            match stats.end {
                WorkEnd::Finished => {
                    eprintln!("hydra work: {name}: ran {} attempts; the coordinator's queue ended", stats.ran);
                    Ok(EXIT_OK)
                }
                WorkEnd::NothingLeft => {
                    eprintln!("hydra work: {name}: nothing left to run; every task was already handed out");
                    Ok(EXIT_OK)
                }
                WorkEnd::Stopped => Ok(EXIT_INTERRUPTED),
            }
        })
    }
}

/// Errors that mean "the coordinator is not up yet": nobody listens, or its queues are not
/// created yet. Refusals (token, TLS, duplicate name) are final.
fn retryable(e: &hydra_queue::Error) -> bool {
    matches!(
        e,
        hydra_queue::Error::Connect { .. } | hydra_queue::Error::UnknownQueue(_)
    )
}
