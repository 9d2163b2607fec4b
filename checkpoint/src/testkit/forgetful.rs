//! A file system that forgets, on a simulated power loss, what was not
//! synced.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), pragma_checkpoint::Error> {
//! use std::sync::Arc;
//! use pragma_checkpoint::testkit::{ForgetfulFileSystem, Survivors};
//! use pragma_checkpoint::{Key, LocalStore, StoreExt};
//!
//! let fs = ForgetfulFileSystem::new();
//! let store = LocalStore::with_file_system("/store", Arc::new(fs.clone()))?;
//! let key = Key::from_names(["answer"])?;
//! store.put_bytes(&key, b"42").await?; // durable once it returns
//! fs.lose_power_now();
//! assert!(store.get_bytes(&key).await.is_err()); // the machine is gone
//!
//! // Whatever the machine kept, a returned put is there.
//! for seed in 0..20 {
//!     let remounted = fs.after_power_loss(Survivors::Random(seed));
//!     let store = LocalStore::with_file_system("/store", Arc::new(remounted))?;
//!     assert_eq!(store.get_bytes(&key).await?, b"42");
//! }
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Component, Path};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::local::{DirEntry, FileSystem, WritableFile};
use crate::store::Reader;

/// Which unsynced changes survive a power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Survivors {
    /// None: only what was synced (the most forgetful machine).
    Nothing,
    /// All of them: what a process kill leaves, the machine still up.
    Everything,
    /// A subset drawn from the seed: each directory change kept or dropped
    /// (those kept in the order they were made), each file keeping a
    /// prefix of its unsynced writes, the last one kept possibly torn, or
    /// (one file in four) its new length with zeros for the unsynced data,
    /// as a file system that journals only metadata may leave it.
    Random(u64),
}

/// An in-memory file system that forgets, on a simulated power loss, what
/// was not synced. Clones share one machine.
///
/// - A file's data is durable once the file is synced
///   ([`WritableFile::sync_all`]); a name (created, renamed, linked,
///   removed, a new directory) once its directory is synced
///   ([`FileSystem::sync_dir`]). Syncing a file does not make its name
///   durable, nor does syncing a directory make its own name durable in its
///   parent: POSIX promises neither, and some file systems keep neither.
/// - Each changing call (creating, writing, syncing, renaming, linking,
///   removing) is counted; [`lose_power_after`](Self::lose_power_after)
///   lets `k` of them happen, and from then on every call fails, reads
///   included, as on a machine that is gone.
/// - [`after_power_loss`](Self::after_power_loss) is the disk a new machine
///   mounts: the synced state plus the [`Survivors`] of the rest.
///
/// Paths are absolute; `/` always exists.
#[derive(Debug, Clone, Default)]
pub struct ForgetfulFileSystem {
    machine: Arc<Mutex<Machine>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    File(usize),
    Dir(usize),
}

/// One change to a file's data.
#[derive(Debug, Clone)]
enum FileWrite {
    /// Bytes written at an offset (the file grows with zeros up to it).
    At(u64, Vec<u8>),
    /// The length set (a truncate).
    SetLen(u64),
}

