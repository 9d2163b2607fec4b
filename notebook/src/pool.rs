//! A pool of persistent worker interpreters (`python -m
//! pragma_notebook.worker`), and the framed protocol spoken with them.
//! The workers are this machine's processes, or a cluster's (with the
//! `python` feature, Ray actors: see `crate::ray`), behind one
//! [`WorkerChannel`].

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// How workers are started.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The Python interpreter (the kernel's own, `sys.executable`).
    pub python: PathBuf,
    /// Directories put first on the workers' `PYTHONPATH`: where the
    /// `pragma_notebook` package is, if it is not installed.
    pub python_path: Vec<PathBuf>,
    /// The most workers at once (each runs one iteration at a time).
    pub size: usize,
    /// The logs directory (a store's `logs/`): a worker's output outside
    /// its runs (imports, start-up, between runs) goes to
    /// `LOGS/workers/KERNEL-WORKER.err` (the process ids of this process
    /// and of the worker), never to this process's standard output or
    /// error (in a Jupyter kernel, whatever cell runs at the time).
    /// `None`: to this process's standard error.
    pub logs: Option<PathBuf>,
}

impl WorkerConfig {
    /// Workers of `python`, at most as many as the machine has cores.
    pub fn new(python: impl Into<PathBuf>) -> WorkerConfig {
        WorkerConfig {
            python: python.into(),
            python_path: Vec::new(),
            size: std::thread::available_parallelism().map_or(1, |n| n.get()),
            logs: None,
        }
    }
}

/// Why a call to a worker did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The worker could not be started.
    #[error("cannot start the worker `{python} -m pragma_notebook.worker`: {source}")]
    Start {
        /// The interpreter.
        python: String,
        /// What failed.
        source: std::io::Error,
    },
    /// No worker actor could be started on the cluster.
    #[error("cannot start a worker actor on the Ray cluster: {0}")]
    StartOnCluster(String),
    /// The worker died (killed, out of memory) or broke the protocol.
    #[error("the worker process died ({0})")]
    Died(String),
    /// The call was cancelled; the worker was stopped.
    #[error("cancelled")]
    Cancelled,
    /// The worker asked for (the one holding a state) is gone.
    #[error("the worker process that held the state is gone")]
    Gone,
}

/// The line to one worker interpreter: requests go in, answers come out.
#[async_trait]
pub(crate) trait WorkerChannel: Send {
    /// Sends one request and reads its answer: the header, and as many
    /// blobs as an answer that is `ok` names in `vars`.
    async fn exchange(
        &mut self,
        header: &Value,
        blobs: &[&[u8]],
    ) -> std::io::Result<(Value, Vec<Vec<u8>>)>;

    /// Stops the worker at once (it may be in the middle of a body).
    fn kill(&mut self);

    /// Once killed, or broken: how it ended, if that can be told.
    async fn ended(&mut self) -> Option<String>;
}

/// Where a pool's workers come from.
#[async_trait]
pub(crate) trait WorkerSpawner: Send + Sync {
    /// Starts a worker.
    async fn start(&self, config: &WorkerConfig) -> Result<Box<dyn WorkerChannel>, WorkerError>;

    /// How long a worker idle and holding no state is kept: `None`, for
    /// as long as the pool lives (a local process costs nothing idle; a
    /// cluster's worker holds a CPU there).
    fn linger(&self) -> Option<Duration>;
}

/// Workers as child processes of this one.
struct LocalProcesses;

/// A worker process, spoken to through its standard input and output.
struct ProcessChannel {
    child: Child,
    input: ChildStdin,
    output: ChildStdout,
    /// Where its output outside runs goes, if to a file.
    log: Option<PathBuf>,
}

impl Drop for ProcessChannel {
    fn drop(&mut self) {
        // Only logs with something in them are worth keeping.
        if let Some(log) = &self.log
            && std::fs::metadata(log).is_ok_and(|m| m.len() == 0)
        {
            let _ = std::fs::remove_file(log);
        }
    }
}

/// How long a fresh worker may import libraries ahead (it is stopped
/// after), and so the longest a request waits for one before it starts
/// another.
const WARMING_WAIT: Duration = Duration::from_secs(60);

