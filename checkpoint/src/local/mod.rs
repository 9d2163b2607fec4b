//! The local file system backend.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::io::AsyncReadExt;

use crate::error::{Error, Result};
use crate::key::Key;
use crate::store::{Reader, Source, Store};

mod file_system;

pub use file_system::{DirEntry, FileSystem, OsFileSystem, WritableFile};

/// Size of the buffer that streams data to disk.
const CHUNK: usize = 4 << 20;
/// The first chunk's size; later ones are `CHUNK` if the data fills it.
const FIRST_CHUNK: usize = 64 << 10;

/// Objects as files under a root directory.
///
/// - `put` writes a temporary file beside the target, fsyncs it, renames it
///   over the target and fsyncs the directory: readers see the old file or
///   the new one, and a returned `put` survives a crash.
/// - `create` writes and fsyncs a temporary file, then hard-links it to the
///   target, which fails if the target exists: exclusive, and never shows a
///   partly written file.
/// - A directory the store creates is made durable in its parent before
///   anything is written in it: a synced name in a directory whose own name
///   was lost would be lost with it.
/// - Directories are created owner-only (0700), files readable by the owner
///   only (0600).
/// - Temporary files start with `.` and are not listed. They are named
///   `.NAME.HOST.BOOT.PID.NONCE.tmp` after their writer: a crash can leave
///   them behind, and [`LocalStore::remove_abandoned_temporaries`] clears
///   those of this host whose writer is gone (an earlier boot, or a process
///   that is no more), leaving live writers' and other hosts' alone. The
///   checkpoint log calls it when an operation is taken up or ends.
///
/// Every call goes through a [`FileSystem`]: the operating system's
/// ([`LocalStore::new`]) or one of the caller's
/// ([`LocalStore::with_file_system`]), such as the simulated one that
/// forgets unsynced writes on a power loss in the durability tests.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
    fs: Arc<dyn FileSystem>,
    /// The file system's [`FileSystem::boot`], read once: every temporary
    /// file's name carries it.
    boot: Arc<str>,
    /// The directories this store made durable (synced in their parent):
    /// a write into one of them costs no sync of its parent again.
    durable_dirs: Arc<Mutex<HashSet<PathBuf>>>,
}

