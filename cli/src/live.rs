//! The live state of a shell cell: the state directory the user keeps
//! working in. Its files are the variables (by path relative to it); a
//! symlink is a variable whose value is its target, never followed.
//!
//! File names are bytes: a path that is not UTF-8 is named by
//! [`var_name`], losslessly, and shown escaped (`b\xff`).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use pragma_session::{Change, Digests, LiveState};
use serde::{Deserialize, Serialize};

use crate::shell::{DirState, ShellHost};

/// A digest of one file of a state directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum FileDigest {
    /// A regular file: its length and CRC-32.
    File(u64, u32),
    /// A symlink: its target.
    Link {
        /// The target, as the link holds it.
        link: PathBuf,
    },
}

/// The state directory of a run.
pub(crate) struct DirLive {
    /// The directory, absolute where it exists.
    dir: PathBuf,
    /// Copies it into a state to submit.
    host: ShellHost,
    /// Set by a signal: an apply under way stops before its next file, and
    /// leaves the directory as it was.
    stop: Arc<AtomicBool>,
}

impl DirLive {
    /// The state directory `dir`.
    pub(crate) fn new(dir: &Path, host: ShellHost) -> DirLive {
        DirLive {
            dir: std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned()),
            host,
            stop: Arc::default(),
        }
    }

    /// What a signal sets to stop an apply under way (see [`DirLive::stop`]).
    pub(crate) fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }
}

#[async_trait]
impl LiveState for DirLive {
    type State = DirState;
    type Digest = FileDigest;

    fn identity(&self) -> String {
        self.dir.to_string_lossy().into_owned()
    }

    async fn capture(&self) -> io::Result<(DirState, Digests<FileDigest>)> {
        // What an apply cut short by a crash left is not state.
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || remove_staging_files(&dir))
            .await
            .map_err(io::Error::other)??;
        // Digested first: a special file is refused before a copy could
        // block on it.
        let digests = self.digests().await?;
        // A link into the state by its absolute path would lead every
        // iteration's copy back to the live files: no isolation.
        for (name, digest) in &digests {
            if let FileDigest::Link { link } = digest
                && link.is_absolute()
                && link.starts_with(&self.dir)
            {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} links into the state by its absolute path ({}): every iteration \
                         would write to the live files; make the link relative (`ln -sfr`)",
                        self.dir.join(var_path(name)).display(),
                        link.display()
                    ),
                ));
            }
        }
        let state = self.host.state_from(&self.dir).await?;
        Ok((state, digests))
    }

    async fn digests(&self) -> io::Result<Digests<FileDigest>> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || digests(&dir))
            .await
            .map_err(io::Error::other)?
    }

    async fn digests_of(&self, state: &DirState) -> io::Result<Digests<FileDigest>> {
        let dir = state.path().to_owned();
        tokio::task::spawn_blocking(move || digests(&dir))
            .await
            .map_err(io::Error::other)?
    }

    async fn apply(&self, result: &DirState, changes: &[Change]) -> io::Result<()> {
        let (live, result) = (self.dir.clone(), result.path().to_owned());
        let changes = changes.to_vec();
        let stop = Arc::clone(&self.stop);
        tokio::task::spawn_blocking(move || apply(&live, &result, &changes, &stop))
            .await
            .map_err(io::Error::other)?
    }
}

/// Starts the name of a variable whose path is not UTF-8 (no file name
/// holds a NUL): the rest is the path with each byte that is not UTF-8
/// written `\xHH`, and `\` as `\\`.
const NOT_UTF8: char = '\0';

/// The variable name of the relative path `path`: the path itself when it
/// is UTF-8, otherwise its escaped bytes after [`NOT_UTF8`].
pub(crate) fn var_name(path: &Path) -> String {
    use std::fmt::Write;
    use std::os::unix::ffi::OsStrExt;
    if let Some(text) = path.to_str() {
        return text.to_owned();
    }
    let mut name = String::from(NOT_UTF8);
    for chunk in path.as_os_str().as_bytes().utf8_chunks() {
        name.push_str(&chunk.valid().replace('\\', "\\\\"));
        for byte in chunk.invalid() {
            let _ = write!(name, "\\x{byte:02x}");
        }
    }
    name
}

