//! JSON Lines event files: one file, a directory of them, and a directory watched for more.
//!
//! This module owns reading lines into a [`Batch`]: each non-blank line is one row of
//! [`super::row`]; a malformed line, a duplicate event id or a second resolution of the same
//! event is reported as `file:line` and skipped, and every other line is returned. A directory
//! is read as its `*.jsonl` files in name order (only that extension, so that editors' backups
//! and files still being copied under another name are left alone).
//!
//! [`JsonlWatcher`] polls a directory rather than subscribing to file-system notifications:
//! polling sees the same thing on every file system (network mounts, containers' bind mounts,
//! where notifications are unreliable), needs no extra dependency, and at about 100 events a
//! day a poll every few seconds costs nothing. It remembers per file how many bytes and lines
//! it consumed, reads only what was appended, and leaves a trailing line without its newline
//! for the next poll, since the writer may be in the middle of it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::row::{self, RowProblem};
use super::{Batch, Position, RowError, Seen, Source, SourceError};

/// The extension of the files read from a directory.
pub const EXTENSION: &str = "jsonl";

/// Parse complete JSON Lines text; `origin` names it in errors. A last line without a newline
/// counts (the text is complete).
#[must_use]
pub fn parse_str(text: &str, origin: &str) -> Batch {
    let mut batch = Batch::default();
    let mut seen = Seen::default();
    for (index, line) in text.lines().enumerate() {
        take_line(&mut seen, &mut batch, origin, index + 1, line.as_bytes());
    }
    batch
}

/// Read a JSON Lines file, or every `*.jsonl` file of a directory in name order. Duplicates are
/// looked for across all the files read.
///
/// # Errors
///
/// [`SourceError::Io`] when the path, the directory or one of its files cannot be read.
pub fn read_path(path: &Path) -> Result<Batch, SourceError> {
    let io = |source| SourceError::Io {
        path: path.to_owned(),
        source,
    };
    let files = if std::fs::metadata(path).map_err(io)?.is_dir() {
        jsonl_files(path)?
    } else {
        vec![path.to_owned()]
    };
    let mut batch = Batch::default();
    let mut seen = Seen::default();
    for file in files {
        let bytes = std::fs::read(&file).map_err(|source| SourceError::Io {
            path: file.clone(),
            source,
        })?;
        let origin = file.display().to_string();
        for (index, line) in bytes.split(|byte| *byte == b'\n').enumerate() {
            take_line(&mut seen, &mut batch, &origin, index + 1, line);
        }
    }
    Ok(batch)
}

/// The `*.jsonl` files directly in `dir`, sorted by name.
///
/// # Errors
///
/// [`SourceError::Io`] when the directory cannot be listed.
pub fn jsonl_files(dir: &Path) -> Result<Vec<PathBuf>, SourceError> {
    let io = |source| SourceError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|ext| ext == EXTENSION) && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// How far a watched file has been read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileProgress {
    /// Bytes consumed: always just after a newline.
    pub bytes: u64,
    /// Lines consumed, so that line numbers in errors stay those of the file.
    pub lines: usize,
}

/// A directory of JSON Lines files read again on every [`poll`](JsonlWatcher::poll) for new
/// files and appended complete lines.
#[derive(Debug)]
pub struct JsonlWatcher {
    dir: PathBuf,
    files: BTreeMap<PathBuf, FileProgress>,
    seen: Seen,
}