impl FileWrite {
    fn apply(&self, data: &mut Vec<u8>) {
        match self {
            FileWrite::At(offset, bytes) => {
                let start = usize::try_from(*offset).unwrap_or(usize::MAX);
                let end = start.saturating_add(bytes.len());
                if data.len() < end {
                    data.resize(end, 0);
                }
                data[start..end].copy_from_slice(bytes);
            }
            FileWrite::SetLen(len) => data.resize(usize::try_from(*len).unwrap_or(usize::MAX), 0),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct FileNode {
    synced: Vec<u8>,
    /// Writes since the last sync, in order.
    unsynced: Vec<FileWrite>,
    /// The data with every write applied: what the running machine reads.
    current: Vec<u8>,
}

impl FileNode {
    fn write(&mut self, write: FileWrite) {
        write.apply(&mut self.current);
        self.unsynced.push(write);
    }

    fn sync(&mut self) {
        self.synced = self.current.clone();
        self.unsynced.clear();
    }
}

/// One directory change: names set (`Some`) or removed (`None`) together,
/// atomically (a rename within the directory is one change).
type Change = Vec<(OsString, Option<Node>)>;

#[derive(Debug, Clone, Default)]
struct DirNode {
    synced: BTreeMap<OsString, Node>,
    /// Changes since the last sync, in order.
    unsynced: Vec<Change>,
    /// `synced` with every change applied: what the running machine sees.
    current: BTreeMap<OsString, Node>,
}

impl DirNode {
    fn change(&mut self, change: Change) {
        apply(&mut self.current, &change);
        self.unsynced.push(change);
    }
}

fn apply(entries: &mut BTreeMap<OsString, Node>, change: &Change) {
    for (name, node) in change {
        match node {
            Some(node) => entries.insert(name.clone(), *node),
            None => entries.remove(name),
        };
    }
}

#[derive(Debug)]
struct Machine {
    files: Vec<FileNode>,
    /// Directory 0 is `/`.
    dirs: Vec<DirNode>,
    calls: u64,
    power_lost_after: Option<u64>,
    /// This boot's id: a new one after every power loss.
    boot: String,
}

fn new_boot() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

impl Default for Machine {
    fn default() -> Self {
        Machine {
            files: Vec::new(),
            dirs: vec![DirNode::default()],
            calls: 0,
            power_lost_after: None,
            boot: new_boot(),
        }
    }
}

fn gone() -> io::Error {
    io::Error::other("the machine lost power (a simulated power loss)")
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file or directory", path.display()),
    )
}

impl Machine {
    fn dead(&self) -> bool {
        self.power_lost_after
            .is_some_and(|after| self.calls >= after)
    }

    /// A call that changes something: counted, refused once power is lost.
    fn changing_call(&mut self) -> io::Result<()> {
        if self.dead() {
            return Err(gone());
        }
        self.calls += 1;
        Ok(())
    }

    /// A call that only reads: refused once power is lost.
    fn reading_call(&self) -> io::Result<()> {
        if self.dead() { Err(gone()) } else { Ok(()) }
    }

    fn lookup(&self, path: &Path) -> io::Result<Node> {
        let mut node = Node::Dir(0);
        for component in path.components() {
            match component {
                Component::RootDir => node = Node::Dir(0),
                Component::Normal(name) => {
                    let Node::Dir(dir) = node else {
                        return Err(io::Error::new(
                            io::ErrorKind::NotADirectory,
                            format!("{}: not a directory", path.display()),
                        ));
                    };
                    node = *self.dirs[dir]
                        .current
                        .get(name)
                        .ok_or_else(|| not_found(path))?;
                }
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{}: only absolute, plain paths", path.display()),
                    ));
                }
            }
        }
        Ok(node)
    }

    /// The directory `path` is in, and its name there.
    fn parent<'p>(&self, path: &'p Path) -> io::Result<(usize, &'p OsStr)> {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: no parent directory", path.display()),
            ));
        };
        match self.lookup(parent)? {
            Node::Dir(dir) => Ok((dir, name)),
            Node::File(_) => Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{}: not a directory", parent.display()),
            )),
        }
    }

    fn file(&self, path: &Path) -> io::Result<usize> {
        match self.lookup(path)? {
            Node::File(file) => Ok(file),
            Node::Dir(_) => Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{}: is a directory", path.display()),
            )),
        }
    }

    fn create(&mut self, path: &Path, node: impl FnOnce(&mut Machine) -> Node) -> io::Result<Node> {
        let (dir, name) = self.parent(path)?;
        if self.dirs[dir].current.contains_key(name) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{}: exists", path.display()),
            ));
        }
        let node = node(self);
        self.dirs[dir].change(vec![(name.to_owned(), Some(node))]);
        Ok(node)
    }
}

/// A small deterministic generator (xorshift64*): the crash states of a
/// seed are the same on every run.
struct Random(u64);