impl LocalStore {
    /// A store rooted at `root` on the operating system's file system,
    /// created (owner-only) if missing.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        Self::with_file_system(root, Arc::new(OsFileSystem))
    }

    /// A store rooted at `root` on the file system `fs`, created
    /// (owner-only, durably) if missing.
    pub fn with_file_system(root: impl Into<PathBuf>, fs: Arc<dyn FileSystem>) -> Result<Self> {
        let root = root.into();
        create_dir_all_durably(fs.as_ref(), &root).map_err(|e| {
            Error::io(
                format!("creating the store directory {}", root.display()),
                e,
            )
        })?;
        let boot = Arc::from(fs.boot());
        Ok(LocalStore {
            root,
            fs,
            boot,
            durable_dirs: Arc::default(),
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &Key) -> PathBuf {
        // Every segment of a Key is a plain name: no `..`, no separators.
        key.names()
            .fold(self.root.clone(), |path, name| path.join(name))
    }

    /// Runs `call` with the file system on tokio's blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        context: impl FnOnce() -> String,
        call: impl FnOnce(&dyn FileSystem) -> io::Result<T> + Send + 'static,
    ) -> Result<T> {
        let fs = Arc::clone(&self.fs);
        match tokio::task::spawn_blocking(move || call(fs.as_ref())).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(Error::io(context(), e)),
            Err(e) => Err(Error::io(context(), io::Error::other(e))),
        }
    }

    /// Deletes the temporary files under `prefix` (the whole store for
    /// `None`) whose writer is gone: written on this host in an earlier boot,
    /// or by a process of this boot that no longer runs. Safe while other
    /// processes write. Returns how many it deleted.
    pub async fn remove_abandoned_temporaries(&self, prefix: Option<&Key>) -> Result<usize> {
        let start = prefix.map_or_else(|| self.root.clone(), |p| self.path(p));
        let shown = start.display().to_string();
        let boot = Arc::clone(&self.boot);
        self.blocking(
            || format!("removing abandoned temporary files under {shown}"),
            move |fs_ref| {
                let ours = boot;
                let mut removed = 0;
                let mut dirs = vec![start];
                while let Some(dir) = dirs.pop() {
                    let entries = match fs_ref.read_dir(&dir) {
                        Ok(entries) => entries,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) if e.kind() == io::ErrorKind::NotADirectory => continue,
                        Err(e) => return Err(e),
                    };
                    for entry in entries {
                        let path = dir.join(&entry.name);
                        if entry.is_dir {
                            dirs.push(path);
                            continue;
                        }
                        let name = entry.name.to_string_lossy();
                        let Some(writer) = TemporaryWriter::of(&name) else {
                            continue;
                        };
                        if abandoned(&writer, &ours) {
                            match fs_ref.remove_file(&path) {
                                Ok(()) => removed += 1,
                                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                                Err(e) => return Err(e),
                            }
                        }
                    }
                }
                Ok(removed)
            },
        )
        .await
    }

    /// Deletes every temporary file, whoever writes it. Do not run it
    /// while another process writes to the store; prefer
    /// [`remove_abandoned_temporaries`](Self::remove_abandoned_temporaries).
    pub fn remove_temporary_files(&self) -> Result<usize> {
        let mut removed = 0;
        let mut dirs = vec![self.root.clone()];
        while let Some(dir) = dirs.pop() {
            let entries = self
                .fs
                .read_dir(&dir)
                .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
            for entry in entries {
                let path = dir.join(&entry.name);
                if entry.is_dir {
                    dirs.push(path);
                } else if entry.name.to_string_lossy().starts_with('.') {
                    self.fs
                        .remove_file(&path)
                        .map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Streams `data` into a new temporary file beside `target`, fsynced.
    async fn write_temporary(&self, target: &Path, data: Source<'_>) -> Result<(PathBuf, u64)> {
        let dir = target.parent().unwrap_or(&self.root).to_owned();
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temporary = dir.join(format!(
            ".{name}.{}.{}.{}.tmp",
            self.boot,
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let context = || format!("writing {}", target.display());
        let file = {
            let temporary = temporary.clone();
            let durable_dirs = Arc::clone(&self.durable_dirs);
            self.blocking(context, move |fs| {
                make_dir_durably(fs, &durable_dirs, &dir)?;
                fs.create_new(&temporary)
            })
            .await?
        };
        // Blocking writes on the blocking pool, a chunk at a time, with two
        // buffers: one fills from the source while the other is written.
        let written = async {
            let mut file = Some(file);
            // Most checkpoints are small: start with a small buffer, so a
            // commit of a few bytes does not zero megabytes, and move to
            // big chunks once the source fills one.
            let mut size = FIRST_CHUNK;
            let mut spare = vec![0u8; size];
            let mut pending: Option<WriteJob> = None;
            let mut total = 0u64;
            loop {
                let n = read_full(data, &mut spare).await.map_err(|e| {
                    Error::io(format!("reading the data for {}", target.display()), e)
                })?;
                let mut returned = None;
                if let Some(job) = pending.take() {
                    let (f, buffer, result) = job
                        .await
                        .map_err(|e| Error::io(context(), io::Error::other(e)))?;
                    result.map_err(|e| Error::io(context(), e))?;
                    file = Some(f);
                    returned = Some(buffer);
                }
                if n == 0 {
                    break;
                }
                total += n as u64;
                if n == spare.len() {
                    size = CHUNK;
                }
                let mut f = file.take().ok_or_else(|| {
                    Error::io(
                        context(),
                        io::Error::other("the file is still being written"),
                    )
                })?;
                let next = match returned {
                    Some(buffer) if buffer.len() == size => buffer,
                    _ => vec![0u8; size],
                };
                let chunk = std::mem::replace(&mut spare, next);
                pending = Some(tokio::task::spawn_blocking(move || {
                    let result = f.write_all(&chunk[..n]);
                    (f, chunk, result)
                }));
            }
            let mut f = file.take().ok_or_else(|| {
                Error::io(
                    context(),
                    io::Error::other("the file is still being written"),
                )
            })?;
            tokio::task::spawn_blocking(move || f.sync_all())
                .await
                .map_err(|e| Error::io(context(), io::Error::other(e)))?
                .map_err(|e| Error::io(context(), e))?;
            Ok(total)
        }
        .await;
        match written {
            Ok(total) => Ok((temporary, total)),
            Err(e) => {
                let _ = self
                    .blocking(String::new, move |fs| fs.remove_file(&temporary))
                    .await;
                Err(e)
            }
        }
    }
}

/// Who wrote a temporary file, from its name
/// (`.NAME.HOST.BOOT.PID.NONCE.tmp`).
struct TemporaryWriter<'a> {
    host: &'a str,
    boot: &'a str,
    pid: u32,
}

impl<'a> TemporaryWriter<'a> {
    fn of(name: &'a str) -> Option<Self> {
        let inner = name.strip_prefix('.')?.strip_suffix(".tmp")?;
        let mut fields = inner.rsplitn(5, '.');
        let _nonce = fields.next()?;
        let pid = fields.next()?.parse().ok()?;
        let boot = fields.next()?;
        let host = fields.next()?;
        fields.next()?; // the target's name
        Some(TemporaryWriter { host, boot, pid })
    }
}

/// Whether the writer of a temporary file is gone, judged from this
/// process's `HOST.BOOT[-NAMESPACE]` (see [`FileSystem::boot`]): it wrote on
/// this host in an earlier boot, or in this boot and process-id namespace
/// with a process that no longer runs. What cannot be judged (another
/// host, another namespace, anything unknown) is not abandoned.
fn abandoned(writer: &TemporaryWriter<'_>, ours: &str) -> bool {
    let Some((host, boot)) = ours.split_once('.') else {
        return false;
    };
    let split = |boot: &'_ str| -> (String, String) {
        match boot.split_once('-') {
            Some((boot, namespace)) => (boot.to_owned(), namespace.to_owned()),
            None => (boot.to_owned(), String::new()),
        }
    };
    let ((our_boot, our_namespace), (their_boot, their_namespace)) =
        (split(boot), split(writer.boot));
    let known = |s: &str| s != "unknown";
    if writer.host != host || !known(host) || !known(&our_boot) || !known(&their_boot) {
        return false;
    }
    if their_boot != our_boot {
        return true; // an earlier boot of this host
    }
    known(&our_namespace) && their_namespace == our_namespace && !process_runs(writer.pid)
}

/// Whether process `pid` runs (on this machine, now).
fn process_runs(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// A chunk being written on the blocking pool; it gives back the file and
/// the buffer.
type WriteJob = tokio::task::JoinHandle<(Box<dyn WritableFile>, Vec<u8>, io::Result<()>)>;

/// Reads until `buffer` is full or the source ends; returns the bytes read.
async fn read_full(source: Source<'_>, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        let n = source.read(&mut buffer[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// Creates `dir` and its missing ancestors on `fs`, each made durable in
/// its parent (synced) before anything goes in it, as `mkdir -p` does not:
/// a file synced in a directory whose own name was never synced is lost
/// with it on a power loss. An existing directory costs two calls (its
/// parent is synced too: whoever made it may not have yet).
///
/// ```
/// use pragma_checkpoint::{OsFileSystem, create_dir_all_durably};
/// let dir = tempfile::tempdir().unwrap();
/// create_dir_all_durably(&OsFileSystem, &dir.path().join("a/b")).unwrap();
/// assert!(dir.path().join("a/b").is_dir());
/// // Relative names too (their first directory is synced in `.`).
/// std::env::set_current_dir(dir.path()).unwrap();
/// create_dir_all_durably(&OsFileSystem, std::path::Path::new("c/d")).unwrap();
/// assert!(dir.path().join("c/d").is_dir());
/// ```
pub fn create_dir_all_durably(fs: &dyn FileSystem, dir: &Path) -> io::Result<()> {
    // The directory a relative name is in: `a`'s is `.`, not ``.
    let parent_of = |dir: &Path| match dir.parent() {
        Some(parent) if parent.as_os_str().is_empty() => Some(Path::new(".").to_owned()),
        parent => parent.map(Path::to_owned),
    };
    // Its name is synced in its parent whether this call made it or
    // another writer did, who may not have synced it yet: there is no
    // telling, and a clean directory syncs at once.
    let sync_parent = || match parent_of(dir) {
        Some(parent) => fs.sync_dir(&parent),
        None => Ok(()),
    };
    match fs.create_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => sync_parent(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let parent = parent_of(dir).ok_or(e)?;
            create_dir_all_durably(fs, &parent)?;
            match fs.create_dir(dir) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
                _ => sync_parent(),
            }
        }
        Err(e) => Err(e),
        Ok(()) => sync_parent(),
    }
}

/// [`create_dir_all_durably`], skipped for a directory this store made
/// durable already and that is still there.
fn make_dir_durably(
    fs: &dyn FileSystem,
    durable_dirs: &Mutex<HashSet<PathBuf>>,
    dir: &Path,
) -> io::Result<()> {
    let known = durable_dirs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(dir);
    if known {
        match fs.create_dir(dir) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
            // Removed since (a delete takes empty directories), and made
            // again just now, or its parent is gone: made durable below.
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    create_dir_all_durably(fs, dir)?;
    durable_dirs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(dir.to_owned());
    Ok(())
}

/// The directory a file is in (for syncing its name).
fn parent_of(path: &Path) -> &Path {
    path.parent().unwrap_or(path)
}

#[async_trait]
impl Store for LocalStore {
    async fn put(&self, key: &Key, data: Source<'_>) -> Result<u64> {
        let target = self.path(key);
        let (temporary, total) = self.write_temporary(&target, data).await?;
        let context = format!("writing {}", target.display());
        self.blocking(
            || context,
            move |fs| {
                let result = fs
                    .rename(&temporary, &target)
                    .and_then(|()| fs.sync_dir(parent_of(&target)));
                if result.is_err() {
                    let _ = fs.remove_file(&temporary);
                }
                result
            },
        )
        .await?;
        Ok(total)
    }

    async fn create(&self, key: &Key, data: &[u8]) -> Result<()> {
        let target = self.path(key);
        let mut source = data;
        let (temporary, _) = self.write_temporary(&target, &mut source).await?;
        let shown = key.to_string();
        let context = format!("creating {}", target.display());
        let fs = Arc::clone(&self.fs);
        let linked = tokio::task::spawn_blocking(move || {
            let linked = fs.hard_link(&temporary, &target);
            let _ = fs.remove_file(&temporary);
            linked?;
            fs.sync_dir(parent_of(&target))
        })
        .await
        .map_err(|e| Error::io(&context, io::Error::other(e)))?;
        match linked {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Err(Error::AlreadyExists { key: shown })
            }
            Err(e) => Err(Error::io(context, e)),
        }
    }

    async fn get(&self, key: &Key) -> Result<Reader> {
        let path = self.path(key);
        let fs = Arc::clone(&self.fs);
        let opening = path.clone();
        let opened = tokio::task::spawn_blocking(move || fs.open(&opening))
            .await
            .map_err(|e| Error::io(format!("reading {}", path.display()), io::Error::other(e)))?;
        match opened {
            Ok(reader) => Ok(reader),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::NotFound {
                key: key.to_string(),
            }),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        let path = self.path(key);
        let root = self.root.clone();
        let fs = Arc::clone(&self.fs);
        tokio::task::spawn_blocking(move || {
            match fs.remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(Error::io(format!("deleting {}", path.display()), e)),
            }
            // Remove directories left empty, up to the root (best effort:
            // another writer may be filling one again).
            let mut dir = path.parent();
            while let Some(d) = dir {
                if d == root || fs.remove_dir(d).is_err() {
                    break;
                }
                dir = d.parent();
            }
            Ok(())
        })
        .await
        .map_err(|e| Error::io("deleting", io::Error::other(e)))?
    }

    async fn remove_abandoned(&self, prefix: Option<&Key>) -> Result<usize> {
        self.remove_abandoned_temporaries(prefix).await
    }

    async fn list(&self, prefix: Option<&Key>) -> Result<Vec<Key>> {
        let start = prefix.map_or_else(|| self.root.clone(), |p| self.path(p));
        let root = self.root.clone();
        let fs = Arc::clone(&self.fs);
        tokio::task::spawn_blocking(move || {
            let mut keys = Vec::new();
            let mut dirs = vec![start.clone()];
            while let Some(dir) = dirs.pop() {
                let entries = match fs.read_dir(&dir) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    // The prefix names a file: it is the only key under it.
                    Err(e) if dir == start && e.kind() == io::ErrorKind::NotADirectory => {
                        if let Some(key) = key_of(&root, &dir) {
                            keys.push(key);
                        }
                        continue;
                    }
                    Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
                };
                for entry in entries {
                    if entry.name.to_string_lossy().starts_with('.') {
                        continue; // a temporary file
                    }
                    let path = dir.join(&entry.name);
                    if entry.is_dir {
                        dirs.push(path);
                    } else if let Some(key) = key_of(&root, &path) {
                        keys.push(key);
                    }
                }
            }
            keys.sort();
            Ok(keys)
        })
        .await
        .map_err(|e| Error::io("listing", io::Error::other(e)))?
    }
}

/// The key of a file under the root; files with names a key cannot have
/// (put there by something else) are skipped.
fn key_of(root: &Path, path: &Path) -> Option<Key> {
    let relative = path.strip_prefix(root).ok()?;
    let names: Option<Vec<&str>> = relative.iter().map(|n| n.to_str()).collect();
    Key::from_names(names?).ok()
}
