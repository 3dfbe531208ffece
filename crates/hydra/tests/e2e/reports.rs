//! `hydra run` on mixed suites, checked through the JSON and JUnit reports.

use crate::support::*;

/// A test command for every behaviour: named by the task's prefix.
const SUITE: &str = r#"
case "$1" in
  pass*) exit 0 ;;
  fail*) echo "assertion failed in $1" >&2; exit 3 ;;
  flaky*) if [ "$HYDRA_ATTEMPT" = 1 ]; then echo "flaked on $HYDRA_WORKER"; exit 1; fi ;;
  hang*) exec sleep 30 ;;
  signal*) kill -9 $$ ;;
esac
"#;

#[test]
fn mixed_suite_reports_every_outcome_in_json_and_junit() {
    let dir = tempfile::tempdir().unwrap();
    let cmd = script(dir.path(), "suite.sh", SUITE);
    let input = [
        "pass_1", "fail_1", "flaky_1", "pass_2", "hang_1", "signal_1", "pass_3",
    ];
    let tasks = tasks_file(dir.path(), &input);
    let (json_path, junit_path) = (dir.path().join("r.json"), dir.path().join("r.xml"));
    let mut c = hydra();
    c.args(["run", "--jobs", "3", "--retries", "1", "--timeout", "1"])
        .arg("--tasks")
        .arg(&tasks)
        .arg("--json")
        .arg(&json_path)
        .arg("--junit")
        .arg(&junit_path)
        .arg("--")
        .arg(&cmd)
        .arg("{}");
    let out = run(c, "hydra run");
    assert_eq!(out.code(), 1, "a failure makes exit 1: {}", out.stderr);

    let report = json(&json_path);
    let tasks = check_report(&report, &input);
    let s = &report["summary"];
    assert_eq!(
        (
            s["passed"].as_u64(),
            s["failed"].as_u64(),
            s["flaky"].as_u64()
        ),
        (Some(3), Some(2), Some(1))
    );
    assert_eq!(
        (s["timed_out"].as_u64(), s["lost"].as_u64()),
        (Some(1), Some(0))
    );

    assert_eq!(tasks["pass_1"]["outcome"], "passed");
    assert_eq!(attempt_outcomes(&tasks["pass_1"]), ["passed"]);
    assert_eq!(tasks["pass_1"]["attempts"][0]["exit_code"], 0);

    let fail = &tasks["fail_1"];
    assert_eq!(fail["outcome"], "failed");
    assert_eq!(attempt_outcomes(fail), ["failed", "failed"], "retried once");
    assert_eq!(fail["attempts"][1]["exit_code"], 3);
    assert!(fail["attempts"][0]["output"]
        .as_str()
        .unwrap()
        .contains("assertion failed in fail_1"));

    let flaky = &tasks["flaky_1"];
    assert_eq!(flaky["outcome"], "flaky");
    assert_eq!(attempt_outcomes(flaky), ["failed", "passed"]);
    assert!(flaky["attempts"][0]["output"]
        .as_str()
        .unwrap()
        .contains("flaked on local-"));

    let hang = &tasks["hang_1"];
    assert_eq!(hang["outcome"], "timed_out");
    assert_eq!(attempt_outcomes(hang), ["timed_out", "timed_out"]);
    assert!(hang["attempts"][0]["exit_code"].is_null());

    let signal = &tasks["signal_1"];
    assert_eq!(signal["outcome"], "failed");
    assert!(signal["attempts"][0]["exit_code"].is_null());
    assert_eq!(signal["attempts"][0]["signal"], 9);

    // The line reporter (no terminal here) and the summary.
    for line in ["PASS", "FAIL", "FLAKY", "TIMEOUT"] {
        assert!(out.stdout.contains(line), "{line} missing:\n{}", out.stdout);
    }
    assert!(out.stdout.contains("Summary: 7 tasks in"), "{}", out.stdout);
    assert!(
        out.stdout.contains("assertion failed in fail_1"),
        "failed output printed"
    );

    let xml = std::fs::read_to_string(&junit_path).unwrap();
    assert_eq!(xml.matches("<testcase ").count(), input.len(), "{xml}");
    let case = |name: &str| {
        let start = xml.find(&format!("<testcase name=\"{name}\"")).unwrap();
        let end = start + xml[start..].find("</testcase>").unwrap_or(0);
        xml[start..end].to_string()
    };
    assert!(!case("pass_1").contains("failure"));
    assert!(case("fail_1").contains("<failure"), "{}", case("fail_1"));
    assert!(case("fail_1").contains("<rerunFailure"));
    assert!(case("fail_1").contains("assertion failed in fail_1"));
    assert!(case("flaky_1").contains("<flakyFailure"));
    assert!(!case("flaky_1").contains("<failure"));
    assert!(case("hang_1").contains("type=\"timeout\""));
}

