//! Runs the real benchmark binary with `--quick --json` and checks its output contract: every
//! scenario reported, every line with the fields the JSON consumers read. No figure is
//! asserted: speed is reported, not tested.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn run_quick() -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hydra-bench"))
        .args(["--quick", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the benchmark starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let reader = std::thread::spawn(move || std::io::read_to_string(stdout).expect("utf-8"));
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the benchmark") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hydra-bench --quick did not finish within 300 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "hydra-bench --quick failed: {status}");
    reader.join().expect("reader thread")
}

#[test]
fn quick_json_run_reports_every_scenario_with_its_fields() {
    let out = run_quick();
    let records: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}")))
        .collect();
    let names: Vec<&str> = records
        .iter()
        .map(|r| r["scenario"].as_str().expect("scenario is a string"))
        .collect();
    for wanted in [
        "floor: TCP ping-pong, 1 in flight",
        "floor: TCP, 256 in flight",
        "floor: TCP ping-pong, 2 ms apart",
        "source: one task at a time",
        "source: prefetch",
        "sink: feeds putting",
        "requests: 50 clients, pipeline 1,",
        "requests: 50 clients, pipeline 16,",
        "idle: ",
        "memory: queued 64-byte items",
    ] {
        assert!(
            names.iter().any(|n| n.starts_with(wanted)),
            "no {wanted:?} in {names:?}"
        );
    }
    for r in &records {
        for field in [
            "consumers",
            "items",
            "items_per_s",
            "p50_us",
            "p99_us",
            "ratio_to_floor",
        ] {
            assert!(r.get(field).is_some(), "{field} missing in {r}");
        }
        assert!(
            r["floor"]["rtt_per_s"].as_f64().is_some_and(|v| v > 0.0),
            "no floor in {r}"
        );
    }
    let idle = records
        .iter()
        .find(|r| r["scenario"].as_str().unwrap().starts_with("idle"))
        .unwrap();
    assert!(idle["server_cpu_percent"].is_number() && idle["server_rss_bytes"].is_number());
    let memory = records
        .iter()
        .find(|r| r["scenario"].as_str().unwrap().starts_with("memory"))
        .unwrap();
    assert!(memory["overhead_bytes_per_item"].is_number());
}