/// Whose states a worker's process has run: it serves no other operation,
/// so that what one operation's bodies did to the process (a module
/// patched, a global of a library set) never reaches another's.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Served {
    /// None yet: a fresh process.
    Nothing,
    /// One operation's.
    Operation(Arc<str>),
    /// No operation any more: it ran a state of an operation not named
    /// (an evaluation of a restored state), or its operation ended while
    /// it held that operation's result. Stopped once it holds nothing
    /// needed.
    Spent,
}

/// One worker interpreter.
struct Worker {
    serial: u64,
    channel: Box<dyn WorkerChannel>,
    served: Served,
    /// The states its runs left in its memory, not forgotten yet.
    holding: HashSet<u64>,
    idle_since: Instant,
}

impl Worker {
    /// Whether it holds no state that is still needed (`forgets`: the
    /// states each worker is to forget with its next request).
    fn needed_by_none(&self, forgets: &HashMap<u64, Vec<u64>>) -> bool {
        let forgotten = forgets.get(&self.serial);
        self.holding
            .iter()
            .all(|t| forgotten.is_some_and(|f| f.contains(t)))
    }
}

/// Persistent worker interpreters: started when first needed, at most
/// [`WorkerConfig::size`] busy at once, reused for the requests of the
/// operation they first served (its imports stay loaded from one
/// iteration to the next) and of no other: an operation's first request
/// takes a fresh process, in place of an idle one of an operation that
/// holds no state there any more. Each has a serial number, so that a
/// request can go to the one that holds a state in its memory.
pub struct WorkerPool {
    config: WorkerConfig,
    spawner: Box<dyn WorkerSpawner>,
    idle: Mutex<Vec<Worker>>,
    /// Serials of the workers alive (idle or busy).
    alive: Mutex<std::collections::HashSet<u64>>,
    next_serial: std::sync::atomic::AtomicU64,
    /// Signalled when a worker goes back to idle, or dies.
    returned: tokio::sync::Notify,
    /// Fresh workers importing libraries ahead (see `retire`): a request
    /// waits for one rather than start another.
    warming: std::sync::atomic::AtomicUsize,
    /// States each worker may forget, told with its next request.
    forgets: Mutex<std::collections::HashMap<u64, Vec<u64>>>,
    slots: Semaphore,
}

