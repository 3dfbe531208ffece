//! The command line: clap structs, each command with an `exec()`, and [`main`], which maps
//! every error to its exit code in one place ([`crate::error`]).

mod coordinate;
mod work;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::error::{Error, Result};
use crate::report::lines::LineReporter;
use crate::report::progress::ProgressReporter;
use crate::report::Reporters;
use crate::template::Template;

const EXIT_STATUS: &str = "\
Exit status:
  run, serve  0  every task passed or was flaky
              1  a task failed, timed out or was lost
              2  usage or configuration error (bad option, unreadable tasks file...), or
                 serve saw no worker within --worker-timeout
  work        0  the coordinator's queue ended (whatever the tasks' outcomes)
              2  the coordinator cannot be reached, or refused this worker
  all       130  interrupted (SIGINT or SIGTERM); running tasks were killed

Examples:
  hydra run --tasks tests.txt -- pytest {}
  hydra serve --listen 0.0.0.0:7878 --tasks tests.txt --token-file token --junit junit.xml
  hydra work --connect coordinator:7878 --token-file token -- pytest {}";

/// `hydra`: run any test suite (or any commands) across local slots and remote workers.
#[derive(Debug, Parser)]
#[command(name = "hydra", version, about, after_help = EXIT_STATUS)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Coordinator and local worker slots in one process.
    #[command(after_help = EXIT_STATUS)]
    Run(coordinate::RunArgs),
    /// Coordinator only: remote workers (`hydra work`) connect to it.
    #[command(after_help = EXIT_STATUS)]
    Serve(coordinate::ServeArgs),
    /// A worker with --jobs slots, on any host: runs tasks for a coordinator.
    #[command(after_help = EXIT_STATUS)]
    Work(work::WorkArgs),
}

/// Options of a coordinator (`run` and `serve`).
#[derive(Debug, Clone, Args)]
pub struct TaskArgs {
    /// Tasks, one per line (`-` for standard input); blank lines and `#` lines are skipped.
    #[arg(long, value_name = "FILE")]
    pub tasks: PathBuf,
    /// Run a failed or timed-out task again up to N times, on another worker where one is
    /// connected; passing on a retry makes it flaky.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub retries: u32,
    /// Runs of a task whose worker died or hung before it is lost.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,
    /// Hand out tasks longest first using the durations recorded in FILE (unknown tasks
    /// first), and record this run's durations there.
    #[arg(long, value_name = "FILE")]
    pub timings: Option<PathBuf>,
    /// Write a JUnit XML report to PATH.
    #[arg(long, value_name = "PATH")]
    pub junit: Option<PathBuf>,
    /// Write a JSON report to PATH.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// How long a silent worker (no heartbeat) keeps its tasks before they go to another.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_secs)]
    pub lease_timeout: Duration,
    /// How to show progress: a bar on a terminal, else one line per task.
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    pub progress: Progress,
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Progress {
    /// A bar when standard error is a terminal, else lines.
    Auto,
    /// A progress bar.
    Bar,
    /// One line per finished task.
    Lines,
}

/// What a worker runs (`run` and `work`).
#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    /// Kill a task's whole process group after SECS: it timed out.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub timeout: Option<Duration>,
    /// The command; every `{}` becomes the task, else the task is appended. No shell.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

impl ExecArgs {
    /// The command template, checked: its program must exist.
    pub fn template(&self) -> Result<Template> {
        let template = Template::new(self.command.clone())
            .ok_or_else(|| Error::Usage("a command is needed after `--`".into()))?;
        crate::exec::check_program(template.program()).map_err(|message| Error::Command {
            program: template.program().to_string(),
            message,
        })?;
        Ok(template)
    }
}

/// Parses seconds (`30`, `0.5`) into a duration; zero, negative and absurd values are refused.
pub fn parse_secs(s: &str) -> std::result::Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(secs > 0.0 && secs <= 1e9) {
        return Err(format!("{s:?}: seconds must be more than 0"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The reporters that show progress.
fn progress_reporter(progress: Progress, reporters: &mut Reporters) {
    let bar = match progress {
        Progress::Auto => std::io::stderr().is_terminal(),
        Progress::Bar => true,
        Progress::Lines => false,
    };
    if bar {
        reporters.push(ProgressReporter::new());
    } else {
        reporters.push(LineReporter);
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HYDRA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// A multi-threaded runtime: spawning processes (fork and exec) blocks its thread, and with
/// one thread the slots would take turns; measured against a current-thread runtime, this
/// one kept both cores busy when the machine was loaded.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Usage(format!("cannot start the async runtime: {e}")))
}

/// A watch that turns true at SIGINT or SIGTERM (on the current runtime).
fn stop_on_signals() -> Result<tokio::sync::watch::Receiver<bool>> {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| Error::Usage(format!("cannot handle signals: {e}")))?;
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| Error::Usage(format!("cannot handle signals: {e}")))?;
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        let _ = tx.send(true);
        // Keep the sender alive so receivers see `true`, not a closed channel.
        std::future::pending::<()>().await;
    });
    Ok(rx)
}

/// Parses the command line, runs the command, and returns the exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Run(args) => args.exec(),
        Command::Serve(args) => args.exec(),
        Command::Work(args) => args.exec(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hydra: error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                // Library errors already carry their cause in their message; repeat only new text.
                let text = s.to_string();
                if !e.to_string().contains(&text) {
                    eprintln!("  caused by: {text}");
                }
                source = s.source();
            }
            e.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn seconds_parse() {
        assert_eq!(parse_secs("0.5").unwrap(), Duration::from_millis(500));
        assert!(parse_secs("0").is_err());
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("soon").is_err());
    }
}
