//! The mission log's file: JSON Lines, one [`JournalEntry`] per line,
//! appended in time order to `mission-log.jsonl` in the space's folder,
//! never rewritten. The newest entries are also kept in memory for the
//! viewer.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use fusion::JournalEntry;

use super::LogError;

/// The file's name in a space's folder.
pub const MISSION_LOG_FILE: &str = "mission-log.jsonl";
/// Entries kept in memory per space (the file keeps them all).
pub const RECENT: usize = 10_000;

/// One space's mission log.
#[derive(Debug, Default)]
pub struct MissionLog {
    /// Where it is kept (none: in memory only); the file is created with
    /// the first entry, so a space that never has one leaves no folder.
    path: Option<PathBuf>,
    file: Option<BufWriter<File>>,
    /// The file ends in a torn line: begin with a line break.
    torn: bool,
    recent: VecDeque<JournalEntry>,
}

impl MissionLog {
    /// Kept in memory only (a server without a data folder).
    pub fn in_memory() -> MissionLog {
        MissionLog::default()
    }

    /// Opens the file in `space_dir` for appending, after reading back the
    /// newest entries; returns it with how many lines could not be read
    /// (a line cut short by a crash, say).
    pub fn open(space_dir: &Path) -> Result<(MissionLog, usize), LogError> {
        let path = space_dir.join(MISSION_LOG_FILE);
        let mut log = MissionLog::default();
        let mut bad = 0;
        if let Ok(f) = File::open(&path) {
            for line in BufReader::new(f).lines() {
                match line.map(|l| serde_json::from_str::<JournalEntry>(&l)) {
                    Ok(Ok(e)) => log.remember(e),
                    _ => bad += 1,
                }
            }
        }
        log.torn = bad > 0;
        log.path = Some(path);
        Ok((log, bad))
    }

    fn remember(&mut self, e: JournalEntry) {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(e);
    }

    /// Appends entries (written through to the operating system).
    pub fn append(&mut self, entries: Vec<JournalEntry>) -> Result<(), LogError> {
        if entries.is_empty() {
            return Ok(());
        }
        if let (None, Some(path)) = (&self.file, &self.path) {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut file = OpenOptions::new().create(true).append(true).open(path)?;
            // A line cut short by a crash must not swallow the next one.
            if self.torn {
                file.write_all(b"\n")?;
                self.torn = false;
            }
            self.file = Some(BufWriter::new(file));
        }
        if let Some(f) = self.file.as_mut() {
            for e in &entries {
                serde_json::to_writer(&mut *f, e)?;
                f.write_all(b"\n")?;
            }
            f.flush()?;
        }
        for e in entries {
            self.remember(e);
        }
        Ok(())
    }

    /// The newest `limit` entries, oldest first.
    pub fn recent(&self, limit: usize) -> Vec<JournalEntry> {
        let skip = self.recent.len().saturating_sub(limit);
        self.recent.iter().skip(skip).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at_ms: i64, text: &str) -> JournalEntry {
        fusion::Journal::action("removed", Some("x"), Some("op"), text.into(), at_ms)
    }

    #[test]
    fn entries_survive_a_restart_and_a_torn_line() {
        let dir = std::env::temp_dir().join(format!("rm-mission-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (mut log, bad) = MissionLog::open(&dir).expect("open");
        assert_eq!(bad, 0);
        log.append(vec![entry(1, "one"), entry(2, "two")])
            .expect("append");
        drop(log);
        // A crash in the middle of a line.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.join(MISSION_LOG_FILE))
            .expect("open");
        f.write_all(br#"{"at_ms":3,"kind":"rem"#).expect("torn");
        drop(f);
        let (mut log, bad) = MissionLog::open(&dir).expect("reopen");
        assert_eq!(bad, 1);
        log.append(vec![entry(4, "four")]).expect("append");
        drop(log);
        let (log, bad) = MissionLog::open(&dir).expect("reopen");
        assert_eq!(bad, 1, "the torn line stays torn, nothing else is lost");
        let texts: Vec<String> = log.recent(10).into_iter().map(|e| e.text).collect();
        assert_eq!(texts, ["one", "two", "four"]);
        assert_eq!(log.recent(1)[0].text, "four");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
