//! The lifecycle's own records of each operation, in a directory beside
//! the checkpoints (on a file system every runner of the operation sees):
//!
//! - `runs/XXXXXXXX.json`: which operation runs a cell on a live state
//!   (the key is a CRC-32 of the cell's text and the state's identity), so
//!   that running them again resumes it;
//! - `ops/OP/run.json`: what was submitted, and which process runs it;
//! - `ops/OP/events.jsonl`: its events, for hosts that follow it from
//!   another process;
//! - `ops/OP/outcome.json`: how it ended (a [`Summary`]);
//! - `ops/OP/result.state`: the best state, kept (as the host snapshots it)
//!   until it is applied.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::live::Digests;
use crate::runner::Runner;
use crate::summary::Summary;

/// What was submitted, and which process runs it now.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound(deserialize = "D: DeserializeOwned", serialize = "D: Serialize"))]
pub struct RunRecord<D> {
    /// The operation.
    pub op: String,
    /// The cell, as the user named it (a file, a notebook cell).
    pub cell: String,
    /// The live state's [identity](crate::LiveState::identity).
    pub state: String,
    /// Digests of the live state at submission.
    pub submitted: Digests<D>,
    /// The process running the operation now.
    pub runner: Option<Runner>,
    /// The [run key](run_key) of its cell on its state: the index entry and
    /// start lock it goes by, so that it can be resumed by its id alone
    /// (empty in records written before it was kept).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
}

/// The index entry of a cell and live state.
#[derive(Serialize, Deserialize)]
struct RunIndex {
    op: String,
}

/// The records directory.
#[derive(Debug, Clone)]
pub struct Records {
    root: PathBuf,
}

/// Held while a start decides between resuming and starting afresh: two
/// starts of the same cell and state at once take turns, so the second
/// sees the first as running.
#[derive(Debug)]
pub(crate) struct StartLock {
    _file: File,
}

impl Records {
    /// The records under `root` (created when first written).
    pub fn new(root: impl Into<PathBuf>) -> Records {
        Records { root: root.into() }
    }

    /// The directory of the records.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of one operation's records.
    pub fn op_dir(&self, op: &str) -> PathBuf {
        self.root.join("ops").join(op)
    }

    /// The event log of `op` (JSON Lines of executor events).
    pub fn events_path(&self, op: &str) -> PathBuf {
        self.op_dir(op).join("events.jsonl")
    }

    /// The record of `op`, if there is one and it reads.
    pub fn run<D: DeserializeOwned>(&self, op: &str) -> Option<RunRecord<D>> {
        self.try_run(op).ok().flatten()
    }

    /// The record of `op`: `None` if there is none, an error naming the
    /// file if it is damaged.
    pub fn try_run<D: DeserializeOwned>(&self, op: &str) -> Result<Option<RunRecord<D>>, Damaged> {
        try_read_json(&self.op_dir(op).join("run.json"))
    }

