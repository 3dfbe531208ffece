//! Recorded task durations (`--timings FILE`): hand out tasks longest first, unknown first,
//! and record the new durations after the run.
//!
//! The file is JSON: `{"tasks": {"task name": milliseconds, ...}}`, sorted by name so that it
//! diffs well when committed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Durations by task, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    /// Task name to its last recorded duration.
    pub tasks: BTreeMap<String, u64>,
}

impl Timings {
    /// Reads `path`; a file that does not exist yet is empty timings.
    pub fn load(path: &Path) -> Result<Timings> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Timings::default()),
            Err(source) => {
                return Err(Error::Read {
                    what: "timings file",
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        serde_json::from_str(&text).map_err(|e| Error::BadFile {
            what: "timings file",
            path: path.to_path_buf(),
            message: format!("{e} (expected {{\"tasks\": {{\"name\": milliseconds}}}})"),
        })
    }

    /// Indices of `tasks` in hand-out order: tasks without a recorded duration first (in
    /// input order), then the others longest first (ties in input order).
    pub fn order(&self, tasks: &[String]) -> Vec<usize> {
        let mut order: Vec<usize> = (0..tasks.len()).collect();
        // Stable sort: equal keys keep input order.
        order.sort_by_key(|&i| match self.tasks.get(&tasks[i]) {
            None => (0, 0),
            Some(&ms) => (1, u64::MAX - ms),
        });
        order
    }

    /// Records new durations, keeping those of tasks that did not run.
    pub fn update(&mut self, measured: impl IntoIterator<Item = (String, u64)>) {
        self.tasks.extend(measured);
    }

    /// Writes the file atomically (a temporary file renamed over it).
    pub fn save(&self, path: &Path) -> Result<()> {
        let write_err = |source| Error::Write {
            what: "timings file",
            path: path.to_path_buf(),
            source,
        };
        let mut text = serde_json::to_string_pretty(self).expect("timings serialize");
        text.push('\n');
        let tmp = temp_path(path);
        std::fs::write(&tmp, text).map_err(write_err)?;
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            write_err(e)
        })
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn unknown_first_then_longest_first() {
        let mut t = Timings::default();
        t.update([("a".to_string(), 10), ("b".into(), 300), ("d".into(), 10)]);
        let tasks = names(&["a", "b", "c", "d", "e"]);
        let order: Vec<&str> = t.order(&tasks).iter().map(|&i| tasks[i].as_str()).collect();
        assert_eq!(order, vec!["c", "e", "b", "a", "d"]);
    }

    #[test]
    fn save_and_load_round_trip_and_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("timings.json");
        assert_eq!(Timings::load(&path).unwrap(), Timings::default());
        let mut t = Timings::default();
        t.update([("x y".to_string(), 5)]);
        t.save(&path).unwrap();
        assert_eq!(Timings::load(&path).unwrap(), t);
    }

    #[test]
    fn a_bad_file_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("timings.json");
        std::fs::write(&path, "not json").unwrap();
        assert!(matches!(Timings::load(&path), Err(Error::BadFile { .. })));
    }
}
