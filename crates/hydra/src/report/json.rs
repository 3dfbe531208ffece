//! `--json PATH`: the whole run as JSON (summary counts, then every task once, in input
//! order, with every attempt).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::events::{Event, Reporter};

/// Writes the JSON report when the run finishes.
#[derive(Debug)]
pub struct JsonReporter {
    path: PathBuf,
    file: Option<File>,
}

impl Drop for JsonReporter {
    /// A run that ended in an error leaves no empty report behind for CI to choke on.
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl JsonReporter {
    /// Creates (truncates) the file now, so that a bad path fails before the run.
    pub fn create(path: &Path) -> Result<JsonReporter> {
        let file = File::create(path).map_err(|source| Error::Write {
            what: "JSON report",
            path: path.to_path_buf(),
            source,
        })?;
        Ok(JsonReporter {
            path: path.to_path_buf(),
            file: Some(file),
        })
    }
}

impl Reporter for JsonReporter {
    fn event(&mut self, event: &Event<'_>) -> Result<()> {
        let Event::RunFinished { report } = event else {
            return Ok(());
        };
        let Some(mut file) = self.file.take() else {
            return Ok(());
        };
        let mut text = serde_json::to_vec_pretty(report).expect("reports serialize");
        text.push(b'\n');
        file.write_all(&text)
            .and_then(|_| file.sync_all())
            .map_err(|source| Error::Write {
                what: "JSON report",
                path: self.path.clone(),
                source,
            })
    }
}
