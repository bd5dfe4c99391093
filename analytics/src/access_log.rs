//! The access log in a file, followed through log rotation: when its path no longer names the
//! file being written (logrotate, or anything else, moved or removed it), a new file is opened
//! at the path. Without it, the gateway would go on writing into the moved file, and a removed
//! one would keep its disk space until the gateway stopped.

use crate::{EventSink, JsonLinesSink, RequestEvent};
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often the path is looked at: a `stat` on the writer's thread, never the proxy's.
const CHECK_EVERY: Duration = Duration::from_secs(1);

pub struct AccessLogFile {
    path: PathBuf,
    lines: JsonLinesSink<File>,
    /// The file being written, as its device and inode.
    identity: (u64, u64),
    checked: Instant,
}

impl AccessLogFile {
    /// Opens (creating it when needed) the file at `path` to append to.
    pub fn open(path: PathBuf) -> io::Result<Self> {
        let (file, identity) = open(&path)?;
        Ok(AccessLogFile {
            path,
            lines: JsonLinesSink::new(file),
            identity,
            checked: Instant::now(),
        })
    }

    /// Opens a new file when the path no longer names the one being written. Should that fail,
    /// the lines go on into the old file, and the path is tried again at the next check.
    fn follow_rotation(&mut self) {
        if self.checked.elapsed() < CHECK_EVERY {
            return;
        }
        self.checked = Instant::now();
        let named = std::fs::metadata(&self.path).map(|m| (m.dev(), m.ino())).ok();
        if named == Some(self.identity) {
            return;
        }
        match open(&self.path) {
            Ok((file, identity)) => {
                // Every batch is flushed when written: nothing is left behind in the old file.
                self.lines = JsonLinesSink::new(file);
                self.identity = identity;
                tracing::info!(path = %self.path.display(), "the access log was moved or removed; writing a new one");
            }
            Err(error) => {
                tracing::warn!(path = %self.path.display(), %error, "the access log was moved or removed, and a new one cannot be opened; writing on into the old one")
            }
        }
    }
}

fn open(path: &Path) -> io::Result<(File, (u64, u64))> {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let meta = file.metadata()?;
    Ok((file, (meta.dev(), meta.ino())))
}

impl EventSink for AccessLogFile {
    fn write_batch(&mut self, events: &[RequestEvent]) -> io::Result<()> {
        self.follow_rotation();
        self.lines.write_batch(events)
    }

    fn maintain(&mut self) {
        self.follow_rotation();
    }
}
