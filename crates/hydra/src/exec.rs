//! Running one attempt of a task: the child in its own process group with `HYDRA_TASK`,
//! `HYDRA_ATTEMPT` and `HYDRA_WORKER`, its standard output and error captured together (the
//! last 64 KiB), `--timeout` and cancellation killing the whole group.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use crate::messages::AttemptOutcome;

/// How much output is kept per attempt: the end, where failures usually are.
pub const OUTPUT_LIMIT: usize = 64 * 1024;
/// After SIGTERM at the timeout, how long the group has before SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// After the child exits, how long its output pipe may stay open (held by a process that
/// left the group) before reading stops.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// One attempt to run.
#[derive(Debug, Clone)]
pub struct Spawn {
    /// Program and arguments, already rendered.
    pub argv: Vec<String>,
    /// The task (`HYDRA_TASK`).
    pub task: String,
    /// The attempt number (`HYDRA_ATTEMPT`).
    pub attempt: u32,
    /// The slot (`HYDRA_WORKER`).
    pub worker: String,
    /// `--timeout`.
    pub timeout: Option<Duration>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// Passed, failed or timed out.
    pub outcome: AttemptOutcome,
    /// The exit code, when the process exited by itself.
    pub exit_code: Option<i32>,
    /// The signal that ended it, if any.
    pub signal: Option<i32>,
    /// Wall time.
    pub duration: Duration,
    /// The last [`OUTPUT_LIMIT`] bytes of output, decoded lossily.
    pub output: String,
    /// Whether the attempt was cancelled (the worker is stopping): its result means nothing.
    pub cancelled: bool,
}

/// Runs one attempt to its end, or until `cancel` turns true (then the group is killed).
pub async fn run(spawn: &Spawn, mut cancel: watch::Receiver<bool>) -> Exit {
    let start = Instant::now();
    let failed_to_start = |message: String| Exit {
        outcome: AttemptOutcome::Failed,
        exit_code: None,
        signal: None,
        duration: start.elapsed(),
        output: format!("hydra: cannot run {:?}: {message}\n", spawn.argv[0]),
        cancelled: false,
    };
    // Close-on-exec: children of other slots spawned meanwhile must not inherit this pipe.
    let (reader, writer) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(pair) => pair,
        Err(e) => return failed_to_start(format!("cannot create a pipe: {e}")),
    };
    let writer2 = match writer.try_clone() {
        Ok(w) => w,
        Err(e) => return failed_to_start(format!("cannot duplicate a pipe: {e}")),
    };
    let mut command = tokio::process::Command::new(&spawn.argv[0]);
    command
        .args(&spawn.argv[1..])
        .env("HYDRA_TASK", &spawn.task)
        .env("HYDRA_ATTEMPT", spawn.attempt.to_string())
        .env("HYDRA_WORKER", &spawn.worker)
        // The worker's credential is not the task's business.
        .env_remove("HYDRA_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(writer2))
        .process_group(0)
        .kill_on_drop(true);
    let spawned = command.spawn();
    // The child holds the write ends now; ours must close for the reader to see the end.
    drop(command);
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => return failed_to_start(e.to_string()),
    };
    let pgid = child.id().map(|id| Pid::from_raw(id as i32));
    let capture = tokio::spawn(capture(reader));

    let deadline = spawn.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut timed_out = false;
    let mut cancelled = false;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            _ = sleep_until(deadline), if !timed_out => {
                timed_out = true;
                signal_group(pgid, Signal::SIGTERM);
                let grace = tokio::time::timeout(KILL_GRACE, child.wait()).await;
                match grace {
                    Ok(status) => break status,
                    Err(_) => {
                        signal_group(pgid, Signal::SIGKILL);
                        break child.wait().await;
                    }
                }
            }
            changed = cancel.changed(), if !cancelled => {
                if changed.is_err() || *cancel.borrow() {
                    cancelled = true;
                    signal_group(pgid, Signal::SIGKILL);
                }
            }
        }
    };
    let duration = start.elapsed();
    // Whatever the child left behind in its group goes with it.
    signal_group(pgid, Signal::SIGKILL);
    let output = match tokio::time::timeout(DRAIN_GRACE, capture).await {
        Ok(Ok(bytes)) => bytes,
        _ => b"[hydra: output truncated: the output pipe stayed open after the task ended]\n"
            .to_vec(),
    };
    let output = String::from_utf8_lossy(&output).into_owned();
    match status {
        Err(e) => Exit {
            output: format!("{output}hydra: waiting for the task failed: {e}\n"),
            ..failed_to_start(e.to_string())
        },
        Ok(status) => Exit {
            outcome: if timed_out {
                AttemptOutcome::TimedOut
            } else if status.success() {
                AttemptOutcome::Passed
            } else {
                AttemptOutcome::Failed
            },
            exit_code: status.code(),
            signal: status.signal(),
            duration,
            output,
            cancelled,
        },
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn signal_group(pgid: Option<Pid>, signal: Signal) {
    if let Some(pgid) = pgid {
        // ESRCH: the group is already gone, which is what we want.
        let _ = killpg(pgid, signal);
    }
}

/// Reads the pipe to its end, keeping the last [`OUTPUT_LIMIT`] bytes.
async fn capture(reader: std::os::fd::OwnedFd) -> Vec<u8> {
    let Ok(mut pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(reader) else {
        return b"[hydra: cannot read the task's output]\n".to_vec();
    };
    let mut kept = Vec::new();
    let mut dropped = 0usize;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2 * OUTPUT_LIMIT {
                    let cut = kept.len() - OUTPUT_LIMIT;
                    dropped += cut;
                    kept.drain(..cut);
                }
            }
        }
    }
    if kept.len() > OUTPUT_LIMIT {
        let cut = kept.len() - OUTPUT_LIMIT;
        dropped += cut;
        kept.drain(..cut);
    }
    if dropped > 0 {
        let mut with_note =
            format!("[hydra: {dropped} earlier bytes of output dropped]\n").into_bytes();
        with_note.extend_from_slice(&kept);
        return with_note;
    }
    kept
}