/// The relative path a variable name stands for (see [`var_name`]).
pub(crate) fn var_path(name: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let Some(escaped) = name.strip_prefix(NOT_UTF8) else {
        return PathBuf::from(name);
    };
    let mut bytes = Vec::with_capacity(escaped.len());
    let mut chars = escaped.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
            continue;
        }
        match chars.next() {
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                bytes.push(u8::from_str_radix(&hex, 16).unwrap_or(b'?'));
            }
            Some(other) => bytes.extend_from_slice(other.encode_utf8(&mut [0; 4]).as_bytes()),
            None => bytes.push(b'\\'),
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(bytes))
}

/// A variable name as a person reads it: the path, its bytes that are not
/// UTF-8 escaped (`b\xff`), control characters escaped.
pub(crate) fn shown_var(name: &str) -> String {
    crate::output::shown(name.strip_prefix(NOT_UTF8).unwrap_or(name))
}

/// Names `path` in an error: what failed, on which file.
fn on(path: &Path) -> impl FnOnce(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// A digest of every file under `dir`, by relative path.
pub(crate) fn digests(dir: &Path) -> io::Result<Digests<FileDigest>> {
    fn walk(root: &Path, dir: &Path, out: &mut Digests<FileDigest>) -> io::Result<()> {
        for entry in std::fs::read_dir(dir).map_err(on(dir))? {
            let entry = entry.map_err(on(dir))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(on(&path))?;
            let name = || var_name(path.strip_prefix(root).unwrap_or(&path));
            if kind.is_symlink() {
                let link = std::fs::read_link(&path).map_err(on(&path))?;
                out.insert(name(), FileDigest::Link { link });
            } else if kind.is_dir() {
                walk(root, &path, out)?;
            } else if kind.is_file() {
                out.insert(name(), file_digest(&path).map_err(on(&path))?);
            } else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} is a special file (a FIFO, socket or device), which cannot be \
                         state: remove it or move it out of the state directory",
                        path.display()
                    ),
                ));
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out)?;
    Ok(out)
}

/// The length and CRC-32 of a file, streamed: a state of many GiB is not
/// read into memory.
fn file_digest(path: &Path) -> io::Result<FileDigest> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buffer = vec![0u8; 1 << 16];
    let mut len = 0u64;
    loop {
        let n = io::Read::read(&mut file, &mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        len += n as u64;
    }
    Ok(FileDigest::File(len, hasher.finalize()))
}

/// Applies `changes` to `live` from `result`, all or nothing as far as the
/// file system allows: every new file is staged beside its target first
/// and synced (a full disk or a permission error fails here, with the live
/// state as it was), then renamed over it, and the directories synced once
/// all are in place. Each file is whole, old or new, whatever a crash or a
/// power loss cuts short; a `pragma run` of the cell again finishes the
/// apply (a file already new is no conflict).
fn apply(live: &Path, result: &Path, changes: &[Change], stop: &AtomicBool) -> io::Result<()> {
    use pragma_checkpoint::FileSystem;
    // What an earlier apply cut short left goes first.
    remove_staging_files(live)?;
    let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
    let staging = stage(live, result, changes, stop, &mut staged);
    if let Err(e) = staging {
        for (temporary, _) in &staged {
            let _ = std::fs::remove_file(temporary);
        }
        return Err(e);
    }
    let mut touched = std::collections::BTreeSet::new();
    for (temporary, target) in &staged {
        std::fs::rename(temporary, target).map_err(on(target))?;
        touched.insert(target.parent().unwrap_or(live).to_owned());
    }
    for change in changes {
        if let Change::Remove(name) = change {
            let target = live.join(var_path(name));
            match std::fs::remove_file(&target) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(on(&target)(e)),
                _ => {}
            }
            touched.insert(target.parent().unwrap_or(live).to_owned());
        }
    }
    for dir in &touched {
        pragma_checkpoint::OsFileSystem
            .sync_dir(dir)
            .map_err(on(dir))?;
    }
    Ok(())
}

/// The name an apply stages a file under, beside its target.
fn staging_name(target: &Path) -> std::ffi::OsString {
    let mut name = std::ffi::OsString::from(".");
    name.push(target.file_name().unwrap_or_default());
    name.push(STAGING_SUFFIX);
    name
}

const STAGING_SUFFIX: &str = ".pragma-apply";

/// Removes the files an apply staged and a crash left under `dir` (an
/// apply that runs meanwhile on the same state fails, and keeps its
/// result for `pragma apply`).
fn remove_staging_files(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir).map_err(on(dir))? {
        let entry = entry.map_err(on(dir))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if entry.file_type().map_err(on(&path))?.is_dir() {
            remove_staging_files(&path)?;
        } else if name.starts_with('.') && name.ends_with(STAGING_SUFFIX) {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(on(&path)(e)),
                _ => {}
            }
        }
    }
    Ok(())
}