impl Random {
    fn new(seed: u64) -> Self {
        Random(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

impl ForgetfulFileSystem {
    /// An empty file system: only `/`.
    pub fn new() -> Self {
        Self::default()
    }

    fn machine(&self) -> MutexGuard<'_, Machine> {
        // A panic elsewhere cannot leave the maps half-changed: every
        // change is made in one statement under the lock.
        self.machine.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The changing calls made so far (creating, writing, syncing,
    /// renaming, linking, removing).
    pub fn calls(&self) -> u64 {
        self.machine().calls
    }

    /// Lets `calls` changing calls happen in all (counting those made
    /// already), then loses power: every later call fails.
    pub fn lose_power_after(&self, calls: u64) {
        self.machine().power_lost_after = Some(calls);
    }

    /// Loses power now.
    pub fn lose_power_now(&self) {
        let mut machine = self.machine();
        machine.power_lost_after = Some(machine.calls);
    }

    /// Whether power was lost.
    pub fn power_lost(&self) -> bool {
        self.machine().dead()
    }

    /// The disk after a power loss (now or before), as a new machine
    /// mounts it: what was synced, plus `survivors` of the rest. The new
    /// file system is independent of this one, with everything on it
    /// synced and no call counted.
    pub fn after_power_loss(&self, survivors: Survivors) -> ForgetfulFileSystem {
        let machine = self.machine();
        let mut random = Random::new(match survivors {
            Survivors::Random(seed) => seed,
            _ => 0,
        });
        let files = machine
            .files
            .iter()
            .map(|file| {
                // A file system that journals only metadata may keep the
                // new length and not the blocks: zeros where the unsynced
                // data was.
                if let Survivors::Random(_) = survivors
                    && !file.unsynced.is_empty()
                    && random.below(4) == 0
                {
                    let mut data = file.synced.clone();
                    data.resize(file.current.len().max(data.len()), 0);
                    return FileNode {
                        synced: data.clone(),
                        unsynced: Vec::new(),
                        current: data,
                    };
                }
                let kept = match survivors {
                    Survivors::Nothing => 0,
                    Survivors::Everything => file.unsynced.len(),
                    Survivors::Random(_) => random.below(file.unsynced.len() as u64 + 1) as usize,
                };
                let mut data = file.synced.clone();
                for write in &file.unsynced[..kept] {
                    write.apply(&mut data);
                }
                // The next write may have reached the disk in part.
                if let (Survivors::Random(_), Some(FileWrite::At(offset, torn))) =
                    (survivors, file.unsynced.get(kept))
                    && random.below(2) == 1
                {
                    let len = random.below(torn.len() as u64 + 1) as usize;
                    FileWrite::At(*offset, torn[..len].to_vec()).apply(&mut data);
                }
                FileNode {
                    synced: data.clone(),
                    unsynced: Vec::new(),
                    current: data,
                }
            })
            .collect();
        let dirs = machine
            .dirs
            .iter()
            .map(|dir| {
                let mut entries = dir.synced.clone();
                for change in &dir.unsynced {
                    let keep = match survivors {
                        Survivors::Nothing => false,
                        Survivors::Everything => true,
                        Survivors::Random(_) => random.below(2) == 1,
                    };
                    if keep {
                        apply(&mut entries, change);
                    }
                }
                DirNode {
                    synced: entries.clone(),
                    unsynced: Vec::new(),
                    current: entries,
                }
            })
            .collect();
        ForgetfulFileSystem {
            machine: Arc::new(Mutex::new(Machine {
                files,
                dirs,
                calls: 0,
                power_lost_after: None,
                boot: new_boot(),
            })),
        }
    }

    /// Every file under `dir` (recursively) as the running machine sees it,
    /// with its size: for checking what an operation left behind.
    pub fn files_under(&self, dir: &Path) -> io::Result<Vec<(std::path::PathBuf, u64)>> {
        let machine = self.machine();
        let mut found = Vec::new();
        let mut pending = vec![(dir.to_owned(), machine.lookup(dir)?)];
        while let Some((path, node)) = pending.pop() {
            match node {
                Node::File(file) => found.push((path, machine.files[file].current.len() as u64)),
                Node::Dir(d) => {
                    for (name, node) in &machine.dirs[d].current {
                        pending.push((path.join(name), *node));
                    }
                }
            }
        }
        found.sort();
        Ok(found)
    }
}

/// What a path is, for a front end that serves the file system (FUSE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeMetadata {
    /// A number for the file or directory, the same under each of its
    /// names, never reused: a directory's is odd (`/` is 1), a file's even.
    pub id: u64,
    /// Whether it is a directory.
    pub is_dir: bool,
    /// Its length in bytes (0 for a directory).
    pub len: u64,
}

/// Calls beyond [`FileSystem`]'s, for a front end that serves this file
/// system to other processes (the `forgetful-mount` FUSE tool): writes at
/// an offset, truncation, whole reads, and images on a real disk. Each is
/// counted and refused like the trait's calls.
impl ForgetfulFileSystem {
    /// What `path` is.
    pub fn metadata(&self, path: &Path) -> io::Result<NodeMetadata> {
        let machine = self.machine();
        machine.reading_call()?;
        Ok(match machine.lookup(path)? {
            Node::Dir(dir) => NodeMetadata {
                id: 2 * dir as u64 + 1,
                is_dir: true,
                len: 0,
            },
            Node::File(file) => NodeMetadata {
                id: 2 * file as u64 + 2,
                is_dir: false,
                len: machine.files[file].current.len() as u64,
            },
        })
    }

    /// The whole data of the file at `path`.
    pub fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let machine = self.machine();
        machine.reading_call()?;
        let file = machine.file(path)?;
        Ok(machine.files[file].current.clone())
    }

    /// Creates an empty file at `path` (exclusive).
    pub fn create_file(&self, path: &Path) -> io::Result<()> {
        self.create_new(path).map(drop)
    }

    /// Writes `bytes` at `offset` of the file at `path`.
    pub fn write_at(&self, path: &Path, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let mut machine = self.machine();
        machine.changing_call()?;
        let file = machine.file(path)?;
        machine.files[file].write(FileWrite::At(offset, bytes.to_vec()));
        Ok(())
    }

    /// Sets the length of the file at `path` (truncates or extends with
    /// zeros).
    pub fn set_len(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut machine = self.machine();
        machine.changing_call()?;
        let file = machine.file(path)?;
        machine.files[file].write(FileWrite::SetLen(len));
        Ok(())
    }

    /// Makes the data of the file at `path` durable (`fsync`).
    pub fn sync_file(&self, path: &Path) -> io::Result<()> {
        let mut machine = self.machine();
        machine.changing_call()?;
        let file = machine.file(path)?;
        machine.files[file].sync();
        Ok(())
    }

    /// A file system holding a copy of the real directory `dir` (its files
    /// and directories, everything synced): a disk image saved by
    /// [`save`](Self::save).
    pub fn load(dir: &Path) -> io::Result<Self> {
        let fs = ForgetfulFileSystem::new();
        let mut pending = vec![(dir.to_owned(), std::path::PathBuf::from("/"))];
        while let Some((real, inside)) = pending.pop() {
            for entry in std::fs::read_dir(&real)? {
                let entry = entry?;
                let (real, inside) = (entry.path(), inside.join(entry.file_name()));
                if entry.file_type()?.is_dir() {
                    fs.create_dir(&inside)?;
                    pending.push((real, inside));
                } else {
                    fs.create_file(&inside)?;
                    fs.write_at(&inside, 0, &std::fs::read(&real)?)?;
                }
            }
        }
        let mut machine = fs.machine();
        for file in &mut machine.files {
            file.sync();
        }
        for dir in &mut machine.dirs {
            dir.synced = dir.current.clone();
            dir.unsynced.clear();
        }
        machine.calls = 0;
        drop(machine);
        Ok(fs)
    }

    /// Writes what the running machine sees into the real directory `dir`
    /// (created if missing): a disk image for [`load`](Self::load).
    pub fn save(&self, dir: &Path) -> io::Result<()> {
        let machine = self.machine();
        std::fs::create_dir_all(dir)?;
        let mut pending = vec![(dir.to_owned(), 0)];
        while let Some((real, node)) = pending.pop() {
            for (name, child) in &machine.dirs[node].current {
                let real = real.join(name);
                match child {
                    Node::Dir(d) => {
                        std::fs::create_dir(&real)?;
                        pending.push((real, *d));
                    }
                    Node::File(f) => std::fs::write(&real, &machine.files[*f].current)?,
                }
            }
        }
        Ok(())
    }
}

/// A file open for writing on a [`ForgetfulFileSystem`].
struct ForgetfulFile {
    machine: Arc<Mutex<Machine>>,
    file: usize,
}

impl ForgetfulFile {
    fn machine(&self) -> MutexGuard<'_, Machine> {
        self.machine.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl io::Write for ForgetfulFile {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut machine = self.machine();
        machine.changing_call()?;
        let file = &mut machine.files[self.file];
        let end = file.current.len() as u64;
        file.write(FileWrite::At(end, bytes.to_vec()));
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.machine().reading_call()
    }
}

impl WritableFile for ForgetfulFile {
    fn sync_all(&mut self) -> io::Result<()> {
        let mut machine = self.machine();
        machine.changing_call()?;
        machine.files[self.file].sync();
        Ok(())
    }
}

impl FileSystem for ForgetfulFileSystem {
    fn create_dir(&self, dir: &Path) -> io::Result<()> {
        let mut machine = self.machine();
        machine.changing_call()?;
        machine.create(dir, |machine| {
            machine.dirs.push(DirNode::default());
            Node::Dir(machine.dirs.len() - 1)
        })?;
        Ok(())
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let mut machine = self.machine();
        machine.changing_call()?;
        let Node::File(file) = machine.create(path, |machine| {
            machine.files.push(FileNode::default());
            Node::File(machine.files.len() - 1)
        })?
        else {
            unreachable!("create_new makes a file");
        };
        Ok(Box::new(ForgetfulFile {
            machine: Arc::clone(&self.machine),
            file,
        }))
    }

    fn open(&self, path: &Path) -> io::Result<Reader> {
        let machine = self.machine();
        machine.reading_call()?;
        let file = machine.file(path)?;
        Ok(Box::new(io::Cursor::new(
            machine.files[file].current.clone(),
        )))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut machine = self.machine();
        machine.changing_call()?;
        let node = machine.lookup(from)?;
        let (from_dir, from_name) = machine.parent(from)?;
        let (to_dir, to_name) = machine.parent(to)?;
        match (node, machine.dirs[to_dir].current.get(to_name)) {
            (Node::File(_), Some(Node::Dir(_))) => {
                return Err(io::Error::new(
                    io::ErrorKind::IsADirectory,
                    format!("{}: is a directory", to.display()),
                ));
            }
            (Node::Dir(_), Some(Node::File(_))) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("{}: not a directory", to.display()),
                ));
            }
            (Node::Dir(_), Some(Node::Dir(replaced)))
                if !machine.dirs[*replaced].current.is_empty() =>
            {
                return Err(io::Error::new(
                    io::ErrorKind::DirectoryNotEmpty,
                    format!("{}: not empty", to.display()),
                ));
            }
            _ => {}
        }
        if from == to {
            return Ok(());
        }
        let removed = (from_name.to_owned(), None);
        let added = (to_name.to_owned(), Some(node));
        if from_dir == to_dir {
            machine.dirs[to_dir].change(vec![removed, added]);
        } else {
            machine.dirs[to_dir].change(vec![added]);
            machine.dirs[from_dir].change(vec![removed]);
        }
        Ok(())
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut machine = self.machine();
        machine.changing_call()?;
        let file = machine.file(from)?;
        machine.create(to, |_| Node::File(file))?;
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut machine = self.machine();
        machine.changing_call()?;
        machine.file(path)?;
        let (dir, name) = machine.parent(path)?;
        machine.dirs[dir].change(vec![(name.to_owned(), None)]);
        Ok(())
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        let mut machine = self.machine();
        machine.changing_call()?;
        let Node::Dir(removed) = machine.lookup(path)? else {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{}: not a directory", path.display()),
            ));
        };
        if !machine.dirs[removed].current.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::DirectoryNotEmpty,
                format!("{}: not empty", path.display()),
            ));
        }
        let (dir, name) = machine.parent(path)?;
        machine.dirs[dir].change(vec![(name.to_owned(), None)]);
        Ok(())
    }

    fn read_dir(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        let machine = self.machine();
        machine.reading_call()?;
        match machine.lookup(dir)? {
            Node::Dir(d) => Ok(machine.dirs[d]
                .current
                .iter()
                .map(|(name, node)| DirEntry {
                    name: name.clone(),
                    is_dir: matches!(node, Node::Dir(_)),
                })
                .collect()),
            Node::File(_) => Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{}: not a directory", dir.display()),
            )),
        }
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut machine = self.machine();
        machine.changing_call()?;
        let Node::Dir(d) = machine.lookup(dir)? else {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{}: not a directory", dir.display()),
            ));
        };
        let dir = &mut machine.dirs[d];
        dir.synced = dir.current.clone();
        dir.unsynced.clear();
        Ok(())
    }

    /// `forgetful.BOOT`, a new `BOOT` after each power loss: the
    /// temporaries of the machine before it are abandoned.
    fn boot(&self) -> String {
        format!("forgetful.{}", self.machine().boot)
    }
}