/// Checks that `program` can be started: an existing executable path, or a name found on
/// `PATH`. Programs that contain a `{}` are checked per task instead.
pub fn check_program(program: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &std::path::Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if program.contains("{}") {
        return Ok(());
    }
    if program.contains('/') {
        let path = std::path::Path::new(program);
        if !path.exists() {
            return Err("no such file".into());
        }
        if !executable(path) {
            return Err("not an executable file".into());
        }
        return Ok(());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|dir| executable(&dir.join(program))) {
        Ok(())
    } else {
        Err("not found on PATH".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spawn(script: &str, timeout: Option<Duration>) -> Spawn {
        Spawn {
            argv: vec![
                "sh".into(),
                "-c".into(),
                script.into(),
                "sh".into(),
                "a b".into(),
            ],
            task: "a b".into(),
            attempt: 2,
            worker: "w-1".into(),
            timeout,
        }
    }

    fn no_cancel() -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(false);
        std::mem::forget(tx);
        rx
    }

    #[tokio::test]
    async fn passes_env_and_captures_both_streams() {
        let exit = run(
            &spawn(
                "echo \"out $1 $HYDRA_TASK $HYDRA_ATTEMPT $HYDRA_WORKER\"; echo err >&2; exit 3",
                None,
            ),
            no_cancel(),
        )
        .await;
        assert_eq!(exit.outcome, AttemptOutcome::Failed);
        assert_eq!(exit.exit_code, Some(3));
        assert_eq!(exit.output, "out a b a b 2 w-1\nerr\n");
    }

    #[tokio::test]
    async fn keeps_the_last_64_kib() {
        let exit = run(
            &spawn("head -c 200000 /dev/zero | tr '\\0' x; echo END", None),
            no_cancel(),
        )
        .await;
        assert_eq!(exit.outcome, AttemptOutcome::Passed);
        assert!(exit.output.ends_with("xEND\n"));
        assert!(
            exit.output.starts_with("[hydra: "),
            "{}",
            &exit.output[..80]
        );
        assert!(exit.output.len() < OUTPUT_LIMIT + 100);
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let exit = run(&spawn(&script, Some(Duration::from_secs(1))), no_cancel()).await;
        assert_eq!(exit.outcome, AttemptOutcome::TimedOut);
        assert!(exit.duration < Duration::from_secs(10));
        assert_gone_within_10s(&pidfile);
    }

    #[tokio::test]
    async fn processes_left_behind_in_the_group_are_killed_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 30 & echo $! > {}; exit 0", pidfile.display());
        let exit = run(&spawn(&script, None), no_cancel()).await;
        assert_eq!(exit.outcome, AttemptOutcome::Passed);
        assert_gone_within_10s(&pidfile);
    }

    /// Waits (10 s at most) until the process whose pid is in `pidfile` no longer exists.
    /// A killed grandchild is reaped by init, so this polls.
    fn assert_gone_within_10s(pidfile: &std::path::Path) {
        let pid: i32 = std::fs::read_to_string(pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok() {
            assert!(
                Instant::now() < deadline,
                "process {pid} of the group survived"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[tokio::test]
    async fn a_concurrent_task_does_not_hold_another_one_s_output_open() {
        let fast =
            tokio::spawn(async { run(&spawn("sleep 0.5; echo fast", None), no_cancel()).await });
        // Started while the first task's pipe is open: it must not inherit that pipe.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (tx, rx) = watch::channel(false);
        let slow = spawn("sleep 5", None);
        let slow = tokio::spawn(async move { run(&slow, rx).await });
        assert_eq!(fast.await.unwrap().output, "fast\n");
        let _ = tx.send(true);
        assert!(slow.await.unwrap().cancelled);
    }

    #[tokio::test]
    async fn a_missing_program_fails_with_a_message() {
        let mut s = spawn("", None);
        s.argv = vec!["/nonexistent/prog".into()];
        let exit = run(&s, no_cancel()).await;
        assert_eq!(exit.outcome, AttemptOutcome::Failed);
        assert!(exit.output.contains("cannot run"), "{}", exit.output);
        assert!(check_program("/nonexistent/prog").is_err());
        assert!(check_program("sh").is_ok());
        assert!(check_program("surely-not-a-program-xyz").is_err());
    }
}
