//! `forgetful-mount`: a disk that forgets, for tests of real processes.
//!
//! It serves `pragma_checkpoint::testkit::ForgetfulFileSystem` over FUSE:
//! every write lands in memory and stays volatile until its file (data) or
//! directory (names) is synced. Power is lost after the K-th changing call
//! (`--lose-power-after K`): from then on every call fails with EIO, as on
//! a machine that is gone. At the end the disks a new machine could find
//! are saved as plain directories (`--crash-images DIR`), and any of them
//! can be mounted again (`--image DIR`).
//!
//! ```text
//! forgetful-mount MOUNTPOINT [--image DIR] [--lose-power-after K]
//!                 [--crash-images DIR] [--random-images N] [--trace FILE]
//! ```
//!
//! It prints `mounted` once the mount is up, `power lost` when the power
//! goes, and at the end (when its standard input closes) `calls N`, the
//! changing calls made. With `--crash-images DIR` it then writes
//! `DIR/nothing` (only what was synced), `DIR/everything` (what a process
//! kill leaves) and `DIR/random-S` for S in 0..N (random subsets of the
//! unsynced changes), and unmounts.
//!
//! The Python durability tests (`notebook/tests/test_power_loss.py`) and
//! the cli's drive it; it needs `/dev/fuse` and `fusermount3`.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, BufRead, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use clap::Parser;
use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
    WriteFlags,
};
use pragma_checkpoint::FileSystem;
use pragma_checkpoint::testkit::{ForgetfulFileSystem, NodeMetadata, Survivors};

/// Serves a disk that forgets unsynced writes on a simulated power loss.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Where to mount it (an empty directory).
    mountpoint: PathBuf,
    /// Start from this disk image (a plain directory, as `--crash-images`
    /// writes them); otherwise empty.
    #[arg(long)]
    image: Option<PathBuf>,
    /// Lose power after this many changing calls (creating, writing,
    /// syncing, renaming, linking, removing).
    #[arg(long)]
    lose_power_after: Option<u64>,
    /// At the end, write the disks a new machine could find here.
    #[arg(long)]
    crash_images: Option<PathBuf>,
    /// How many random subsets of the unsynced changes to write.
    #[arg(long, default_value_t = 2)]
    random_images: u64,
    /// Write each changing call here, numbered (`12 fsync /a/b`): to see
    /// what a crash point falls on.
    #[arg(long)]
    trace: Option<PathBuf>,
}

/// No caching in the kernel: every lookup and attribute comes here, so a
/// rename or a lost power shows at once.
const TTL: Duration = Duration::ZERO;

/// A directory's entries as `readdir` gives them.
type Listing = Vec<(INodeNo, FileType, std::ffi::OsString)>;

struct ForgetfulMount {
    fs: ForgetfulFileSystem,
    /// A path of each node the kernel knows, by inode number.
    paths: Mutex<HashMap<u64, PathBuf>>,
    /// When each node was last written, as far as this mount saw; nodes
    /// from the image (an earlier machine) are old.
    modified: Mutex<HashMap<u64, SystemTime>>,
    owner: (u32, u32),
    power_reported: AtomicBool,
    trace: Option<Mutex<std::fs::File>>,
    /// What each open directory listed, by handle.
    listings: Mutex<HashMap<u64, Listing>>,
    next_handle: std::sync::atomic::AtomicU64,
}

/// The time of whatever came with the image: before this machine started.
const FROM_THE_IMAGE: SystemTime = SystemTime::UNIX_EPOCH;

fn errno(error: &io::Error) -> Errno {
    match error.kind() {
        io::ErrorKind::NotFound => Errno::ENOENT,
        io::ErrorKind::AlreadyExists => Errno::EEXIST,
        io::ErrorKind::NotADirectory => Errno::ENOTDIR,
        io::ErrorKind::IsADirectory => Errno::EISDIR,
        io::ErrorKind::DirectoryNotEmpty => Errno::ENOTEMPTY,
        io::ErrorKind::InvalidInput => Errno::EINVAL,
        _ => Errno::EIO,
    }
}