#[test]
fn a_task_with_spaces_quotes_and_semicolons_is_one_argument() {
    let dir = tempfile::tempdir().unwrap();
    let pwned = dir.path().join("pwned");
    let task = format!(
        "it's a \"test\"; touch {} && echo $(id) `id` | cat > x",
        pwned.display()
    );
    let tasks = tasks_file(dir.path(), &[&task]);
    let cmd = script(
        dir.path(),
        "args.sh",
        r#"printf '%s' "$#" > "$(dirname "$0")/argc"; printf '%s' "$1" > "$(dirname "$0")/arg1"
printf '%s' "$HYDRA_TASK" > "$(dirname "$0")/env"
printf '%s' "${HYDRA_TOKEN:-unset}" > "$(dirname "$0")/token""#,
    );
    let mut c = hydra();
    c.env("HYDRA_TOKEN", "secret");
    c.args(["run", "--jobs", "1", "--tasks"])
        .arg(&tasks)
        .arg("--")
        .arg(&cmd)
        .arg("{}");
    let out = run(c, "hydra run");
    assert_eq!(out.code(), 0, "{}\n{}", out.stdout, out.stderr);
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
    assert_eq!(read("argc"), "1");
    assert_eq!(read("arg1"), task);
    assert_eq!(read("env"), task);
    assert!(!pwned.exists(), "the task ran as a command");
    assert_eq!(
        read("token"),
        "unset",
        "tasks do not see the worker's token"
    );
}

#[test]
fn placeholders_in_any_argument_and_appending_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let tasks = tasks_file(dir.path(), &["t1"]);
    let cmd = script(
        dir.path(),
        "echo.sh",
        r#"printf '%s|' "$@" >> "$(dirname "$0")/argv""#,
    );
    for args in [vec!["--name={}", "x"], vec!["fixed"]] {
        let mut c = hydra();
        c.args(["run", "--jobs", "1", "--tasks"])
            .arg(&tasks)
            .arg("--")
            .arg(&cmd)
            .args(&args);
        assert_eq!(run(c, "hydra run").code(), 0);
    }
    let argv = std::fs::read_to_string(dir.path().join("argv")).unwrap();
    assert_eq!(argv, "--name=t1|x|fixed|t1|");
}

#[test]
fn an_empty_tasks_file_passes_with_an_empty_report() {
    let dir = tempfile::tempdir().unwrap();
    let tasks = dir.path().join("empty.txt");
    std::fs::write(&tasks, "# nothing to run\n\n").unwrap();
    let json_path = dir.path().join("r.json");
    let junit_path = dir.path().join("r.xml");
    let mut c = hydra();
    c.args(["run", "--tasks"])
        .arg(&tasks)
        .arg("--json")
        .arg(&json_path)
        .arg("--junit")
        .arg(&junit_path)
        .args(["--", "true"]);
    let out = run(c, "hydra run");
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let report = json(&json_path);
    check_report(&report, &[]);
    assert!(std::fs::read_to_string(&junit_path)
        .unwrap()
        .contains("tests=\"0\""));
}

#[test]
fn timings_hand_out_unknown_first_then_longest_first_and_are_updated() {
    let dir = tempfile::tempdir().unwrap();
    let timings = dir.path().join("timings.json");
    std::fs::write(
        &timings,
        r#"{"tasks": {"short": 100, "long": 900, "middle": 500, "gone": 5}}"#,
    )
    .unwrap();
    let tasks = tasks_file(dir.path(), &["short", "new", "middle", "long"]);
    let cmd = script(
        dir.path(),
        "order.sh",
        r#"echo "$1" >> "$(dirname "$0")/order""#,
    );
    let mut c = hydra();
    c.args(["run", "--jobs", "1", "--tasks"])
        .arg(&tasks)
        .arg("--timings")
        .arg(&timings)
        .arg("--")
        .arg(&cmd);
    assert_eq!(run(c, "hydra run").code(), 0);
    let order = std::fs::read_to_string(dir.path().join("order")).unwrap();
    assert_eq!(order, "new\nlong\nmiddle\nshort\n");
    let updated: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&timings).unwrap()).unwrap();
    let recorded = updated["tasks"].as_object().unwrap();
    for name in ["short", "new", "middle", "long", "gone"] {
        assert!(recorded[name].is_u64(), "{name} in {updated}");
    }
    assert_eq!(
        recorded["gone"], 5,
        "tasks that did not run keep their duration"
    );
}

#[test]
fn sigint_kills_running_tasks_and_exits_130() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let dir = tempfile::tempdir().unwrap();
    let tasks = tasks_file(dir.path(), &["a", "b"]);
    let cmd = script(
        dir.path(),
        "hang.sh",
        r#"echo $$ > "$(dirname "$0")/pid-$1.tmp"; mv "$(dirname "$0")/pid-$1.tmp" "$(dirname "$0")/pid-$1"; exec sleep 30"#,
    );
    let mut c = hydra();
    c.args(["run", "--jobs", "2", "--tasks"])
        .arg(&tasks)
        .arg("--")
        .arg(&cmd);
    let p = Proc::spawn(c, "hydra run");
    let pidfile = |t: &str| dir.path().join(format!("pid-{t}"));
    wait_until("both tasks to start", || {
        pidfile("a").exists() && pidfile("b").exists()
    });
    kill(Pid::from_raw(p.pid() as i32), Signal::SIGINT).unwrap();
    let out = p.finish();
    assert_eq!(out.code(), 130, "{}", out.stderr);
    assert!(out.stderr.contains("interrupted"), "{}", out.stderr);
    for t in ["a", "b"] {
        let pid: i32 = std::fs::read_to_string(pidfile(t))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        wait_until("the task to be killed", || {
            kill(Pid::from_raw(pid), None).is_err()
        });
    }
}