    /// Saves the record of an operation.
    pub fn write_run<D: Serialize>(&self, record: &RunRecord<D>) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
        write_atomically(&self.op_dir(&record.op).join("run.json"), &bytes)
    }

    /// How `op` ended, if it has.
    pub fn outcome(&self, op: &str) -> Option<Summary> {
        read_json(&self.op_dir(op).join("outcome.json"))
    }

    /// Saves how `op` ended.
    pub fn write_outcome(&self, summary: &Summary) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(summary).map_err(io::Error::other)?;
        write_atomically(&self.op_dir(&summary.op).join("outcome.json"), &bytes)
    }

    /// Forgets how `op` ended: a resumed operation has not ended any more.
    pub fn remove_outcome(&self, op: &str) -> io::Result<()> {
        remove_if_there(&self.op_dir(op).join("outcome.json"))
    }

    /// Where the unapplied result of `op` is kept.
    pub fn kept_result_path(&self, op: &str) -> PathBuf {
        self.op_dir(op).join("result.state")
    }

    /// Whether a result of `op` waits to be applied.
    pub fn has_kept_result(&self, op: &str) -> bool {
        self.kept_result_path(op).is_file()
    }

    /// The operation that runs `cell` on the live state `identity`: `None`
    /// if there is none, an error naming the file if it is damaged.
    pub fn indexed(&self, cell: &str, identity: &str) -> Result<Option<String>, Damaged> {
        try_read_json::<RunIndex>(&self.index_path(cell, identity)).map(|index| index.map(|i| i.op))
    }

    /// Remembers that `op` runs `cell` on the live state `identity`.
    pub fn write_index(&self, cell: &str, identity: &str, op: &str) -> io::Result<()> {
        let bytes =
            serde_json::to_vec(&RunIndex { op: op.to_owned() }).map_err(io::Error::other)?;
        write_atomically(&self.index_path(cell, identity), &bytes)
    }

    /// Forgets which operation runs `cell` on `identity`: the next run
    /// starts a new one.
    pub fn remove_index(&self, cell: &str, identity: &str) -> io::Result<()> {
        self.remove_index_of(&run_key(cell, identity))
    }

    /// Forgets the index entry of the [run key](run_key) `key`.
    pub fn remove_index_of(&self, key: &str) -> io::Result<()> {
        remove_if_there(&self.root.join("runs").join(format!("{key}.json")))
    }

    fn index_path(&self, cell: &str, identity: &str) -> PathBuf {
        self.root
            .join("runs")
            .join(format!("{}.json", run_key(cell, identity)))
    }

    /// Takes the start lock of the [run key](run_key) `key`, waiting for
    /// another start to finish deciding. Polled, never blocking the thread:
    /// the other start may be a task on the same thread.
    pub(crate) async fn lock_start(&self, key: &str) -> io::Result<StartLock> {
        let path = self.root.join("runs").join(format!("{key}.lock"));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        loop {
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(StartLock { _file: file }),
                Err(rustix::io::Errno::WOULDBLOCK) | Err(rustix::io::Errno::INTR) => {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                Err(e) => {
                    return Err(io::Error::other(format!("locking {}: {e}", path.display())));
                }
            }
        }
    }
}

/// The key of a cell on a live state: a CRC-32 of both, in hex. A host that
/// keeps files of its own per run (a batch job's directory) names them so.
pub fn run_key(cell: &str, identity: &str) -> String {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(cell.as_bytes());
    hasher.update(identity.as_bytes());
    format!("{:08x}", hasher.finalize())
}

/// An operation id given by a user that is not one: it would not be safe
/// as a path either.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{}` is not an operation id; ids look like op-0123abcd…", .0.escape_debug())]
pub struct NotAnOpId(pub String);

/// Checks an operation id given by a user before it becomes a path.
pub fn check_op_id(op: &str) -> Result<(), NotAnOpId> {
    let fine = op.strip_prefix("op-").is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    });
    if fine {
        Ok(())
    } else {
        Err(NotAnOpId(op.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_ids_are_op_and_a_name_of_safe_characters() {
        assert!(check_op_id("op-0123abcd").is_ok());
        assert!(check_op_id("op-nope_2").is_ok());
        for bad in ["", "-", "foo", "op-", "op-../x", "op-a/b", "op-\u{1b}[31m"] {
            assert!(check_op_id(bad).is_err(), "{bad:?}");
        }
        let message = check_op_id("op-\u{1b}[2J").unwrap_err().to_string();
        assert!(!message.contains('\u{1b}'), "{message}");
    }
}

/// Writes `bytes` to `path` whole or not at all, durably: a temporary file
/// beside it, synced, renamed over it, and its directory synced (and each
/// directory it had to make, in its parent), so that the record survives
/// a power loss as the checkpoints it points to do.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use pragma_checkpoint::FileSystem;
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let fs = pragma_checkpoint::OsFileSystem;
    pragma_checkpoint::create_dir_all_durably(&fs, parent)?;
    let mut temporary = tempfile::NamedTempFile::new_in(parent)?;
    temporary.write_all(bytes)?;
    temporary.as_file().sync_all()?;
    temporary.persist(path).map_err(|e| e.error)?;
    fs.sync_dir(parent)
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Option<T> {
    try_read_json(path).ok().flatten()
}

/// A record that is there but cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{}` is damaged: {reason}", path.display())]
pub struct Damaged {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

/// `path` as JSON: `None` if it is not there.
fn try_read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, Damaged> {
    let damaged = |reason: String| Damaged {
        path: path.to_owned(),
        reason,
    };
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| damaged(e.to_string())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(damaged(e.to_string())),
    }
}

fn remove_if_there(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