impl ForgetfulMount {
    fn new(fs: ForgetfulFileSystem, trace: Option<std::fs::File>) -> Self {
        let owner = std::fs::metadata("/proc/self").map_or((0, 0), |m| (m.uid(), m.gid()));
        ForgetfulMount {
            fs,
            paths: Mutex::new(HashMap::from([(1, PathBuf::from("/"))])),
            modified: Mutex::default(),
            owner,
            power_reported: AtomicBool::new(false),
            trace: trace.map(Mutex::new),
            listings: Mutex::default(),
            next_handle: std::sync::atomic::AtomicU64::new(1),
        }
    }

    /// Says once, on standard output, that the power went.
    fn report_power(&self) {
        if self.fs.power_lost() && !self.power_reported.swap(true, Ordering::SeqCst) {
            println!("power lost");
            let _ = io::stdout().flush();
        }
    }

    fn path(&self, ino: INodeNo) -> Result<PathBuf, Errno> {
        self.paths
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ino.0)
            .cloned()
            .ok_or(Errno::ENOENT)
    }

    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<PathBuf, Errno> {
        Ok(self.path(parent)?.join(name))
    }

    /// The attributes of `path`, and the kernel told its inode number.
    fn known(&self, path: &Path) -> Result<FileAttr, Errno> {
        let metadata = self.call(|fs| fs.metadata(path))?;
        self.paths
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(metadata.id, path.to_owned());
        Ok(self.attr(metadata))
    }

    /// Notes that the node at `path` was written at `when`.
    fn touched(&self, path: &Path, when: SystemTime) {
        if let Ok(metadata) = self.fs.metadata(path) {
            self.modified
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(metadata.id, when);
        }
    }

    fn attr(&self, metadata: NodeMetadata) -> FileAttr {
        let modified = self
            .modified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&metadata.id)
            .copied()
            .unwrap_or(FROM_THE_IMAGE);
        FileAttr {
            ino: INodeNo(metadata.id),
            size: metadata.len,
            blocks: metadata.len.div_ceil(512),
            atime: modified,
            mtime: modified,
            ctime: modified,
            crtime: modified,
            kind: if metadata.is_dir {
                FileType::Directory
            } else {
                FileType::RegularFile
            },
            perm: if metadata.is_dir { 0o700 } else { 0o600 },
            nlink: if metadata.is_dir { 2 } else { 1 },
            uid: self.owner.0,
            gid: self.owner.1,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    /// Runs one call on the file system, reporting a power loss.
    fn call<T>(
        &self,
        call: impl FnOnce(&ForgetfulFileSystem) -> io::Result<T>,
    ) -> Result<T, Errno> {
        let result = call(&self.fs);
        self.report_power();
        result.map_err(|e| errno(&e))
    }

    /// Runs one changing call, `what` on `path`, tracing it.
    fn change(
        &self,
        what: &str,
        path: &Path,
        call: impl FnOnce(&ForgetfulFileSystem) -> io::Result<()>,
    ) -> Result<(), Errno> {
        let result = self.call(call);
        if let Some(trace) = &self.trace {
            let mut trace = trace.lock().unwrap_or_else(|e| e.into_inner());
            let outcome = if result.is_ok() { "" } else { " (failed)" };
            let _ = writeln!(
                trace,
                "{} {what} {}{outcome}",
                self.fs.calls(),
                path.display()
            );
        }
        result
    }

    /// What the directory `ino` holds, as `readdir` gives it.
    fn listing(&self, ino: INodeNo) -> Result<Listing, Errno> {
        self.path(ino).and_then(|dir| {
            let mut entries = self.call(|fs| fs.read_dir(&dir))?;
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            let mut listed = vec![
                (ino, FileType::Directory, ".".into()),
                (ino, FileType::Directory, "..".into()),
            ];
            for entry in entries {
                let attr = self.known(&dir.join(&entry.name))?;
                listed.push((attr.ino, attr.kind, entry.name));
            }
            Ok(listed)
        })
    }

    /// Makes the node `name` in `parent` with `make` (`what`, traced),
    /// written now; its attributes.
    fn make(
        &self,
        parent: INodeNo,
        name: &OsStr,
        what: &str,
        make: impl FnOnce(&ForgetfulFileSystem, &Path) -> io::Result<()>,
    ) -> Result<FileAttr, Errno> {
        let path = self.child(parent, name)?;
        self.change(what, &path, |fs| make(fs, &path))?;
        self.touched(&path, SystemTime::now());
        self.known(&path)
    }

    /// Node `id` lost its name `path`: if that is the name the kernel
    /// reaches it by, it is reached no more (a file unlinked or replaced
    /// while open reads and writes nothing of another's).
    fn forget(&self, id: u64, path: &Path) {
        let mut paths = self.paths.lock().unwrap_or_else(|e| e.into_inner());
        if paths.get(&id).is_some_and(|known| known == path) {
            paths.remove(&id);
        }
    }

    fn renamed(&self, from: &Path, to: &Path) {
        let mut paths = self.paths.lock().unwrap_or_else(|e| e.into_inner());
        for path in paths.values_mut() {
            if let Ok(rest) = path.strip_prefix(from) {
                *path = to.join(rest);
            }
        }
    }
}

