//! Copying state directories: small ones file by file, others with
//! `cp -a` (sharing extents where the file system can); what a state may
//! not hold (sockets, devices) refused.

use super::*;

/// A state of at most this many entries, none a directory, and at most
/// [`SMALL_STATE_BYTES`] in all, is copied and looked over on the
/// runtime's own thread: handing an empty state's copy to the blocking
/// pool and back cost a no-op iteration an eighth of its time, where a
/// large state's would hold up every other iteration's events there.
pub(super) const SMALL_STATE_ENTRIES: usize = 16;
pub(super) const SMALL_STATE_BYTES: u64 = 256 << 10;

/// The entries of `dir` if it is a small state (see
/// [`SMALL_STATE_ENTRIES`]), else `None`.
pub(super) fn small_state(dir: &Path) -> io::Result<Option<Vec<std::fs::DirEntry>>> {
    let mut entries = Vec::new();
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() || entries.len() == SMALL_STATE_ENTRIES {
            return Ok(None);
        }
        if kind.is_file() {
            bytes += entry.metadata()?.len();
            if bytes > SMALL_STATE_BYTES {
                return Ok(None);
            }
        }
        entries.push(entry);
    }
    Ok(Some(entries))
}

/// Copies the state `from` into `to` (which exists), as [`copy_tree`]
/// does: a small state (see [`SMALL_STATE_ENTRIES`]) here, a larger one
/// on the blocking pool.
pub(super) async fn copy_state(from: &Path, to: &Path) -> io::Result<()> {
    if let Some(entries) = small_state(from)? {
        for entry in entries {
            copy_entry(&entry, to)?;
        }
        return Ok(());
    }
    let (from, to) = (from.to_owned(), to.to_owned());
    tokio::task::spawn_blocking(move || copy_tree(&from, &to))
        .await
        .map_err(io::Error::other)?
}

/// [`special_file`] of the state `dir`: here for a small state, on the
/// blocking pool for a larger one.
pub(super) async fn special_file_in_state(dir: &Path) -> Option<PathBuf> {
    match small_state(dir) {
        Ok(Some(entries)) => entries.iter().find_map(|entry| {
            let kind = entry.file_type().ok()?;
            (!kind.is_file() && !kind.is_symlink()).then(|| entry.path())
        }),
        _ => {
            let dir = dir.to_owned();
            tokio::task::spawn_blocking(move || special_file(&dir))
                .await
                .ok()
                .flatten()
        }
    }
}

/// Removes everything inside `dir`.
pub(super) fn empty_dir(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// The first special file (FIFO, socket, device) under `dir`, if any: a
/// body must not leave one in its state (opening it to copy or digest it
/// could block for good).
pub(crate) fn special_file(dir: &Path) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let kind = entry.file_type().ok()?;
        if kind.is_dir() {
            if let Some(found) = special_file(&entry.path()) {
                return Some(found);
            }
        } else if !kind.is_file() && !kind.is_symlink() {
            return Some(entry.path());
        }
    }
    None
}

/// Copies the files of `from` into `to` (which exists), recursively.
/// Files are reflinked where the file system can (btrfs, XFS, bcachefs):
/// the copy shares blocks until one side writes, so a state of many GiB
/// costs next to nothing to copy. Elsewhere they are copied.
pub(crate) fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        copy_entry(&entry?, to)?;
    }
    Ok(())
}

/// Copies `entry` (a directory's, recursively) into `to`.
pub(super) fn copy_entry(entry: &std::fs::DirEntry, to: &Path) -> io::Result<()> {
    let target = to.join(entry.file_name());
    let kind = entry.file_type()?;
    if kind.is_dir() {
        std::fs::create_dir_all(&target)?;
        copy_tree(&entry.path(), &target)?;
    } else if kind.is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &target)?;
    } else {
        reflink_copy::reflink_or_copy(entry.path(), &target)?;
    }
    Ok(())
}
