//! The working copies: private directories under this process's own
//! part of the store's `work/` (in memory where there is room), reused,
//! and let go when their state is dropped or the process ends.

use super::*;

/// A working directory of a state. Dropped, it is emptied and kept for
/// the next iteration: creating and removing a directory per iteration
/// costs more than emptying one on most file systems.
#[derive(Debug)]
pub(crate) struct WorkDir {
    pub(super) dir: Option<tempfile::TempDir>,
    pub(super) pool: Arc<DirPool>,
    /// The directory it is in stays while it does.
    pub(super) _owner: Arc<OwnWork>,
}

impl WorkDir {
    pub(super) fn path(&self) -> &Path {
        // Only `drop` takes the directory out.
        self.dir.as_ref().map_or(Path::new(""), |d| d.path())
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            self.pool.give_back(dir);
        }
    }
}

/// Empty working directories; a few at most.
#[derive(Debug, Default)]
pub(super) struct DirPool {
    free: std::sync::Mutex<Vec<tempfile::TempDir>>,
}

impl DirPool {
    /// How many empty directories are kept.
    pub(super) const KEEP: usize = 16;

    pub(super) fn take(&self) -> Option<tempfile::TempDir> {
        self.free.lock().ok()?.pop()
    }

    /// Keeps `dir` if it can be emptied; otherwise it is removed. A few
    /// small files are removed right here; a larger tree on the blocking
    /// pool, so that it holds up no other iteration.
    pub(super) fn give_back(self: &Arc<Self>, dir: tempfile::TempDir) {
        let emptied = match small_state(dir.path()) {
            Ok(Some(entries)) => entries
                .iter()
                .try_for_each(|entry| std::fs::remove_file(entry.path())),
            _ => match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    let pool = Arc::clone(self);
                    runtime.spawn_blocking(move || {
                        if empty_dir(dir.path()).is_ok() {
                            pool.keep(dir);
                        }
                    });
                    return;
                }
                Err(_) => empty_dir(dir.path()),
            },
        };
        if emptied.is_ok() {
            self.keep(dir);
        }
    }

    /// Keeps the empty `dir` for reuse, if there is room.
    pub(super) fn keep(&self, dir: tempfile::TempDir) {
        if let Ok(mut free) = self.free.lock()
            && free.len() < Self::KEEP
        {
            free.push(dir);
        }
    }
}

/// This process's directory of working copies, `work/HOST-PID-START`:
/// what a runner killed with `kill -9` leaves there is found by its name
/// and removed by the next runner on the machine. Removed when the host is
/// dropped (its copies are gone by then).
#[derive(Debug)]
pub(super) struct OwnWork(pub(super) PathBuf);

impl OwnWork {
    /// Takes a directory of its own under `work`, first removing those of
    /// runners of this machine that are gone.
    pub(super) fn new(work: &Path) -> io::Result<OwnWork> {
        std::fs::create_dir_all(work)?;
        for entry in std::fs::read_dir(work)?.flatten() {
            let name = entry.file_name();
            if let Some(owner) = name.to_str().and_then(owner_of)
                && owner.here()
                && !owner.alive(None)
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let runner = Runner::current(None)
            .ok_or_else(|| io::Error::other("/proc does not tell this process's start time"))?;
        let own = work.join(format!(
            "{}-{}-{}",
            runner.host.unwrap_or_default(),
            runner.pid,
            runner.started
        ));
        std::fs::create_dir_all(&own)?;
        Ok(OwnWork(own))
    }
}

impl Drop for OwnWork {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A directory of this process's own in memory, `/dev/shm/pragma-UID/
/// HOST-PID-START` (what a killed runner left there is removed as under
/// `work/`); `None` where there is no `/dev/shm` to write to.
pub(super) fn in_memory_scratch() -> Option<Arc<OwnWork>> {
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        return None;
    }
    let uid = rustix::process::getuid().as_raw();
    let root = shm.join(format!("pragma-{uid}"));
    let _ = std::fs::create_dir(&root);
    // Only a directory of this user's, that no one else may write to: a
    // score is trusted as this user's body's.
    use std::os::unix::fs::MetadataExt;
    let own = std::fs::symlink_metadata(&root)
        .is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o022 == 0);
    if !own {
        return None;
    }
    OwnWork::new(&root).ok().map(Arc::new)
}

/// The runner whose working copies a directory named `HOST-PID-START`
/// holds.
pub(super) fn owner_of(name: &str) -> Option<Runner> {
    let mut parts = name.rsplitn(3, '-');
    let started = parts.next()?.parse().ok()?;
    let pid = parts.next()?.parse().ok()?;
    let host = parts.next()?.to_owned();
    Some(Runner {
        pid,
        started,
        host: Some(host),
        batch_job: None,
    })
}

/// Whether the file system holding `dir` has (next to) no room left.
pub(super) fn disk_full(dir: &Path) -> bool {
    rustix::fs::statvfs(dir).is_ok_and(|fs| fs.f_bavail.saturating_mul(fs.f_frsize) < 64 * 1024)
}