impl JsonlWatcher {
    /// Watch `dir`, reading every file from its start on the first poll.
    #[must_use]
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self::resume(dir, [])
    }

    /// Watch `dir`, reading on from where an earlier watcher stopped (see
    /// [`progress`](Self::progress)), so that a restarted daemon does not read lines again.
    /// Duplicate ids are then only caught among the lines read from here on.
    #[must_use]
    pub fn resume(
        dir: impl Into<PathBuf>,
        progress: impl IntoIterator<Item = (PathBuf, FileProgress)>,
    ) -> Self {
        Self {
            dir: dir.into(),
            files: progress.into_iter().collect(),
            seen: Seen::default(),
        }
    }

    /// How far each file has been read, to be kept for [`resume`](Self::resume).
    pub fn progress(&self) -> impl Iterator<Item = (&Path, FileProgress)> {
        self.files
            .iter()
            .map(|(path, progress)| (path.as_path(), *progress))
    }

    /// Read the complete lines added since the last poll, files in name order.
    ///
    /// A file that cannot be read is reported in [`Batch::rejected`] and tried again on the
    /// next poll; a file that became shorter than what was consumed (rewritten, not appended
    /// to) is reported and read on from its new end, since reading it again from the start
    /// would deliver its rows twice.
    ///
    /// # Errors
    ///
    /// [`SourceError::Io`] when the directory cannot be listed.
    pub fn poll(&mut self) -> Result<Batch, SourceError> {
        let mut batch = Batch::default();
        for path in jsonl_files(&self.dir)? {
            let origin = path.display().to_string();
            let progress = self.files.entry(path.clone()).or_default();
            if let Err(error) = read_appended(&path, &origin, progress, &mut self.seen, &mut batch)
            {
                batch.rejected.push(RowError {
                    origin,
                    position: Position::Whole,
                    problem: RowProblem::Unreadable(error.to_string()),
                });
            }
        }
        Ok(batch)
    }
}

impl Source for JsonlWatcher {
    // The files are local and small (about 100 rows a day), so reading them on the async task
    // is cheaper than handing them to a blocking thread.
    async fn poll(&mut self) -> Result<Batch, SourceError> {
        JsonlWatcher::poll(self)
    }
}

/// Read what was appended to one file after `progress`, up to its last newline.
fn read_appended(
    path: &Path,
    origin: &str,
    progress: &mut FileProgress,
    seen: &mut Seen,
    batch: &mut Batch,
) -> std::io::Result<()> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    if len < progress.bytes {
        batch.rejected.push(RowError {
            origin: origin.to_owned(),
            position: Position::Whole,
            problem: RowProblem::Unreadable(format!(
                "file shrank from {} to {len} bytes; reading on from its new end",
                progress.bytes
            )),
        });
        progress.bytes = len;
        return Ok(());
    }
    if len == progress.bytes {
        return Ok(());
    }
    file.seek(SeekFrom::Start(progress.bytes))?;
    let mut appended = Vec::new();
    // Only up to the length seen now: what is written while reading waits for the next poll.
    file.take(len - progress.bytes).read_to_end(&mut appended)?;
    let Some(last_newline) = appended.iter().rposition(|byte| *byte == b'\n') else {
        return Ok(());
    };
    let complete = &appended[..last_newline];
    for line in complete.split(|byte| *byte == b'\n') {
        progress.lines += 1;
        take_line(seen, batch, origin, progress.lines, line);
    }
    progress.bytes += last_newline as u64 + 1;
    Ok(())
}