impl Filesystem for ForgetfulMount {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.child(parent, name).and_then(|path| self.known(&path)) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.path(ino).and_then(|path| self.known(&path)) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // Modes and owners are not kept; the length and the modification
        // time are (the time for this mount only: it is not on the disk).
        let result = self.path(ino).and_then(|path| {
            if let Some(len) = size {
                self.change("truncate", &path, |fs| fs.set_len(&path, len))?;
                self.touched(&path, SystemTime::now());
            }
            match mtime {
                Some(TimeOrNow::SpecificTime(when)) => self.touched(&path, when),
                Some(TimeOrNow::Now) => self.touched(&path, SystemTime::now()),
                None => {}
            }
            self.known(&path)
        });
        match result {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let result = self.make(parent, name, "mkdir", |fs, path| fs.create_dir(path));
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let result = self.make(parent, name, "create", |fs, path| fs.create_file(path));
        match result {
            Ok(attr) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(0),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.child(parent, name).and_then(|path| {
            let removed = self.fs.metadata(&path).ok().map(|m| m.id);
            self.change("unlink", &path, |fs| fs.remove_file(&path))?;
            if let Some(removed) = removed {
                self.forget(removed, &path);
            }
            Ok(())
        }) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self
            .child(parent, name)
            .and_then(|path| self.change("rmdir", &path, |fs| fs.remove_dir(&path)))
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        // RENAME_NOREPLACE and RENAME_EXCHANGE are not modelled: refused,
        // never taken for a plain rename.
        if !flags.is_empty() {
            reply.error(Errno::EINVAL);
            return;
        }
        let result = self.child(parent, name).and_then(|from| {
            let to = self.child(newparent, newname)?;
            let replaced = self.fs.metadata(&to).ok().map(|m| m.id);
            self.change("rename", &to, |fs| fs.rename(&from, &to))?;
            // The file it replaced has no name now: its open descriptors
            // must not reach the new one.
            if let Some(replaced) = replaced {
                self.forget(replaced, &to);
            }
            self.renamed(&from, &to);
            Ok(())
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let result = self.path(ino).and_then(|from| {
            let to = self.child(newparent, newname)?;
            self.change("link", &to, |fs| fs.hard_link(&from, &to))?;
            self.known(&to)
        });
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(0), FopenFlags::empty());
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self
            .path(ino)
            .and_then(|path| self.call(|fs| fs.read_file(&path)))
        {
            Ok(data) => {
                let start = usize::try_from(offset)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                let end = start.saturating_add(size as usize).min(data.len());
                reply.data(&data[start..end]);
            }
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.path(ino).and_then(|path| {
            self.change("write", &path, |fs| fs.write_at(&path, offset, data))?;
            self.touched(&path, SystemTime::now());
            Ok(())
        }) {
            Ok(()) => reply.written(u32::try_from(data.len()).unwrap_or(u32::MAX)),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self
            .path(ino)
            .and_then(|path| self.change("fsync", &path, |fs| fs.sync_file(&path)))
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // Each open directory lists what it held when first read, so that
        // names removed while it is read (a collector) skip no other.
        let handle = self.next_handle.fetch_add(1, Ordering::SeqCst);
        reply.opened(FileHandle(handle), FopenFlags::empty());
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.listings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&fh.0);
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let snapshot = self
            .listings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&fh.0)
            .cloned();
        let listed = match snapshot {
            Some(listed) if offset > 0 => Ok(listed),
            _ => self.listing(ino),
        };
        if let Ok(listed) = &listed {
            self.listings
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(fh.0, listed.clone());
        }
        match listed {
            Ok(listed) => {
                let skip = usize::try_from(offset).unwrap_or(usize::MAX);
                for (index, (ino, kind, name)) in listed.into_iter().enumerate().skip(skip) {
                    if reply.add(ino, index as u64 + 1, kind, name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self
            .path(ino)
            .and_then(|path| self.change("fsyncdir", &path, |fs| fs.sync_dir(&path)))
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(1 << 24, 1 << 23, 1 << 23, 1 << 20, 1 << 19, 4096, 255, 4096);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("forgetful-mount: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> io::Result<()> {
    let fs = match &args.image {
        Some(image) => ForgetfulFileSystem::load(image).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("loading the image {}: {e}", image.display()),
            )
        })?,
        None => ForgetfulFileSystem::new(),
    };
    if let Some(calls) = args.lose_power_after {
        fs.lose_power_after(calls);
    }
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("forgetful".into()),
        MountOption::Subtype("forgetful".into()),
    ];
    config.n_threads = Some(4);
    let trace = match &args.trace {
        Some(path) => Some(std::fs::File::create(path)?),
        None => None,
    };
    let session = fuser::spawn_mount(
        ForgetfulMount::new(fs.clone(), trace),
        &args.mountpoint,
        &config,
    )
    .map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "mounting on {}: {e} (it needs /dev/fuse and fusermount3)",
                args.mountpoint.display()
            ),
        )
    })?;
    println!("mounted");
    io::stdout().flush()?;
    // Serves until standard input closes.
    for line in io::stdin().lock().lines() {
        if line.is_err() {
            break;
        }
    }
    println!("calls {}", fs.calls());
    io::stdout().flush()?;
    if let Some(dir) = &args.crash_images {
        fs.lose_power_now();
        let mut images = vec![
            ("nothing".to_owned(), Survivors::Nothing),
            ("everything".to_owned(), Survivors::Everything),
        ];
        images.extend(
            (0..args.random_images).map(|seed| (format!("random-{seed}"), Survivors::Random(seed))),
        );
        for (name, survivors) in images {
            fs.after_power_loss(survivors).save(&dir.join(name))?;
        }
    }
    drop(session);
    unmount_lazily(&args.mountpoint);
    Ok(())
}

/// Detaches the mount if it is still there: a process that keeps a file
/// open on it (a worker that outlived its kernel, a mapping) makes the
/// plain unmount fail, and the mount would be left dead ("transport
/// endpoint is not connected") for every later test.
fn unmount_lazily(mountpoint: &Path) {
    let Ok(mountpoint) = mountpoint.canonicalize().or_else(|_| {
        // A dead mount cannot be resolved; its own path is what it is.
        Ok::<_, io::Error>(mountpoint.to_owned())
    }) else {
        return;
    };
    let mounted = std::fs::read_to_string("/proc/mounts").is_ok_and(|mounts| {
        mounts
            .lines()
            .any(|line| line.split(' ').nth(1) == mountpoint.to_str())
    });
    if mounted {
        let _ = std::process::Command::new("fusermount3")
            .args(["-u", "-z"])
            .arg(&mountpoint)
            .status();
    }
}
