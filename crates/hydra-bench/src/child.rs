//! Child processes of the benchmark: the parent re-executes its own binary with a
//! subcommand, waits for `ready`, says `go`, and reads one JSON report line.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdin, ChildStdout};

use crate::stats::{ChildReport, Samples};

/// A running child; killed if dropped before it finished.
pub struct Child {
    what: String,
    child: tokio::process::Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Child {
    /// Starts this binary with `args` (a subcommand and its options).
    pub fn spawn(args: &[String]) -> Result<Child> {
        let exe = std::env::current_exe().context("finding the benchmark's own binary")?;
        let mut child = tokio::process::Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {}", args.join(" ")))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        Ok(Child {
            what: args.first().cloned().unwrap_or_default(),
            stdin: child.stdin.take(),
            child,
            lines: BufReader::new(stdout).lines(),
        })
    }

    async fn line(&mut self, timeout: Duration) -> Result<String> {
        match tokio::time::timeout(timeout, self.lines.next_line()).await {
            Ok(Ok(Some(line))) => Ok(line),
            Ok(Ok(None)) => bail!("{} child exited without answering", self.what),
            Ok(Err(e)) => Err(e).context("reading from a child"),
            Err(_) => bail!("{} child did not answer within {timeout:?}", self.what),
        }
    }

    /// Waits for the child's `ready` line.
    pub async fn ready(&mut self, timeout: Duration) -> Result<()> {
        let line = self.line(timeout).await?;
        if line != "ready" {
            bail!("{} child said {line:?} instead of ready", self.what);
        }
        Ok(())
    }

    /// Tells the child to start.
    pub async fn go(&mut self) -> Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| anyhow!("go sent twice"))?;
        stdin.write_all(b"go\n").await?;
        stdin.flush().await?;
        self.stdin = None;
        Ok(())
    }

    /// Reads the child's report and waits for it to exit successfully.
    pub async fn report<T: DeserializeOwned>(mut self, timeout: Duration) -> Result<T> {
        let line = self.line(timeout).await?;
        let report = serde_json::from_str(&line)
            .with_context(|| format!("{} child reported {line:?}", self.what))?;
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .map_err(|_| anyhow!("{} child did not exit", self.what))??;
        if !status.success() {
            bail!("{} child failed: {status}", self.what);
        }
        Ok(report)
    }
}

/// Waits until every child is ready, then tells them all to start; returns when the
/// first was told (the start of the timed part).
pub async fn start_all(children: &mut [Child], timeout: Duration) -> Result<Instant> {
    for c in children.iter_mut() {
        c.ready(timeout).await?;
    }
    let start = Instant::now();
    for c in children.iter_mut() {
        c.go().await?;
    }
    Ok(start)
}

/// Every child's report, merged: the items they handled and all their latency samples.
pub async fn gather(children: Vec<Child>, timeout: Duration) -> Result<(u64, Samples)> {
    let mut items = 0;
    let mut latencies = Samples::default();
    for c in children {
        let r: ChildReport = c.report(timeout).await?;
        items += r.items;
        latencies.extend(r.latencies);
    }
    Ok((items, latencies))
}

/// Child side: says ready, then waits for the parent's go.
pub async fn ready_then_wait_for_go() -> Result<()> {
    println!("ready");
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    match lines.next_line().await? {
        Some(line) if line == "go" => Ok(()),
        other => bail!("expected go from the parent, got {other:?}"),
    }
}

/// Child side: prints the report line.
pub fn report<T: Serialize>(report: &T) -> Result<()> {
    println!("{}", serde_json::to_string(report)?);
    Ok(())
}
