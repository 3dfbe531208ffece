//! Usage and configuration errors: exit 2 with a message that names the problem, before
//! anything runs.

use crate::support::*;

fn fails_with(args: &[&str], needle: &str) {
    let mut c = hydra();
    c.args(args);
    let out = run(c, &format!("hydra {args:?}"));
    assert_eq!(out.code(), 2, "{args:?}: {}", out.stderr);
    assert!(
        out.stderr.contains(needle),
        "{args:?}: stderr lacks {needle:?}:\n{}",
        out.stderr
    );
}

#[test]
fn bad_options_exit_2_naming_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let tasks = tasks_file(dir.path(), &["a"]);
    let t = tasks.to_str().unwrap();
    fails_with(&["run", "--tasks", t], "COMMAND");
    fails_with(
        &["run", "--tasks", t, "--jobs", "many", "--", "true"],
        "--jobs",
    );
    fails_with(
        &["run", "--tasks", t, "--jobs", "0", "--", "true"],
        "--jobs",
    );
    fails_with(
        &["run", "--tasks", t, "--timeout", "0", "--", "true"],
        "--timeout",
    );
    fails_with(
        &["run", "--tasks", t, "--max-attempts", "0", "--", "true"],
        "--max-attempts",
    );
    fails_with(
        &["run", "--tasks", t, "--frobnicate", "--", "true"],
        "--frobnicate",
    );
    fails_with(&["serve", "--tasks", t], "--listen");
    fails_with(&["work", "--", "true"], "--connect");
    fails_with(
        &["run", "--tasks", t, "--tls-cert", "x", "--", "true"],
        "--tls-key",
    );
    fails_with(&["bogus"], "bogus");
}

#[test]
fn an_unreadable_tasks_file_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-tasks.txt");
    fails_with(
        &["run", "--tasks", missing.to_str().unwrap(), "--", "true"],
        "cannot read tasks file",
    );
    fails_with(
        &["run", "--tasks", missing.to_str().unwrap(), "--", "true"],
        "no-such-tasks.txt",
    );
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, b"ok\n\xff\xfe\n").unwrap();
    fails_with(
        &["run", "--tasks", bad.to_str().unwrap(), "--", "true"],
        "line 2 is not valid UTF-8",
    );
}

#[test]
fn a_missing_command_or_bad_report_path_exits_2_before_running() {
    let dir = tempfile::tempdir().unwrap();
    let tasks = tasks_file(dir.path(), &["a"]);
    let t = tasks.to_str().unwrap();
    fails_with(
        &["run", "--tasks", t, "--", "./no-such-script.sh"],
        "no-such-script.sh",
    );
    fails_with(
        &[
            "run",
            "--tasks",
            t,
            "--json",
            "/nonexistent-dir/r.json",
            "--",
            "true",
        ],
        "cannot write JSON report",
    );
    let timings = dir.path().join("timings.json");
    std::fs::write(&timings, "{").unwrap();
    fails_with(
        &[
            "run",
            "--tasks",
            t,
            "--timings",
            timings.to_str().unwrap(),
            "--",
            "true",
        ],
        "bad timings file",
    );
    fails_with(
        &[
            "serve",
            "--tasks",
            t,
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            "/nonexistent/token",
        ],
        "cannot read token file",
    );
}

#[test]
fn help_documents_the_exit_codes() {
    let mut c = hydra();
    c.arg("--help");
    let out = run(c, "hydra --help");
    assert_eq!(out.code(), 0);
    for needle in [
        "Exit status",
        "every task passed or was flaky",
        "cannot be reached",
    ] {
        assert!(out.stdout.contains(needle), "{needle}:\n{}", out.stdout);
    }
}

#[test]
fn tasks_from_standard_input() {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("r.json");
    let mut c = hydra();
    c.args(["run", "--jobs", "2", "--tasks", "-", "--json"])
        .arg(&json_path)
        .args(["--", "true"]);
    c.stdin(std::process::Stdio::piped());
    c.stdout(std::process::Stdio::null());
    c.stderr(std::process::Stdio::null());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"x\ny\n# z\n").unwrap();
    }
    let deadline = std::time::Instant::now() + LIMIT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("hydra run --tasks - did not finish");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    check_report(&json(&json_path), &["x", "y"]);
}

#[test]
fn an_address_in_use_exits_2_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let tasks = tasks_file(dir.path(), &["a"]);
    fails_with(
        &[
            "serve",
            "--listen",
            &addr,
            "--tasks",
            tasks.to_str().unwrap(),
        ],
        &format!("cannot serve on {addr}"),
    );
}