impl std::fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerPool")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl WorkerPool {
    /// A pool; no worker starts until one is needed.
    pub fn new(config: WorkerConfig) -> Arc<WorkerPool> {
        WorkerPool::with_spawner(config, Box::new(LocalProcesses))
    }

    /// A pool whose workers `spawner` starts. Workers it lets linger are
    /// let go by a thread of the pool's once idle that long, holding no
    /// state.
    pub(crate) fn with_spawner(
        config: WorkerConfig,
        spawner: Box<dyn WorkerSpawner>,
    ) -> Arc<WorkerPool> {
        let linger = spawner.linger();
        let slots = Semaphore::new(config.size.max(1));
        let pool = Arc::new(WorkerPool {
            config,
            spawner,
            idle: Mutex::new(Vec::new()),
            alive: Mutex::default(),
            next_serial: std::sync::atomic::AtomicU64::new(1),
            returned: tokio::sync::Notify::new(),
            warming: std::sync::atomic::AtomicUsize::new(0),
            forgets: Mutex::default(),
            slots,
        });
        if let Some(linger) = linger {
            let pool = Arc::downgrade(&pool);
            std::thread::Builder::new()
                .name("pragma idle workers".into())
                .spawn(move || let_go_idle(&pool, linger))
                .ok();
        }
        pool
    }

    /// Drops the idle workers that have held no state for `linger`.
    fn let_go_of_idle(&self, linger: Duration) {
        let forgets = self.forgets.lock().map(|f| f.clone()).unwrap_or_default();
        let stale =
            self.take_idle(|w| w.idle_since.elapsed() >= linger && w.needed_by_none(&forgets));
        for mut worker in stale {
            worker.channel.kill();
            self.died(worker.serial);
        }
    }

    /// Takes the idle workers `which` picks out of the idle ones.
    fn take_idle(&self, which: impl Fn(&Worker) -> bool) -> Vec<Worker> {
        let Ok(mut idle) = self.idle.lock() else {
            return Vec::new();
        };
        let (taken, kept) = std::mem::take(&mut *idle).into_iter().partition(which);
        *idle = kept;
        taken
    }

    /// Whether the worker `serial` is alive.
    pub(crate) fn holds(&self, serial: u64) -> bool {
        self.alive.lock().is_ok_and(|alive| alive.contains(&serial))
    }

    /// The worker `serial` may forget the state `token`: told with its next
    /// request, or stopped now if it serves no operation any more and
    /// holds nothing else.
    pub(crate) fn forget(&self, serial: u64, token: u64) {
        if !self.holds(serial) {
            return;
        }
        let forgets = match self.forgets.lock() {
            Ok(mut forgets) => {
                forgets.entry(serial).or_default().push(token);
                forgets.clone()
            }
            Err(_) => return,
        };
        let spent = self.idle.lock().ok().and_then(|mut idle| {
            let at = idle.iter().position(|w| {
                w.serial == serial && w.served == Served::Spent && w.needed_by_none(&forgets)
            })?;
            Some(idle.swap_remove(at))
        });
        if let Some(mut worker) = spent {
            worker.channel.kill();
            self.died(serial);
        }
    }

    /// Takes the worker `serial` once it is idle.
    async fn take(&self, serial: u64, cancel: &CancellationToken) -> Result<Worker, WorkerError> {
        loop {
            let returned = self.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            if let Ok(mut idle) = self.idle.lock()
                && let Some(at) = idle.iter().position(|w| w.serial == serial)
            {
                return Ok(idle.swap_remove(at));
            }
            if !self.holds(serial) {
                return Err(WorkerError::Gone);
            }
            tokio::select! {
                () = returned => {}
                () = cancel.cancelled() => return Err(WorkerError::Cancelled),
            }
        }
    }

    fn died(&self, serial: u64) {
        if let Ok(mut alive) = self.alive.lock() {
            alive.remove(&serial);
        }
        if let Ok(mut forgets) = self.forgets.lock() {
            forgets.remove(&serial);
        }
        self.returned.notify_waiters();
    }

    /// The configuration.
    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    /// Sends `header` and `blobs` to a worker (the worker `to`, if given,
    /// once it is idle; else one that served only the operation `op`, or
    /// a fresh one) and returns its answer: its header and blobs, and the
    /// worker's serial. A worker that dies or is cancelled is not reused.
    pub(crate) async fn call(
        &self,
        to: Option<u64>,
        op: Option<&Arc<str>>,
        header: &Value,
        blobs: &[&[u8]],
        cancel: &CancellationToken,
    ) -> Result<(Value, Vec<Vec<u8>>, u64), WorkerError> {
        let _slot = tokio::select! {
            slot = self.slots.acquire() => slot.map_err(|_| WorkerError::Cancelled)?,
            () = cancel.cancelled() => return Err(WorkerError::Cancelled),
        };
        let mut worker = match to {
            Some(serial) => self.take(serial, cancel).await?,
            None => self.fresh_or_same(op, cancel).await?,
        };
        worker.served = match (&worker.served, op, to) {
            (Served::Nothing, Some(op), _) => Served::Operation(Arc::clone(op)),
            (_, None, None) => Served::Spent,
            (served, _, _) => served.clone(),
        };
        let forget = self
            .forgets
            .lock()
            .ok()
            .and_then(|mut forgets| forgets.remove(&worker.serial))
            .unwrap_or_default();
        for token in &forget {
            worker.holding.remove(token);
        }
        let header = if forget.is_empty() {
            std::borrow::Cow::Borrowed(header)
        } else {
            let mut with = header.clone();
            with["forget"] = Value::from(forget);
            std::borrow::Cow::Owned(with)
        };
        let exchange = worker.channel.exchange(&header, blobs);
        let answer = tokio::select! {
            answer = exchange => answer,
            () = cancel.cancelled() => {
                // It may be in the middle of the body: it stops with it.
                worker.channel.kill();
                self.died(worker.serial);
                return Err(WorkerError::Cancelled);
            }
        };
        let serial = worker.serial;
        match answer {
            Ok((answer, blobs)) => {
                // A run takes the state it ran on, and leaves one.
                if header["op"] == "run" {
                    if let Some(token) = header["resident"].as_u64() {
                        worker.holding.remove(&token);
                    }
                    if let Some(token) = answer["token"].as_u64() {
                        worker.holding.insert(token);
                    }
                }
                worker.idle_since = Instant::now();
                if let Ok(mut idle) = self.idle.lock() {
                    idle.push(worker);
                }
                self.returned.notify_waiters();
                Ok((answer, blobs, serial))
            }
            Err(e) => {
                worker.channel.kill();
                self.died(serial);
                Err(WorkerError::Died(match worker.channel.ended().await {
                    Some(status) => format!("{status}; {e}"),
                    None => e.to_string(),
                }))
            }
        }
    }

    /// Stops the idle workers that served `op`, now ended, and hold
    /// nothing it still needs: no other operation may take them, and
    /// what they hold in memory goes with them. Where workers cost
    /// nothing idle (local processes), as many fresh ones start in their
    /// place, import the libraries the retired ones had imported and
    /// check the data blobs they had checked (a notebook's next operation
    /// most likely uses them too), so that the next operation does not
    /// wait for them.
    #[cfg_attr(not(feature = "python"), allow(dead_code))] // the kernel's session calls it
    pub(crate) async fn retire(self: &Arc<Self>, op: &str) {
        let mut served =
            self.take_idle(|w| matches!(&w.served, Served::Operation(o) if &**o == op));
        let replaced = self.spawner.linger().is_none();
        let mut preload = serde_json::json!({"op": "preload"});
        if replaced && let Some(worker) = served.first_mut() {
            let asked = worker
                .channel
                .exchange(&serde_json::json!({"op": "imported"}), &[])
                .await;
            if let Ok((answer, _)) = asked {
                preload["modules"] = answer["modules"].clone();
                preload["blobs"] = answer["blobs"].clone();
            }
        }
        let count = served.len();
        let forgets = self.forgets.lock().map(|f| f.clone()).unwrap_or_default();
        for mut worker in served {
            if worker.needed_by_none(&forgets) {
                worker.channel.kill();
                self.died(worker.serial);
            } else if let Ok(mut idle) = self.idle.lock() {
                // It holds the result: it goes once that is applied.
                worker.served = Served::Spent;
                idle.push(worker);
            }
        }
        self.returned.notify_waiters();
        if !replaced {
            return;
        }
        for _ in 0..count {
            let Ok(mut worker) = self.start().await else {
                return; // the next request starts one, and says why it cannot
            };
            let (pool, preload) = (Arc::clone(self), preload.clone());
            self.warming
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            // Each imports on its own: a large library takes seconds.
            tokio::spawn(async move {
                // An import that hangs costs this worker, not the requests.
                let imported =
                    tokio::time::timeout(WARMING_WAIT, worker.channel.exchange(&preload, &[]))
                        .await;
                if !matches!(imported, Ok(Ok(_))) {
                    worker.channel.kill();
                    pool.died(worker.serial);
                } else if let Ok(mut idle) = pool.idle.lock() {
                    worker.idle_since = Instant::now();
                    idle.push(worker);
                }
                // Idle (or gone) before it counts as warm no more.
                pool.warming
                    .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
                pool.returned.notify_waiters();
            });
        }
    }

    /// A worker for a request of `op` (see `idle_for`), once one is
    /// idle if some are importing libraries ahead (for at most
    /// [`WARMING_WAIT`]: an import may hang), else a new one.
    async fn fresh_or_same(
        &self,
        op: Option<&Arc<str>>,
        cancel: &CancellationToken,
    ) -> Result<Worker, WorkerError> {
        let deadline = tokio::time::Instant::now() + WARMING_WAIT;
        loop {
            let returned = self.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            if let Some(worker) = self.idle_for(op) {
                return Ok(worker);
            }
            if self.warming.load(std::sync::atomic::Ordering::Acquire) == 0
                || tokio::time::Instant::now() >= deadline
            {
                return self.start().await;
            }
            tokio::select! {
                () = returned => {}
                () = tokio::time::sleep_until(deadline) => {}
                () = cancel.cancelled() => return Err(WorkerError::Cancelled),
            }
        }
    }

    /// An idle worker for a request of `op`: one that served it (its
    /// imports loaded), else a fresh one. An idle worker that served
    /// another operation and holds nothing it has not been told to
    /// forget is stopped, so that a fresh process takes its place.
    fn idle_for(&self, op: Option<&Arc<str>>) -> Option<Worker> {
        let forgets = self.forgets.lock().map(|f| f.clone()).unwrap_or_default();
        let mut idle = self.idle.lock().ok()?;
        let same =
            |w: &Worker| matches!((&w.served, op), (Served::Operation(o), Some(op)) if o == op);
        let at = idle
            .iter()
            .position(same)
            .or_else(|| idle.iter().position(|w| w.served == Served::Nothing));
        if let Some(at) = at {
            return Some(idle.swap_remove(at));
        }
        // One that serves no operation any more, else one between two
        // iterations of another operation (which takes a fresh one next).
        let stale = idle
            .iter()
            .position(|w| w.served == Served::Spent && w.needed_by_none(&forgets))
            .or_else(|| idle.iter().position(|w| w.needed_by_none(&forgets)));
        if let Some(at) = stale {
            let mut worker = idle.swap_remove(at);
            drop(idle);
            worker.channel.kill();
            self.died(worker.serial);
        }
        None
    }

    async fn start(&self) -> Result<Worker, WorkerError> {
        let channel = self.spawner.start(&self.config).await?;
        let serial = self
            .next_serial
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut alive) = self.alive.lock() {
            alive.insert(serial);
        }
        Ok(Worker {
            serial,
            channel,
            served: Served::Nothing,
            holding: HashSet::new(),
            idle_since: Instant::now(),
        })
    }
}

