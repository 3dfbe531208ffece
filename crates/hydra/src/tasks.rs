//! Task files: one task per line; blank lines and lines starting with `#` are skipped.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// Reads the tasks in `path` (`-` for standard input), in file order.
pub fn read_tasks(path: &Path) -> Result<Vec<String>> {
    let mut bytes = Vec::new();
    let read = if path == Path::new("-") {
        std::io::stdin().lock().read_to_end(&mut bytes).map(|_| ())
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut bytes).map(|_| ()))
    };
    read.map_err(|source| Error::Read {
        what: "tasks file",
        path: path.to_path_buf(),
        source,
    })?;
    parse_tasks(&bytes).map_err(|message| Error::BadFile {
        what: "tasks file",
        path: path.to_path_buf(),
        message,
    })
}

/// Parses task-file content: a task is the whole line (without its line ending), exactly as
/// written; lines that are blank or whose first non-blank character is `#` are skipped.
pub fn parse_tasks(bytes: &[u8]) -> std::result::Result<Vec<String>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        format!("line {line} is not valid UTF-8")
    })?;
    let mut tasks = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if line.contains('\0') {
            // A NUL cannot be passed as a program argument.
            return Err(format!("line {} contains a NUL byte", n + 1));
        }
        tasks.push(line.to_string());
    }
    Ok(tasks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_blank_and_comment_lines_and_keeps_tasks_as_written() {
        let text = b"a\n\n  \n# comment\n   # indented comment\nb c; 'd'\r\n  e \n";
        assert_eq!(
            parse_tasks(text).unwrap(),
            vec!["a".to_string(), "b c; 'd'".into(), "  e ".into()]
        );
    }

    #[test]
    fn empty_input_has_no_tasks() {
        assert!(parse_tasks(b"").unwrap().is_empty());
        assert!(parse_tasks(b"\n# nothing\n").unwrap().is_empty());
    }

    #[test]
    fn bad_bytes_name_the_line() {
        assert_eq!(
            parse_tasks(b"a\nb\xff\n").unwrap_err(),
            "line 2 is not valid UTF-8"
        );
        assert_eq!(
            parse_tasks(b"a\n\nb\0\n").unwrap_err(),
            "line 3 contains a NUL byte"
        );
    }
}