/// Writes each file to set beside its target; `staged` lists what was
/// written, to rename or to clean up.
fn stage(
    live: &Path,
    result: &Path,
    changes: &[Change],
    stop: &AtomicBool,
    staged: &mut Vec<(PathBuf, PathBuf)>,
) -> io::Result<()> {
    for change in changes {
        let Change::Set(name) = change else { continue };
        if stop.load(Ordering::Relaxed) {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "a signal stopped it before anything was applied",
            ));
        }
        let path = var_path(name);
        let (source, target) = (result.join(&path), live.join(&path));
        let parent = target.parent().unwrap_or(live);
        pragma_checkpoint::create_dir_all_durably(&pragma_checkpoint::OsFileSystem, parent)
            .map_err(on(parent))?;
        let temporary = parent.join(staging_name(&target));
        let kind = std::fs::symlink_metadata(&source).map_err(on(&source))?;
        let _ = std::fs::remove_file(&temporary);
        let written = if kind.file_type().is_symlink() {
            std::fs::read_link(&source)
                .and_then(|link| std::os::unix::fs::symlink(link, &temporary))
        } else {
            // Synced before it is renamed into place: else a power loss
            // can leave the new name on an empty file.
            std::fs::copy(&source, &temporary)
                .and_then(|_| std::fs::File::open(&temporary)?.sync_all())
        };
        // Listed before the check: a half-written copy is cleaned up too.
        staged.push((temporary.clone(), target.clone()));
        written.map_err(on(&target))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_are_variables_whose_value_is_their_target() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "1").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::os::unix::fs::symlink("nowhere", dir.path().join("dangling")).unwrap();
        std::os::unix::fs::symlink("sub", dir.path().join("to-dir")).unwrap();
        let digests = digests(dir.path()).unwrap();
        assert_eq!(digests["a"], FileDigest::File(1, crc32fast::hash(b"1")));
        assert_eq!(
            digests["dangling"],
            FileDigest::Link {
                link: "nowhere".into()
            }
        );
        assert_eq!(digests["to-dir"], FileDigest::Link { link: "sub".into() });
    }

    #[test]
    fn a_special_file_is_named_and_refused() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let error = digests(dir.path()).unwrap_err().to_string();
        assert!(error.contains("/f is a special file"), "{error}");
    }

    #[test]
    fn names_that_are_not_utf8_keep_their_bytes_end_to_end() {
        use std::os::unix::ffi::OsStrExt;
        for bytes in [&b"b\xff"[..], b"dir/a\\b\xfe\xfd", b"plain\\name", b"\xc3"] {
            let path = Path::new(std::ffi::OsStr::from_bytes(bytes));
            assert_eq!(var_path(&var_name(path)), path, "{bytes:?}");
        }
        assert_eq!(var_name(Path::new("plain\\name")), "plain\\name");
        let odd = Path::new(std::ffi::OsStr::from_bytes(b"b\xff"));
        assert_eq!(shown_var(&var_name(odd)), "b\\xff");

        // Digested, changed and applied by those names.
        let (live, result) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::write(live.path().join(odd), "old").unwrap();
        std::fs::write(result.path().join(odd), "new").unwrap();
        let created = Path::new(std::ffi::OsStr::from_bytes(b"c\xfe"));
        std::fs::write(result.path().join(created), "made").unwrap();
        let names: Vec<String> = digests(result.path()).unwrap().into_keys().collect();
        let changes: Vec<Change> = names.into_iter().map(Change::Set).collect();
        let go_on = AtomicBool::new(false);
        apply(live.path(), result.path(), &changes, &go_on).unwrap();
        assert_eq!(
            std::fs::read_to_string(live.path().join(odd)).unwrap(),
            "new"
        );
        assert_eq!(
            std::fs::read_to_string(live.path().join(created)).unwrap(),
            "made"
        );
        assert_eq!(
            std::fs::read_dir(live.path()).unwrap().count(),
            2,
            "no staging left"
        );
        apply(
            live.path(),
            result.path(),
            &[Change::Remove(var_name(created))],
            &go_on,
        )
        .unwrap();
        assert!(!live.path().join(created).exists());
    }

    #[test]
    fn digests_of_older_records_read_back() {
        let old: Digests<FileDigest> = serde_json::from_str(r#"{"a":[1,42]}"#).unwrap();
        assert_eq!(old["a"], FileDigest::File(1, 42));
    }
}