/// The pool's thread that lets lingering workers go, while it lives.
fn let_go_idle(pool: &Weak<WorkerPool>, linger: Duration) {
    let every = (linger / 2).max(Duration::from_millis(100));
    loop {
        std::thread::sleep(every);
        match pool.upgrade() {
            Some(pool) => pool.let_go_of_idle(linger),
            None => return,
        }
    }
}

#[async_trait]
impl WorkerSpawner for LocalProcesses {
    async fn start(&self, config: &WorkerConfig) -> Result<Box<dyn WorkerChannel>, WorkerError> {
        let mut path: Vec<OsString> = config
            .python_path
            .iter()
            .map(|p| p.clone().into_os_string())
            .collect();
        if let Some(existing) = std::env::var_os("PYTHONPATH") {
            path.push(existing);
        }
        let (stderr, log) = match &config.logs {
            Some(logs) => match WorkerLog::create(logs) {
                Ok((file, path)) => (Stdio::from(file), Some(path)),
                // Lost rather than shown in whatever cell runs.
                Err(_) => (Stdio::null(), None),
            },
            None => (Stdio::inherit(), None),
        };
        let mut command = Command::new(&config.python);
        command
            .args(["-u", "-m", "pragma_notebook.worker"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            // Signals to the kernel's process group (an interrupt, a
            // shutdown) stop the kernel's cell, not the background.
            .process_group(0)
            .kill_on_drop(true);
        if !path.is_empty() {
            command.env("PYTHONPATH", std::env::join_paths(path).unwrap_or_default());
        }
        // So that a worker that ends with nothing in its log removes it.
        if let Some(dir) = log.as_deref().and_then(std::path::Path::parent) {
            command.env("PRAGMA_WORKER_LOGS", dir);
        }
        let mut child = command.spawn().map_err(|source| WorkerError::Start {
            python: config.python.display().to_string(),
            source,
        })?;
        let log = log.map(|path| WorkerLog::named_for(path, child.id()));
        let (Some(input), Some(output)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(WorkerError::Died("its pipes could not be opened".into()));
        };
        Ok(Box::new(ProcessChannel {
            child,
            input,
            output,
            log,
        }))
    }

    fn linger(&self) -> Option<Duration> {
        None
    }
}

#[async_trait]
impl WorkerChannel for ProcessChannel {
    async fn exchange(
        &mut self,
        header: &Value,
        blobs: &[&[u8]],
    ) -> std::io::Result<(Value, Vec<Vec<u8>>)> {
        exchange(self, header, blobs).await
    }

    fn kill(&mut self) {
        let _ = self.child.start_kill();
    }

    async fn ended(&mut self) -> Option<String> {
        let status = self.child.wait().await.ok()?.to_string();
        // Its last words (a traceback's last line) are in its log, not
        // in the kernel's output.
        match self.log.as_deref().and_then(WorkerLog::last_line) {
            Some(line) => Some(format!("{status}; its last output: {line}")),
            None => Some(status),
        }
    }
}

/// The file of a worker's output outside its runs.
struct WorkerLog;

impl WorkerLog {
    /// A new log file under `logs/workers/`, named for now by this
    /// process and a count (the worker's id is known once it runs).
    fn create(logs: &std::path::Path) -> std::io::Result<(std::fs::File, PathBuf)> {
        static STARTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = logs.join("workers");
        std::fs::create_dir_all(&dir)?;
        let count = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.join(format!("{}-starting-{count}.err", std::process::id()));
        let file = std::fs::File::create(&path)?;
        Ok((file, path))
    }

    /// The log `path` renamed for the worker `pid` (`KERNEL-WORKER.err`),
    /// if it can be.
    fn named_for(path: PathBuf, pid: Option<u32>) -> PathBuf {
        let Some(pid) = pid else { return path };
        let named = path.with_file_name(format!("{}-{pid}.err", std::process::id()));
        match std::fs::rename(&path, &named) {
            Ok(()) => named,
            Err(_) => path,
        }
    }

    /// The last line of the log that has text, shortened.
    fn last_line(path: &std::path::Path) -> Option<String> {
        const MOST: usize = 300;
        let text = std::fs::read(path).ok()?;
        let tail = &text[text.len().saturating_sub(4 * MOST)..];
        let tail = String::from_utf8_lossy(tail);
        let line = tail.lines().rev().map(str::trim).find(|l| !l.is_empty())?;
        Some(match line.char_indices().nth(MOST) {
            Some((at, _)) => format!("{}…", &line[..at]),
            None => line.to_owned(),
        })
    }
}

/// One request and its answer.
async fn exchange(
    worker: &mut ProcessChannel,
    header: &Value,
    blobs: &[&[u8]],
) -> std::io::Result<(Value, Vec<Vec<u8>>)> {
    let header = serde_json::to_vec(header)?;
    let mut message =
        Vec::with_capacity(header.len() + 4 + blobs.iter().map(|b| b.len() + 4).sum::<usize>());
    for frame in std::iter::once(header.as_slice()).chain(blobs.iter().copied()) {
        let length = u32::try_from(frame.len())
            .map_err(|_| std::io::Error::other("a variable of 4 GiB or more cannot travel"))?;
        message.extend_from_slice(&length.to_be_bytes());
        message.extend_from_slice(frame);
    }
    worker.input.write_all(&message).await?;
    worker.input.flush().await?;
    let answer: Value = serde_json::from_slice(&read_frame(&mut worker.output).await?)?;
    let count = answer["vars"].as_array().map_or(0, Vec::len);
    let mut blobs = Vec::with_capacity(count);
    if answer["ok"] == true {
        for _ in 0..count {
            blobs.push(read_frame(&mut worker.output).await?);
        }
    }
    Ok((answer, blobs))
}

async fn read_frame(output: &mut ChildStdout) -> std::io::Result<Vec<u8>> {
    let mut length = [0u8; 4];
    output.read_exact(&mut length).await?;
    let mut frame = vec![0u8; u32::from_be_bytes(length) as usize];
    output.read_exact(&mut frame).await?;
    Ok(frame)
}
