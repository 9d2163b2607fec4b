//! The host for shell cells: the state is a directory, the body a shell
//! script, the selection expression a shell command that prints a score.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use async_trait::async_trait;
use pragma_executor_local::{Host, IterationContext, RunError};
use pragma_selector::Evaluation;
use pragma_session::Runner;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::process::Command;

use crate::capture::{Capture, Pumps};
use crate::reaper::{Reaper, kill_group};

/// A state: a private directory (deleted when the last clone is dropped)
/// and the environment variables set for the body.
#[derive(Debug, Clone)]
pub(crate) struct DirState {
    dir: Arc<WorkDir>,
    env: BTreeMap<String, String>,
    /// The score the run that left this state found, by the expression
    /// (scored in the body's own shell: see [`ScoreFiles`]).
    scored: Option<(Arc<str>, Evaluation)>,
}

impl DirState {
    /// The directory that holds the state's files.
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Runs bodies with `/bin/sh -c` in a copy of the state directory.
#[derive(Debug, Clone)]
pub(crate) struct ShellHost {
    /// Where this process's working copies live: a directory of its own
    /// under the store's `work/`, named after it (see [`OwnWork`]).
    work: Arc<OwnWork>,
    /// Where each run's standard output and error are kept:
    /// `OP/ITERATION-ATTEMPT.out` and `.err`.
    logs: PathBuf,
    /// Kills the bodies if this process dies first.
    reaper: Option<Arc<Reaper>>,
    /// Empty working directories, for reuse.
    pool: Arc<DirPool>,
    /// Directories of score files, for reuse (their files are overwritten,
    /// not removed: a new file per iteration costs more than the rest).
    score_dirs: Arc<std::sync::Mutex<Vec<tempfile::TempDir>>>,
    /// Where they are: a directory of this process's in memory (under
    /// `/dev/shm`) where there is one, since rewriting three small files
    /// per iteration on a journalling disk cost as much as the shell that
    /// wrote them; otherwise [`ShellHost::work`].
    scratch: Option<Arc<OwnWork>>,
    /// Every body's standard input.
    input: Arc<SilentInput>,
}

/// The standard input of every body: one pipe that nobody writes to, kept
/// for the host's life. A body that reads it waits, and the watchdog sees
/// it waiting. One pipe for all runs spares each run a pipe of its own,
/// its registration with the runtime and the wake-up when it turns
/// writable.
#[derive(Debug)]
struct SilentInput {
    read: std::io::PipeReader,
    // Held open, never written: a read waits instead of ending.
    _write: std::io::PipeWriter,
    /// What a body's `/proc/PID/fd/0` links to (`pipe:[INODE]`).
    link: Option<PathBuf>,
}

impl SilentInput {
    fn new() -> io::Result<SilentInput> {
        let (read, write) = std::io::pipe()?;
        let link = std::fs::read_link(format!("/proc/self/fd/{}", read.as_raw_fd())).ok();
        Ok(SilentInput {
            read,
            _write: write,
            link,
        })
    }
}

/// A working directory of a state. Dropped, it is emptied and kept for
/// the next iteration: creating and removing a directory per iteration
/// costs more than emptying one on most file systems.
#[derive(Debug)]
pub(crate) struct WorkDir {
    dir: Option<tempfile::TempDir>,
    pool: Arc<DirPool>,
    /// The directory it is in stays while it does.
    _owner: Arc<OwnWork>,
}

impl WorkDir {
    fn path(&self) -> &Path {
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
struct DirPool {
    free: std::sync::Mutex<Vec<tempfile::TempDir>>,
}

impl DirPool {
    /// How many empty directories are kept.
    const KEEP: usize = 16;

    fn take(&self) -> Option<tempfile::TempDir> {
        self.free.lock().ok()?.pop()
    }

    /// Keeps `dir` if it can be emptied; otherwise it is removed. A few
    /// small files are removed right here; a larger tree on the blocking
    /// pool, so that it holds up no other iteration.
    fn give_back(self: &Arc<Self>, dir: tempfile::TempDir) {
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
    fn keep(&self, dir: tempfile::TempDir) {
        if let Ok(mut free) = self.free.lock()
            && free.len() < Self::KEEP
        {
            free.push(dir);
        }
    }
}

/// A state of at most this many entries, none a directory, and at most
/// [`SMALL_STATE_BYTES`] in all, is copied and looked over on the
/// runtime's own thread: handing an empty state's copy to the blocking
/// pool and back cost a no-op iteration an eighth of its time, where a
/// large state's would hold up every other iteration's events there.
const SMALL_STATE_ENTRIES: usize = 16;
const SMALL_STATE_BYTES: u64 = 256 << 10;

/// The entries of `dir` if it is a small state (see
/// [`SMALL_STATE_ENTRIES`]), else `None`.
fn small_state(dir: &Path) -> io::Result<Option<Vec<std::fs::DirEntry>>> {
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
async fn copy_state(from: &Path, to: &Path) -> io::Result<()> {
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
async fn special_file_in_state(dir: &Path) -> Option<PathBuf> {
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
fn empty_dir(dir: &Path) -> io::Result<()> {
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

/// A body's process group, killed (with whatever the body left running in
/// the background) when the guard drops.
struct GroupGuard<'a> {
    pgid: Option<u32>,
    reaper: Option<&'a Reaper>,
}

impl<'a> GroupGuard<'a> {
    fn new(pgid: Option<u32>, reaper: Option<&'a Reaper>) -> Self {
        if let (Some(pgid), Some(reaper)) = (pgid, reaper) {
            reaper.watch(pgid);
        }
        GroupGuard { pgid, reaper }
    }
}

impl Drop for GroupGuard<'_> {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            kill_group(pgid);
            if let Some(reaper) = self.reaper {
                reaper.forget(pgid);
            }
        }
    }
}

/// This process's directory of working copies, `work/HOST-PID-START`:
/// what a runner killed with `kill -9` leaves there is found by its name
/// and removed by the next runner on the machine. Removed when the host is
/// dropped (its copies are gone by then).
#[derive(Debug)]
struct OwnWork(PathBuf);

impl OwnWork {
    /// Takes a directory of its own under `work`, first removing those of
    /// runners of this machine that are gone.
    fn new(work: &Path) -> io::Result<OwnWork> {
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
fn in_memory_scratch() -> Option<Arc<OwnWork>> {
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
fn owner_of(name: &str) -> Option<Runner> {
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

impl ShellHost {
    pub(crate) fn new(work: PathBuf, logs: PathBuf) -> io::Result<Self> {
        let work = Arc::new(OwnWork::new(&work)?);
        std::fs::create_dir_all(&logs)?;
        Ok(ShellHost {
            work,
            logs,
            reaper: None,
            pool: Arc::default(),
            score_dirs: Arc::default(),
            scratch: in_memory_scratch(),
            input: Arc::new(SilentInput::new()?),
        })
    }

    /// Where score files go.
    fn scratch_dir(&self) -> &Path {
        self.scratch.as_deref().unwrap_or(&self.work).0.as_path()
    }

    /// The mark of this runner's bodies (see [`Reaper::token`]); empty
    /// without a reaper.
    fn reaper_token(&self) -> &str {
        self.reaper.as_deref().map_or("", Reaper::token)
    }

    /// Has `reaper` kill the bodies if this process dies first.
    pub(crate) fn with_reaper(mut self, reaper: Reaper) -> Self {
        self.reaper = Some(Arc::new(reaper));
        self
    }

    /// Where a run's standard output and error are kept:
    /// `OP/ITERATION-ATTEMPT.out` and `.err` (created only if it prints).
    fn captures(&self, ctx: &IterationContext) -> (Capture, Capture) {
        let stem = self
            .logs
            .join(&*ctx.op)
            .join(format!("{}-{}", ctx.iteration, ctx.attempt));
        (
            Capture::to_log(stem.with_extension("out")),
            Capture::to_log(stem.with_extension("err")),
        )
    }

    fn new_dir(&self) -> io::Result<WorkDir> {
        let dir = match self.pool.take() {
            Some(dir) => dir,
            None => tempfile::Builder::new()
                .prefix("state-")
                .tempdir_in(&self.work.0)?,
        };
        Ok(WorkDir {
            dir: Some(dir),
            pool: Arc::clone(&self.pool),
            _owner: Arc::clone(&self.work),
        })
    }

    /// A state holding a copy of `dir`.
    pub(crate) async fn state_from(&self, dir: &Path) -> io::Result<DirState> {
        let copy = self.new_dir()?;
        copy_state(dir, copy.path()).await?;
        Ok(DirState {
            dir: Arc::new(copy),
            env: BTreeMap::new(),
            scored: None,
        })
    }
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

/// Where a body's shell leaves the score of the state it made: the body
/// runs in a subshell (so that its `exit`, `cd` and variables stay its
/// own, as in a shell of its own) unless it leaves the shell alone anyway,
/// and then, if it succeeded, the shell runs the selection command as its
/// last, with its standard input closed and its output and error in files
/// (see [`ScoreFiles::script`]).
struct ScoreFiles {
    dir: Option<tempfile::TempDir>,
    pool: Arc<std::sync::Mutex<Vec<tempfile::TempDir>>>,
    /// Written with the status by this run alone: a status an earlier run
    /// of the directory left is never taken for this one's.
    token: u64,
}

impl ScoreFiles {
    /// A directory from `pool`, or a new one under `work`.
    fn take(
        work: &Path,
        pool: &Arc<std::sync::Mutex<Vec<tempfile::TempDir>>>,
    ) -> io::Result<ScoreFiles> {
        let dir = match pool.lock().ok().and_then(|mut free| free.pop()) {
            Some(dir) => dir,
            None => tempfile::Builder::new().prefix("score-").tempdir_in(work)?,
        };
        static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Ok(ScoreFiles {
            dir: Some(dir),
            pool: Arc::clone(pool),
            token: RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir
            .as_ref()
            .map_or_else(PathBuf::new, |d| d.path().join(name))
    }

    /// The script running `body`, then, if it succeeded, `expr`: the last
    /// command, so that the shell may become it (one process start less).
    /// The body runs in a subshell, so that its `cd`, variables, traps and
    /// `exit` stay its own, unless it [leaves the shell
    /// alone](leaves_the_shell_alone) anyway. A body that fails ends the
    /// shell with its status; one that succeeds has this run's token put
    /// on the first line of `out`, the selection command's output after
    /// it.
    fn script(&self, body: &str, expr: &str) -> String {
        let quoted = |name: &str| crate::location::quoted(&self.path(name).to_string_lossy());
        // A group runs in the shell itself; either way the body starts on
        // the script's second line, so its messages name the same lines.
        let (open, close) = if leaves_the_shell_alone(body) {
            ("{", "}")
        } else {
            ("(", ")")
        };
        format!(
            "{open}\n{body}\n{close}\n__pragma_status=$?\n\
             if [ \"$__pragma_status\" -ne 0 ]; then exit \"$__pragma_status\"; fi\n\
             exec </dev/null >{out} 2>{err}\necho {token}\n{expr}\n",
            out = quoted("out"),
            err = quoted("err"),
            token = self.token,
        )
    }

    /// What this run's shell wrote down: whether the body succeeded (the
    /// shell got as far as the selection command), and what that printed.
    fn written(&self) -> (bool, String) {
        let text = self.read("out");
        let (first, printed) = text.split_once('\n').unwrap_or((&text, ""));
        (first == self.token.to_string(), printed.to_owned())
    }

    /// The first MiB of the file `name` (empty if there is none), its
    /// bytes that are not UTF-8 replaced.
    fn read(&self, name: &str) -> String {
        let mut bytes = Vec::new();
        let _ = std::fs::File::open(self.path(name))
            .and_then(|f| io::Read::read_to_end(&mut io::Read::take(f, 1 << 20), &mut bytes));
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// What the selection command gave, as `evaluate` would have: the
    /// shell ended as it did (`status`, once the body succeeded), having
    /// printed `printed`.
    fn evaluation(&self, status: std::process::ExitStatus, printed: &str) -> Evaluation {
        let last_line = |text: &str| text.lines().last().unwrap_or_default().trim().to_owned();
        if status.success() {
            return Evaluation::parse(&last_line(printed));
        }
        selection_failed(status, &last_line(&self.read("err")))
    }
}

/// Whether `body` leaves the shell it runs in as it found it, so that it
/// needs no subshell before the selection command (whose fork costs a
/// fifth of a no-op iteration): every line blank, a comment, or a simple
/// command of plain words (letters, digits, `_./:@%+,=-`, `$NAME` and
/// `${NAME}`), whose first word is a plain name that is no shell keyword
/// and no builtin that changes the shell (`cd`, `exit`, `exec`, `set`,
/// `read`, ...; an assignment is no plain name). Anything else, a quote
/// or an operator (`;`, `|`, `&`, `>`, ...) included, runs in a subshell;
/// so does every body where `/bin/sh` is bash and the environment exports
/// functions (as environment modules do), since a command may then be a
/// function that changes the shell.
fn leaves_the_shell_alone(body: &str) -> bool {
    static FUNCTIONS_IMPORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let imported = *FUNCTIONS_IMPORTED.get_or_init(|| {
        let bash = std::fs::canonicalize("/bin/sh")
            .is_ok_and(|sh| sh.file_name().is_some_and(|name| name == "bash"));
        bash && std::env::vars_os()
            .any(|(name, _)| name.as_encoded_bytes().starts_with(b"BASH_FUNC_"))
    });
    !imported && plain_commands(body)
}

/// Whether `body` is plain commands (see [`leaves_the_shell_alone`]).
fn plain_commands(body: &str) -> bool {
    // Keywords, and the builtins of dash and bash that change the shell's
    // state (its directory, variables, options, traps, jobs, or whether
    // it goes on): `printf -v` assigns in bash.
    const CHANGES_THE_SHELL: &[&str] = &[
        ".",
        "alias",
        "bg",
        "break",
        "builtin",
        "caller",
        "case",
        "cd",
        "chdir",
        "command",
        "continue",
        "coproc",
        "declare",
        "dirs",
        "disown",
        "do",
        "done",
        "elif",
        "else",
        "enable",
        "esac",
        "eval",
        "exec",
        "exit",
        "export",
        "fc",
        "fg",
        "fi",
        "for",
        "function",
        "getopts",
        "hash",
        "history",
        "if",
        "in",
        "jobs",
        "let",
        "local",
        "logout",
        "mapfile",
        "popd",
        "printf",
        "pushd",
        "read",
        "readarray",
        "readonly",
        "return",
        "select",
        "set",
        "shift",
        "shopt",
        "source",
        "suspend",
        "then",
        "time",
        "times",
        "trap",
        "typeset",
        "ulimit",
        "umask",
        "unalias",
        "unset",
        "until",
        "wait",
        "while",
    ];
    let plain_name = |word: &str| {
        !word.is_empty()
            && word
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_./+-".contains(&b))
            && !CHANGES_THE_SHELL.contains(&word)
    };
    let is_name = |name: &str| {
        name.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    let plain_word = |word: &str| {
        let mut rest = word;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('$') {
                let (name, next) = match after.strip_prefix('{') {
                    Some(braced) => match braced.split_once('}') {
                        Some((name, next)) => (name, next),
                        None => return false,
                    },
                    None => after.split_at(
                        after
                            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                            .unwrap_or(after.len()),
                    ),
                };
                if !is_name(name) {
                    return false;
                }
                rest = next;
            } else {
                let plain = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || "_./:@%+,=-".contains(c)))
                    .unwrap_or(rest.len());
                if plain == 0 {
                    return false;
                }
                rest = &rest[plain..];
            }
        }
        true
    };
    let mut commands = 0;
    for line in body.lines() {
        let mut words = line.split([' ', '\t']).filter(|w| !w.is_empty());
        let Some(first) = words.next() else { continue };
        if first.starts_with('#') {
            continue;
        }
        if !plain_name(first) || !words.all(plain_word) {
            return false;
        }
        commands += 1;
    }
    commands > 0
}

impl Drop for ScoreFiles {
    fn drop(&mut self) {
        if let (Some(dir), Ok(mut free)) = (self.dir.take(), self.pool.lock()) {
            free.push(dir);
        }
    }
}

/// The evaluation of a selection command that ended with `status`, its
/// error's last line `last`.
fn selection_failed(status: std::process::ExitStatus, last: &str) -> Evaluation {
    Evaluation::failed(format!(
        "the selection command failed ({status}){}",
        if last.is_empty() {
            String::new()
        } else {
            format!(": {last}")
        }
    ))
}

/// Whether the file system holding `dir` has (next to) no room left.
fn disk_full(dir: &Path) -> bool {
    rustix::fs::statvfs(dir).is_ok_and(|fs| fs.f_bavail.saturating_mul(fs.f_frsize) < 64 * 1024)
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
fn copy_entry(entry: &std::fs::DirEntry, to: &Path) -> io::Result<()> {
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

#[async_trait]
impl Host for ShellHost {
    type State = DirState;

    async fn run(
        &self,
        body: &str,
        state: &mut DirState,
        ctx: &IterationContext,
    ) -> Result<(), RunError> {
        // A full disk under the working copies stops the operation
        // (resumable), where another error is the iteration's failure.
        let failed = |what: &str, e: io::Error| {
            if matches!(
                e.kind(),
                io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
            ) {
                RunError::StorageFull(format!("{what}: {e}"))
            } else {
                RunError::Failed(format!("{what}: {e}"))
            }
        };
        let copy = self
            .new_dir()
            .map_err(|e| failed("creating a working copy", e))?;
        copy_state(state.path(), copy.path())
            .await
            .map_err(|e| failed("copying the state", e))?;
        // A cell saved with CRLF line endings (on Windows) runs as with LF:
        // the shell would take each `\r` for part of a word.
        let body = body.replace("\r\n", "\n");
        // A candidate is scored in the same shell, after the body: one
        // process start per iteration instead of two.
        let score_files = match &ctx.expr {
            Some(_) => Some(
                ScoreFiles::take(self.scratch_dir(), &self.score_dirs)
                    .map_err(|e| failed("scoring", e))?,
            ),
            None => None,
        };
        let script = match (&ctx.expr, &score_files) {
            (Some(expr), Some(files)) => files.script(&body, expr),
            _ => body,
        };
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(&script)
            .current_dir(copy.path())
            .envs(&state.env)
            .env("PRAGMA_SEED", ctx.seed.to_string())
            .env("PRAGMA_OP_ID", &*ctx.op)
            .env(crate::reaper::MARK, self.reaper_token())
            // Standard input is a pipe nobody writes to: a body that reads
            // it waits, and the watchdog below sees it waiting.
            .stdin(
                self.input
                    .read
                    .try_clone()
                    .map_err(|e| failed("starting /bin/sh", e))?,
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that stopping it stops its children.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|e| failed("starting /bin/sh", e))?;
        let pid = child.id();
        let group = GroupGuard::new(pid, self.reaper.as_deref());
        let (out, err) = self.captures(ctx);
        let pumps = Pumps::start(&mut child, out, err);
        let status = tokio::select! {
            status = child.wait() => status.map_err(|e| failed("running the body", e))?,
            () = ctx.cancel.cancelled() => return Err(RunError::Cancelled),
            message = watch_for_input(pid, self.input.link.clone()) => {
                return Err(RunError::InteractiveInput(message));
            }
        };
        // The iteration ends with its shell: what it left running in the
        // background is stopped now, and its output not waited for.
        drop(group);
        let (_, err) = pumps.finish().await;
        // With a score to take, the shell goes on to the selection command
        // once the body succeeded, and ends with the body's status if it
        // failed.
        let (scoring, printed) = score_files
            .as_ref()
            .map_or((false, String::new()), ScoreFiles::written);
        if !scoring && !status.success() {
            let code = status
                .code()
                .map_or("a signal".to_owned(), |c| format!("exit code {c}"));
            let last = err.last_line();
            let message = if last.is_empty() {
                format!("the body failed with {code}")
            } else {
                format!("the body failed with {code}: {last}")
            };
            // A body that failed on the disk its working copy filled is no
            // failure of its own: running it again cannot help.
            if disk_full(copy.path()) {
                return Err(RunError::StorageFull(format!(
                    "{message} (the disk of the working copies, `{}`, is full)",
                    self.work.0.display()
                )));
            }
            return Err(RunError::Failed(message));
        }
        if let Some(special) = special_file_in_state(copy.path()).await {
            let name = special.strip_prefix(copy.path()).unwrap_or(&special);
            return Err(RunError::Failed(format!(
                "the body left `{}`, a special file (a FIFO, socket or device), which \
                 cannot be state: remove it before the body ends",
                name.display()
            )));
        }
        state.dir = Arc::new(copy);
        state.scored = match (&ctx.expr, &score_files) {
            (Some(expr), Some(files)) => {
                Some((Arc::clone(expr), files.evaluation(status, &printed)))
            }
            _ => None,
        };
        Ok(())
    }

    async fn evaluate(&self, expr: &str, state: &DirState) -> Evaluation {
        if let Some((scored, evaluation)) = &state.scored
            && **scored == *expr
        {
            return evaluation.clone();
        }
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(expr)
            .current_dir(state.path())
            .envs(&state.env)
            .env(crate::reaper::MARK, self.reaper_token())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(e) => return Evaluation::failed(format!("cannot run the selection command: {e}")),
        };
        let group = GroupGuard::new(child.id(), self.reaper.as_deref());
        let pumps = Pumps::start(&mut child, Capture::tail_only(), Capture::tail_only());
        let status = child.wait().await;
        // The score is in once the command exits; what it left running in
        // the background is stopped.
        drop(group);
        let (out, err) = pumps.finish().await;
        match status {
            Err(e) => Evaluation::failed(format!("cannot run the selection command: {e}")),
            Ok(status) if !status.success() => selection_failed(status, &err.last_line()),
            Ok(_) => Evaluation::parse(&out.last_line()),
        }
    }

    async fn snapshot(
        &self,
        state: &DirState,
        out: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> io::Result<()> {
        // Archive into a file first (tar is blocking), then stream it out.
        let archive = tempfile::NamedTempFile::new_in(&self.work.0)?;
        let (dir, path) = (state.path().to_owned(), archive.path().to_owned());
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            let mut builder = tar::Builder::new(std::fs::File::create(&path)?);
            builder.follow_symlinks(false);
            builder.append_dir_all(".", &dir)?;
            builder.into_inner()?.sync_all()
        })
        .await
        .map_err(io::Error::other)??;
        let mut file = tokio::fs::File::open(archive.path()).await?;
        tokio::io::copy(&mut file, out).await?;
        Ok(())
    }

    async fn restore(&self, input: &mut (dyn AsyncRead + Send + Unpin)) -> io::Result<DirState> {
        let archive = tempfile::NamedTempFile::new_in(&self.work.0)?;
        let mut file = tokio::fs::File::create(archive.path()).await?;
        tokio::io::copy(input, &mut file).await?;
        drop(file);
        let dir = self.new_dir()?;
        let (path, to) = (archive.path().to_owned(), dir.path().to_owned());
        tokio::task::spawn_blocking(move || {
            tar::Archive::new(std::fs::File::open(path)?).unpack(to)
        })
        .await
        .map_err(io::Error::other)??;
        Ok(DirState {
            dir: Arc::new(dir),
            env: BTreeMap::new(),
            scored: None,
        })
    }

    fn set_iteration_var(&self, state: &mut DirState, name: &str, iteration: u64) {
        state.env.insert(name.to_owned(), iteration.to_string());
        state.scored = None;
    }

    fn remove_iteration_var(&self, state: &mut DirState, name: &str) {
        state.env.remove(name);
        state.scored = None;
    }
}

/// The `read` system call's number, as `/proc/PID/syscall` shows it.
const READ_SYSCALL: i64 = if cfg!(target_arch = "x86_64") {
    0
} else if cfg!(target_arch = "aarch64") {
    63
} else {
    -1
};

/// Resolves with a message once a process of the body's tree has been
/// waiting to read its standard input or a terminal for about a second.
/// Never resolves where `/proc` cannot tell.
async fn watch_for_input(root: Option<u32>, stdin: Option<PathBuf>) -> String {
    let Some(root) = root else {
        return std::future::pending().await;
    };
    let mut strikes = 0;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let stdin = stdin.clone();
        let found = tokio::task::spawn_blocking(move || waiting_for_input(root, stdin.as_deref()))
            .await
            .ok()
            .flatten();
        match found {
            Some(message) if strikes >= 2 => return message,
            Some(_) => strikes += 1,
            None => strikes = 0,
        }
    }
}

/// A process under `root` blocked in `read` on `stdin` or a terminal.
fn waiting_for_input(root: u32, stdin: Option<&Path>) -> Option<String> {
    for pid in descendants(root) {
        let Ok(syscall) = std::fs::read_to_string(format!("/proc/{pid}/syscall")) else {
            continue;
        };
        let mut fields = syscall.split_whitespace();
        if fields.next().and_then(|n| n.parse::<i64>().ok()) != Some(READ_SYSCALL) {
            continue;
        }
        let Some(fd) = fields
            .next()
            .and_then(|f| i64::from_str_radix(f.trim_start_matches("0x"), 16).ok())
        else {
            continue;
        };
        let Ok(target) = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")) else {
            continue;
        };
        let terminal = target.starts_with("/dev/pts") || target == Path::new("/dev/tty");
        if terminal || Some(target.as_path()) == stdin {
            let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let what = if terminal {
                "the terminal"
            } else {
                "its standard input"
            };
            return Some(format!(
                "`{}` (pid {pid}) waits to read {what}",
                name.trim()
            ));
        }
    }
    None
}

/// `root` and every process below it, from `/proc`.
fn descendants(root: u32) -> Vec<u32> {
    let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for pid in pragma_session::procfs::pids() {
        if let Some(stat) = pragma_session::procfs::stat(pid) {
            children.entry(stat.parent).or_default().push(pid);
        }
    }
    let mut found = vec![root];
    let mut next = 0;
    while next < found.len() {
        found.extend(children.get(&found[next]).into_iter().flatten().copied());
        next += 1;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_body_of_plain_commands_runs_without_a_subshell() {
        for alone in [
            "true",
            "python3 train.py --lr=0.1 --seed $PRAGMA_SEED\n",
            "# a comment; exit\n\n  make -C build all\n./run ${iteration} a,b:c@d%e+f\n",
        ] {
            assert!(plain_commands(alone), "{alone:?}");
        }
        for changes in [
            "",
            "# only a comment",
            "cd sub",
            "exit 0",
            "exec python3 x.py",
            ". ./env.sh",
            "x=1",
            "x=1 true",
            "read line",
            "printf -v x 1",
            "set -e",
            "trap 'echo' EXIT",
            "true; exit",
            "true && exit",
            "true | cat",
            "sleep 1 &",
            "echo $(cd /)",
            "echo ${x:=1}",
            "echo $$",
            "echo 'a b'",
            "echo a > out",
            "echo a \\\nexit",
            "if true\nthen exit\nfi",
            "$cmd /",
        ] {
            assert!(!plain_commands(changes), "{changes:?}");
        }
    }

    #[tokio::test]
    async fn the_shell_host_conforms() {
        let root = tempfile::tempdir().unwrap();
        let host = ShellHost::new(root.path().join("work"), root.path().join("logs")).unwrap();
        let live = root.path().join("state");
        std::fs::create_dir_all(live.join("sub")).unwrap();
        std::fs::write(live.join("score"), "3\n").unwrap();
        std::fs::write(live.join("sub/notes"), "kept\n").unwrap();
        std::os::unix::fs::symlink("score", live.join("link")).unwrap();
        let state = host.state_from(&live).await.unwrap();
        let sample = pragma_executor_local::conformance::HostSample::new(
            state,
            "echo $(( $(cat score) + 1 )) > score",
            "cat score; cat link",
            |name| format!("echo \"${name}\""),
        );
        pragma_executor_local::conformance::host(&host, sample)
            .await
            .unwrap();
    }
}