/// Parse one line (without its newline) into the batch.
fn take_line(seen: &mut Seen, batch: &mut Batch, origin: &str, line: usize, bytes: &[u8]) {
    // Windows line ends are accepted; blank lines separate nothing and are skipped.
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    let parsed = std::str::from_utf8(bytes)
        .map_err(|_| RowProblem::Utf8)
        .and_then(row::parse_text);
    seen.take(batch, origin, Position::Line(line), parsed);
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use chrono::DateTime;

    use super::*;
    use crate::event::Outcome;

    const A: &str = r#"{"id": "a", "title": "T", "created_at": 1}"#;
    const B: &str = r#"{"id": "b", "title": "T", "created_at": 2, "outcome": 0, "resolved_at": 9}"#;

    fn messages(batch: &Batch) -> Vec<String> {
        batch.rejected.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn malformed_lines_are_reported_and_skipped() {
        let text = format!(
            "{A}\n\n{{\"id\": \"c\", \"title\": \"T\"}}\nnot json\n{B}\n{{\"id\": \"d\", \"title\": \"T\", \"created_at\": 1, \"outcome\": 7, \"resolved_at\": 9}}\r\n{{\"id\": \"e\", \"title\": \"T\", \"created_at\": \"soon\"}}"
        );
        let batch = parse_str(&text, "t.jsonl");
        let ids: Vec<_> = batch.events.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(batch.resolutions.len(), 1);
        assert_eq!(batch.resolutions[0].outcome, Outcome::No);
        let messages = messages(&batch);
        assert_eq!(messages.len(), 4, "{messages:?}");
        assert_eq!(messages[0], "t.jsonl:3: missing field `created_at`");
        assert!(messages[1].starts_with("t.jsonl:4: invalid JSON"));
        assert_eq!(messages[2], "t.jsonl:6: `outcome` must be 0 or 1, got 7");
        assert!(messages[3].starts_with("t.jsonl:7: `created_at`: expected"));
    }

    #[test]
    fn duplicates_are_reported_with_the_first_place() {
        let resolution = r#"{"event_id": "b", "outcome": 1, "resolved_at": 10}"#;
        let text = format!("{A}\n{B}\n{A}\n{resolution}\n");
        let batch = parse_str(&text, "t.jsonl");
        assert_eq!(batch.events.len(), 2);
        assert_eq!(batch.resolutions.len(), 1);
        assert_eq!(
            messages(&batch),
            [
                "t.jsonl:3: duplicate event id \"a\" (first at t.jsonl:1)",
                "t.jsonl:4: duplicate resolution of event \"b\" (first at t.jsonl:2)",
            ]
        );
    }

    #[test]
    fn a_directory_is_read_in_name_order_and_checked_across_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("2.jsonl"), format!("{A}\n")).unwrap();
        std::fs::write(dir.path().join("1.jsonl"), format!("{B}\n")).unwrap();
        std::fs::write(dir.path().join("1.jsonl.tmp"), "garbage\n").unwrap();
        std::fs::write(dir.path().join("3.jsonl"), [b'{', 0xff, b'\n']).unwrap();
        let batch = read_path(dir.path()).unwrap();
        let ids: Vec<_> = batch.events.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["b", "a"]);
        let messages = messages(&batch);
        assert_eq!(messages.len(), 1);
        assert!(
            messages[0].ends_with("3.jsonl:1: invalid UTF-8"),
            "{messages:?}"
        );

        std::fs::write(dir.path().join("4.jsonl"), format!("\n{A}")).unwrap();
        let batch = read_path(dir.path()).unwrap();
        let last = batch.rejected.last().unwrap().to_string();
        assert!(
            last.contains("4.jsonl:2: duplicate event id \"a\" (first at ")
                && last.ends_with("2.jsonl:1)"),
            "{last}"
        );

        assert!(matches!(
            read_path(&dir.path().join("absent.jsonl")),
            Err(SourceError::Io { .. })
        ));
    }

    #[test]
    fn the_watcher_reads_appended_complete_lines_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut file = File::create(&path).unwrap();
        let mut watcher = JsonlWatcher::new(dir.path());
        assert!(watcher.poll().unwrap().is_empty());

        // A complete line and half of the next.
        write!(file, "{A}\n{{\"id\": \"b\", \"title\"").unwrap();
        file.flush().unwrap();
        let batch = watcher.poll().unwrap();
        assert_eq!(batch.events.len(), 1);
        assert!(batch.rejected.is_empty(), "{:?}", messages(&batch));
        // Nothing new: the partial line waits.
        assert!(watcher.poll().unwrap().is_empty());

        // The line completes, and a bad one follows: its number is the file's.
        write!(file, ": \"T\", \"created_at\": 2}}\n{{\"id\": \"c\"}}\n").unwrap();
        file.flush().unwrap();
        let batch = watcher.poll().unwrap();
        assert_eq!(batch.events.len(), 1);
        assert_eq!(batch.events[0].id, "b");
        assert_eq!(
            messages(&batch),
            [format!("{}:3: missing field `title`", path.display())]
        );

        // A new file, and a duplicate of an id delivered by an earlier poll.
        std::fs::write(dir.path().join("more.jsonl"), format!("{A}\n")).unwrap();
        let batch = watcher.poll().unwrap();
        assert!(batch.events.is_empty());
        assert_eq!(batch.rejected.len(), 1);
        assert!(matches!(
            batch.rejected[0].problem,
            RowProblem::DuplicateId { .. }
        ));

        let progress: Vec<_> = watcher
            .progress()
            .map(|(path, progress)| (path.to_owned(), progress))
            .collect();
        assert_eq!(progress[0].1.lines, 3);

        // A rewritten (shorter) file is reported, not read again.
        std::fs::write(&path, format!("{A}\n")).unwrap();
        let batch = watcher.poll().unwrap();
        assert!(batch.events.is_empty());
        assert!(messages(&batch)[0].contains("file shrank"));
        let progress: Vec<_> = watcher
            .progress()
            .map(|(path, progress)| (path.to_owned(), progress))
            .collect();

        // A resumed watcher goes on where the old one stopped.
        let mut resumed = JsonlWatcher::resume(dir.path(), progress);
        assert!(resumed.poll().unwrap().is_empty());
        std::fs::write(dir.path().join("more.jsonl"), format!("{A}\n{B}\n")).unwrap();
        let batch = resumed.poll().unwrap();
        assert_eq!(batch.events.len(), 1);
        assert_eq!(batch.events[0].id, "b");

        assert!(matches!(
            JsonlWatcher::new(dir.path().join("absent")).poll(),
            Err(SourceError::Io { .. })
        ));
    }

    #[tokio::test]
    async fn poll_every_delivers_batches_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.jsonl"), format!("{A}\n")).unwrap();
        let (sender, mut receiver) = tokio::sync::mpsc::channel(4);
        let task = tokio::spawn(super::super::poll_every(
            JsonlWatcher::new(dir.path()),
            std::time::Duration::from_millis(10),
            sender,
        ));
        let batch = receiver.recv().await.unwrap().unwrap();
        assert_eq!(batch.events.len(), 1);
        std::fs::write(dir.path().join("b.jsonl"), format!("{B}\n")).unwrap();
        let batch = receiver.recv().await.unwrap().unwrap();
        assert_eq!(batch.events[0].id, "b");
        drop(receiver);
        task.await.unwrap();
    }

    #[test]
    fn the_shared_forecastbench_file() {
        // `../shared` beside the project root; a checkout elsewhere (a worktree) names the
        // file in SOOTH_FORECASTBENCH.
        let path = std::env::var_os("SOOTH_FORECASTBENCH").map_or_else(
            || {
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../shared/data/forecastbench/questions.jsonl")
            },
            PathBuf::from,
        );
        if !path.exists() {
            println!(
                "skipped: {} is absent (set SOOTH_FORECASTBENCH to its path)",
                path.display()
            );
            return;
        }
        let batch = read_path(&path).unwrap();
        assert!(batch.rejected.is_empty(), "{:?}", messages(&batch));
        assert_eq!(batch.events.len(), 560);
        assert_eq!(batch.resolutions.len(), 560);
        let yes = batch
            .resolutions
            .iter()
            .filter(|r| r.outcome == Outcome::Yes)
            .count();
        assert_eq!(yes, 82);
        assert!((yes as f64 / 560.0 - 0.1464).abs() < 5e-5);
        // Creation instants are the question dates, read independently of the parser.
        let text = std::fs::read_to_string(&path).unwrap();
        for (line, event) in text.lines().zip(&batch.events) {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(row["id"], event.id.as_str());
            let question_date =
                DateTime::parse_from_rfc3339(row["question_date"].as_str().unwrap()).unwrap();
            assert_eq!(event.created_at, question_date);
            assert!(event.metadata.contains_key("market_prob"));
            assert!(!event.metadata.contains_key("outcome"));
        }
        for (event, resolution) in batch.events.iter().zip(&batch.resolutions) {
            assert_eq!(resolution.event_id, event.id);
            assert!(resolution.resolved_at >= event.cutoff);
        }
    }
}
