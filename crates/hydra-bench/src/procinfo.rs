//! What Linux says about this process: resident memory and CPU time (from `/proc`).

use std::time::Duration;

/// Resident set size in bytes (`VmRSS`), 0 where `/proc` is missing.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// CPU time used by every thread of this process so far, with nanosecond resolution
/// (sum of `/proc/self/task/*/schedstat`), where clock ticks would be too coarse to see
/// a fraction of a percent.
pub fn cpu_time() -> Duration {
    let mut ns = 0u64;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let path = task.path().join("schedstat");
            if let Ok(s) = std::fs::read_to_string(path) {
                ns += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    Duration::from_nanos(ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_and_cpu_time() {
        assert!(rss_bytes() > 0);
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(20) {}
        assert!(cpu_time() > Duration::ZERO);
    }
}
