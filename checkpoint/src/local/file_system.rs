//! The file-system calls [`LocalStore`](super::LocalStore) makes, behind a
//! trait: the operating system's in production, a simulated one in tests.
//!
//! The seam exists for one test: a machine that loses power forgets every
//! write that was not synced (file data, a new name, a rename, a new
//! directory), in any subset. A process kill cannot show that: the kernel
//! still writes out what it was given. [`ForgetfulFileSystem`] (feature
//! `testkit`) keeps each change volatile until its file or directory is
//! synced and, on a simulated power loss, keeps an arbitrary subset of the
//! rest, as RocksDB's `FaultInjectionTestFS` does. A seam rather than a FUSE
//! file system: it runs in every CI without privileges or `/dev/fuse`,
//! each crash point takes microseconds instead of a remount, and power is
//! lost after exactly the k-th call, so every crash point can be tried.
//!
//! [`ForgetfulFileSystem`]: crate::testkit::ForgetfulFileSystem

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use crate::store::Reader;

/// A file being written: bytes go in with [`Write`], and
/// [`sync_all`](WritableFile::sync_all) makes them durable.
pub trait WritableFile: Write + Send {
    /// Makes the file's data durable (`fsync`). Its name is not: sync the
    /// directory for that.
    fn sync_all(&mut self) -> io::Result<()>;
}

/// One name in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The name within the directory.
    pub name: OsString,
    /// Whether it is a directory (otherwise a file).
    pub is_dir: bool,
}

/// The file-system calls of a [`LocalStore`](super::LocalStore), each as the
/// POSIX call of the same name. The calls are blocking; the store makes
/// them on tokio's blocking pool.
///
/// Durability follows POSIX, and implementations may be as forgetful as it
/// allows: data is durable once its file is synced, a name (created,
/// renamed, linked, removed) once its directory is synced.
pub trait FileSystem: Send + Sync + fmt::Debug + 'static {
    /// Creates one directory, owner-only (`mkdir`, mode 0700); fails with
    /// `AlreadyExists` if the name is taken and `NotFound` if the parent is
    /// missing.
    fn create_dir(&self, dir: &Path) -> io::Result<()>;
    /// Creates a new file for writing, owner-only (`O_CREAT | O_EXCL`,
    /// mode 0600).
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WritableFile>>;
    /// Opens a file for reading.
    fn open(&self, path: &Path) -> io::Result<Reader>;
    /// Renames `from` to `to`, replacing any file there, atomically.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Gives the file at `from` the second name `to`; `AlreadyExists` if
    /// `to` is taken.
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file's name.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes an empty directory.
    fn remove_dir(&self, dir: &Path) -> io::Result<()>;
    /// The names in a directory, in no particular order; `NotADirectory` if
    /// `dir` is a file.
    fn read_dir(&self, dir: &Path) -> io::Result<Vec<DirEntry>>;
    /// Makes the names in `dir` durable (`fsync` of the directory).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;

    /// This boot of this machine, as `HOST.BOOT` (no other dots; a new
    /// `BOOT` after every restart; `BOOT` may end in `-NAMESPACE`, the
    /// process-id namespace). Temporary files carry it with their writer's
    /// process id, so that a clean-up tells a crashed writer's (an earlier
    /// boot, a process that is gone) from a live one's, and leaves other
    /// machines' and other namespaces' alone. `unknown` in either part: the
    /// clean-up deletes nothing it cannot judge.
    fn boot(&self) -> String {
        os_boot()
    }
}

/// The operating system's `HOST.BOOT-NAMESPACE`: the whole host name
/// (letters, digits and `-` only), the first 8 hex digits of Linux's boot
/// id and the inode of this process's process-id namespace (containers on
/// one machine share the boot, not the process ids).
fn os_boot() -> String {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let host: String = read("/proc/sys/kernel/hostname")
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(64)
        .collect();
    let boot: String = read("/proc/sys/kernel/random/boot_id")
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(8)
        .collect();
    // `pid:[4026531836]`
    let namespace: String = std::fs::read_link("/proc/self/ns/pid")
        .map(|link| {
            link.to_string_lossy()
                .chars()
                .filter(char::is_ascii_digit)
                .collect()
        })
        .unwrap_or_default();
    let or_unknown = |s: String| {
        if s.is_empty() {
            "unknown".to_owned()
        } else {
            s
        }
    };
    format!(
        "{}.{}-{}",
        or_unknown(host),
        or_unknown(boot),
        or_unknown(namespace)
    )
}

/// The operating system's file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsFileSystem;

impl WritableFile for std::fs::File {
    fn sync_all(&mut self) -> io::Result<()> {
        std::fs::File::sync_all(self)
    }
}

/// The size of the read buffer: most records are small, and
/// `tokio::fs::File` reads big requests in big blocks anyway.
const READ_BUFFER: usize = 64 << 10;

impl FileSystem for OsFileSystem {
    fn create_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::DirBuilder::new().mode(0o700).create(dir)
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        Ok(Box::new(file))
    }

    fn open(&self, path: &Path) -> io::Result<Reader> {
        let file = tokio::fs::File::from_std(std::fs::File::open(path)?);
        Ok(Box::new(tokio::io::BufReader::with_capacity(
            READ_BUFFER,
            file,
        )))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::hard_link(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn remove_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::remove_dir(dir)
    }

    fn read_dir(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        std::fs::read_dir(dir)?
            .map(|entry| {
                let entry = entry?;
                Ok(DirEntry {
                    name: entry.file_name(),
                    is_dir: entry.file_type()?.is_dir(),
                })
            })
            .collect()
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }
}
