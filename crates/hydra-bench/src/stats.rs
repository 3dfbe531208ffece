//! Latency samples, their percentiles, and the per-scenario record printed as a table row
//! or one JSON line.

use serde::{Deserialize, Serialize};

/// Latency samples in nanoseconds.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Samples(pub Vec<u64>);

impl Samples {
    /// Adds one sample.
    pub fn push(&mut self, d: std::time::Duration) {
        self.0.push(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Adds every sample of `other`.
    pub fn extend(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    /// The `p`-th percentile (0..=100) in microseconds; `None` without samples.
    pub fn percentile_us(&mut self, p: f64) -> Option<f64> {
        if self.0.is_empty() {
            return None;
        }
        self.0.sort_unstable();
        let rank = ((p / 100.0) * (self.0.len() - 1) as f64).round() as usize;
        Some(self.0[rank.min(self.0.len() - 1)] as f64 / 1000.0)
    }
}

/// What a child process reports when it is done.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ChildReport {
    /// Items it handled (tasks acknowledged, items put, round trips made).
    pub items: u64,
    /// Seconds it spent, from its start signal to its last item.
    pub secs: f64,
    /// Latency samples (what one sample is depends on the scenario).
    pub latencies: Samples,
}

/// The floor figures of this run, quoted in every record.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Floor {
    /// Plain TCP ping-pong round trips per second, one at a time.
    pub rtt_per_s: f64,
    /// Median of those round trips, microseconds.
    pub rtt_p50_us: f64,
    /// Plain TCP messages per second with 256 in flight.
    pub stream_per_s: f64,
}

/// Which floor a scenario is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FloorKind {
    /// One round trip at a time.
    RoundTrip,
    /// 256 messages in flight.
    Stream,
    /// Nothing to compare with (memory).
    None,
}

/// One scenario's result.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// Scenario name.
    pub scenario: String,
    /// Consumer (or feed) processes, or connections for the idle scenario.
    pub consumers: usize,
    /// Items moved (or stored).
    pub items: u64,
    /// Items (tasks, round trips, messages) per second.
    pub items_per_s: Option<f64>,
    /// Median latency, microseconds.
    pub p50_us: Option<f64>,
    /// 99th percentile latency, microseconds.
    pub p99_us: Option<f64>,
    /// What one latency sample is.
    pub latency_of: &'static str,
    /// The floor this record is compared with.
    pub floor_kind: FloorKind,
    /// This run's floor figures.
    pub floor: Floor,
    /// `items_per_s` divided by the relevant floor.
    pub ratio_to_floor: Option<f64>,
    /// Server CPU while idle, percent of one core (idle scenario).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_percent: Option<f64>,
    /// Server resident memory, bytes (idle and memory scenarios).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_rss_bytes: Option<u64>,
    /// Server memory per queued item beyond its payload, bytes (memory scenario).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overhead_bytes_per_item: Option<f64>,
}

impl Record {
    /// A throughput record; the ratio is computed against `floor` by `kind`.
    pub fn throughput(
        scenario: &str,
        consumers: usize,
        measured: ChildReport,
        latency_of: &'static str,
        kind: FloorKind,
        floor: Floor,
    ) -> Record {
        let ChildReport {
            items,
            secs,
            mut latencies,
        } = measured;
        let per_s = items as f64 / secs.max(1e-9);
        let base = match kind {
            FloorKind::RoundTrip => Some(floor.rtt_per_s),
            FloorKind::Stream => Some(floor.stream_per_s),
            FloorKind::None => None,
        };
        Record {
            scenario: scenario.to_string(),
            consumers,
            items,
            items_per_s: Some(per_s),
            p50_us: latencies.percentile_us(50.0),
            p99_us: latencies.percentile_us(99.0),
            latency_of,
            floor_kind: kind,
            floor,
            ratio_to_floor: base.filter(|b| *b > 0.0).map(|b| per_s / b),
            server_cpu_percent: None,
            server_rss_bytes: None,
            overhead_bytes_per_item: None,
        }
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.digits$}"))
}

fn thousands(v: Option<f64>) -> String {
    let Some(v) = v else { return "-".into() };
    let s = format!("{:.0}", v);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The records as a Markdown table.
pub fn table(records: &[Record]) -> String {
    let mut out = String::from(
        "| scenario | procs | items | items/s | p50 us | p99 us | x floor | other |\n\
         |---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for r in records {
        let mut other = Vec::new();
        if let Some(cpu) = r.server_cpu_percent {
            other.push(format!("idle server CPU {cpu:.2}% of a core"));
        }
        if let Some(rss) = r.server_rss_bytes {
            other.push(format!("server RSS {:.1} MB", rss as f64 / 1e6));
        }
        if let Some(b) = r.overhead_bytes_per_item {
            other.push(format!("{b:.0} B/item beyond payload"));
        }
        if r.p50_us.is_some() && r.latency_of != "-" {
            other.push(format!("latency of {}", r.latency_of));
        }
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.scenario,
            r.consumers,
            thousands(Some(r.items as f64)),
            thousands(r.items_per_s),
            opt(r.p50_us, 0),
            opt(r.p99_us, 0),
            opt(r.ratio_to_floor, 2),
            other.join("; "),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_ranks() {
        let mut s = Samples((1..=100).map(|v| v * 1000).collect());
        assert_eq!(s.percentile_us(50.0), Some(51.0));
        assert_eq!(s.percentile_us(99.0), Some(99.0));
        assert_eq!(Samples::default().percentile_us(50.0), None);
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(Some(1234567.0)), "1,234,567");
        assert_eq!(thousands(Some(12.0)), "12");
    }
}
