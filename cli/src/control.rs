//! `pragma submit`, `wait`, `cancel` and `apply`: operations that run
//! detached from the shell that started them.
//!
//! `submit` starts `pragma run --detached` in a session of its own and
//! returns once it prints the operation id. The detached run keeps its
//! events, outcome and unapplied result under `ops/OP/` (see `records`),
//! which is all the other commands read; `cancel` signals the run's
//! process, which stops as Ctrl-C stops a run in the foreground.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use pragma_executor_local::{Config, Event, FinalStatus};
use pragma_session::{Applied, Records, RunRecord, SessionError, Settle, StoreSpec, check_op_id};

use crate::args::{OnConflict, RunArgs};

use crate::ending::{exit_code, print_summary};
use crate::failure::{Exit, Failure, exit};
use crate::live::{DirLive, FileDigest};
use crate::location::Location;
use crate::location::SlurmJobs;
use crate::progress::event_line;
use pragma_parse::quote;

/// Arguments of `pragma wait`.
#[derive(Args)]
pub(crate) struct WaitArgs {
    /// The operation (as `pragma submit` printed it).
    op: String,
    /// The store the operation is in.
    #[arg(long, default_value = ".pragma")]
    store: StoreSpec,
    /// Print events and the summary as JSON Lines.
    #[arg(long)]
    json: bool,
}

/// Arguments of `pragma cancel`.
#[derive(Args)]
pub(crate) struct CancelArgs {
    /// The operation.
    op: String,
    /// The store the operation is in.
    #[arg(long, default_value = ".pragma")]
    store: StoreSpec,
    /// Only forget the process recorded as running the operation, without
    /// signalling it: for a run on a machine that is gone for good. The
    /// next `pragma run` resumes the operation from its last checkpoint.
    #[arg(long)]
    forget: bool,
}

/// Arguments of `pragma apply`.
#[derive(Args)]
pub(crate) struct ApplyArgs {
    /// The operation.
    op: String,
    /// The store the operation is in.
    #[arg(long, default_value = ".pragma")]
    store: StoreSpec,
    /// Settle conflicts by taking the operation's version.
    #[arg(long, value_enum, conflicts_with = "keep_live")]
    take: Option<Take>,
    /// Settle conflicts by keeping the state directory's version.
    #[arg(long)]
    keep_live: bool,
}

/// What `--take` takes.
#[derive(Clone, Copy, ValueEnum)]
enum Take {
    /// The operation's result.
    Background,
}

/// `pragma submit`: starts the run detached and prints its id.
pub(crate) fn submit(args: &RunArgs) -> Exit {
    // Problems with the cell or the flags show here, not in a log.
    crate::run::checked_cell(args)?;
    let location = Location::open(&args.store).map_err(Failure::usage)?;
    let log_path = location.local.join("submitted.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path);
    let (log, log_start) = log
        .and_then(|f| f.metadata().map(|m| (f, m.len())))
        .map_err(|e| Failure::usage(format!("cannot write `{}`: {e}", log_path.display())))?;
    let (mut child, op) = start_detached(args, log)?;
    if op.is_empty() {
        return Err(stopped_before_start(&mut child, &log_path, log_start));
    }
    // The run goes on in its own session; this process is done.
    if args.json {
        outln!("{}", serde_json::json!({ "event": "submitted", "op": op }));
    } else {
        outln!("{op}");
        let store = location.store_flag();
        errln!(
            "submitted: `pragma wait {op}{store}` follows it, `pragma status {op}{store}` shows it, `pragma cancel {op}{store}` stops it"
        );
    }
    Ok(exit::OK)
}

/// Starts the detached run of `args`, its standard error into `log`; the
/// child and the operation id it printed (empty if it stopped before).
fn start_detached(
    args: &RunArgs,
    log: std::fs::File,
) -> Result<(std::process::Child, String), Failure> {
    let exe = std::env::current_exe()
        .map_err(|e| Failure::usage(format!("cannot find the pragma executable: {e}")))?;
    // The detached run gets the very arguments, typed, on its standard
    // input: nothing is rebuilt as a command line.
    let request = RunArgs {
        detached: true,
        ..args.clone()
    };
    let request = serde_json::to_vec(&request).map_err(Failure::failed)?;
    let mut command = Command::new(exe);
    command
        .arg("__run-detached")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log);
    let mut child = command
        .spawn()
        .map_err(|e| Failure::usage(format!("cannot start the background run: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A run that stopped before reading it says why in its log.
        let _ = std::io::Write::write_all(&mut stdin, &request);
    }
    let mut line = String::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = BufReader::new(stdout).read_line(&mut line);
    }
    Ok((child, line.trim().to_owned()))
}

/// A detached run that stopped before it submitted: what it wrote to its
/// log since `log_start` is shown, and its exit code kept.
fn stopped_before_start(
    child: &mut std::process::Child,
    log_path: &Path,
    log_start: u64,
) -> Failure {
    let code = child
        .wait()
        .ok()
        .and_then(|s| s.code())
        .and_then(|c| u8::try_from(c).ok())
        .unwrap_or(exit::FAILED);
    let mut why = String::new();
    if let Ok(mut file) = std::fs::File::open(log_path)
        && file.seek(SeekFrom::Start(log_start)).is_ok()
    {
        let _ = file.read_to_string(&mut why);
    }
    err!("{why}");
    errln!("error: the background run stopped before it started the operation");
    Failure::reported(if code == exit::OK { exit::FAILED } else { code })
}

/// The arguments `pragma submit` hands its detached run.
pub(crate) fn detached_request() -> Result<RunArgs, Failure> {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
        .map_err(|e| Failure::usage(format!("cannot read the run's arguments: {e}")))?;
    let args: RunArgs = serde_json::from_str(&text)
        .map_err(|e| Failure::usage(format!("the run's arguments: {e}")))?;
    Ok(RunArgs {
        detached: true,
        ..args
    })
}

/// Opens the location and the record of `op`.
fn open(op: &str, store: &StoreSpec) -> Result<(Location, RunRecord<FileDigest>), Failure> {
    check_op_id(op).map_err(|e| Failure::usage(format!("{e}, and `pragma status` lists them")))?;
    let location = Location::existing(store).map_err(Failure::usage)?;
    match location.records().try_run(op) {
        Ok(Some(record)) => Ok((location, record)),
        Ok(None) => Err(Failure::usage(format!(
            "the store `{store}` has no run of operation `{op}` (`pragma status{}` lists them)",
            location.store_flag()
        ))),
        Err(damaged) => Err(Failure::failed(format!(
            "the record of operation {op}, {damaged}; its checkpoints are in the store \
             (`pragma status {op}{}` shows them), and running its cell on its state again \
             starts a new operation",
            location.store_flag()
        ))),
    }
}

/// How to go on with an operation that is neither running nor ended.
fn resume_hint<D>(record: &RunRecord<D>) -> String {
    format!(
        "`pragma run {} --state {}` (or `pragma submit` with the same arguments) resumes it from its last checkpoint",
        quote(&record.cell),
        quote(&record.state)
    )
}

/// Whether the runner on record of `op` still runs.
fn running(records: &Records, op: &str) -> Option<pragma_session::Runner> {
    records
        .run::<serde::de::IgnoredAny>(op)
        .and_then(|record| record.runner)
        .filter(|runner| runner.alive(Some(&SlurmJobs)))
}

/// `pragma wait OP`: follows a run to its end; exits as `run` would have.
pub(crate) fn wait(args: &WaitArgs) -> Exit {
    let (location, record) = open(&args.op, &args.store)?;
    let records = location.records();
    let mut events = EventTail::new(records.events_path(&args.op));
    loop {
        // Read the outcome before the liveness check: a run writes its
        // outcome before it exits.
        let outcome = records.outcome(&args.op);
        let runner = running(&records, &args.op);
        events.print_new(args.json);
        if let Some(outcome) = outcome.filter(|_| runner.is_none()) {
            print_summary(&outcome, &location, args.json);
            return Ok(exit_code(&outcome));
        }
        if runner.is_none() && records.outcome(&args.op).is_none() {
            return Err(Failure::failed(format!(
                "operation {} is not running and has not ended: its run was stopped (killed or crashed); {}",
                args.op,
                resume_hint(&record)
            )));
        }
        // A SLURM job is asked after through slurmctld: not too often.
        let slurm = runner.is_some_and(|r| r.batch_job.is_some());
        std::thread::sleep(Duration::from_millis(if slurm { 1000 } else { 100 }));
    }
}

/// `pragma cancel OP`: stops a running operation; its last checkpoint
/// stays, and running the same cell and state again resumes it.
pub(crate) fn cancel(args: &CancelArgs) -> Exit {
    let (location, record) = open(&args.op, &args.store)?;
    if args.forget {
        return forget_runner(&location, &record);
    }
    let records = location.records();
    let Some(runner) = running(&records, &args.op) else {
        return not_running(&location, &record);
    };
    let described = runner.describe(Some(&SlurmJobs));
    stop(&runner, &args.op, &described)?;
    errln!(
        "cancelling operation {} ({described}): workers stop, the last checkpoint stays",
        args.op
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while runner.alive(Some(&SlurmJobs)) {
        if Instant::now() > deadline {
            errln!(
                "warning: {described} has not stopped after a minute; it may still be stopping its workers"
            );
            return Ok(exit::FAILED);
        }
        std::thread::sleep(Duration::from_millis(if runner.batch_job.is_some() {
            250
        } else {
            50
        }));
    }
    match records.outcome(&args.op) {
        Some(outcome) if outcome.status != FinalStatus::Cancelled => outln!(
            "operation {} ended {} before the cancel reached it",
            args.op,
            outcome.status.name()
        ),
        _ => outln!("cancelled: {}", resume_hint(&record)),
    }
    Ok(exit::OK)
}

/// `pragma cancel --forget`: drops the runner on record, without
/// signalling it.
fn forget_runner(location: &Location, record: &RunRecord<FileDigest>) -> Exit {
    match forget(location, &record.op)? {
        Some(runner) => outln!(
            "forgot {} as the runner of operation {}; {}",
            runner.describe(Some(&SlurmJobs)),
            record.op,
            resume_hint(record)
        ),
        None => outln!("operation {} had no runner on record", record.op),
    }
    Ok(exit::OK)
}

/// `pragma cancel` of an operation nothing runs: what SLURM still runs of
/// it is stopped, and the user told where it stands.
fn not_running(location: &Location, record: &RunRecord<FileDigest>) -> Exit {
    let op = &record.op;
    // Its coordinator is gone (killed), but SLURM may still run its tasks:
    // they are stopped as the coordinator would have.
    if location.local.join("slurm").join(op).is_dir() {
        match pragma_executor_slurm::cancel_jobs_of(op) {
            Ok(0) => {}
            Ok(jobs) => errln!(
                "cancelled {jobs} SLURM job(s) of operation {op} that ran without their coordinator"
            ),
            Err(e) => return Err(Failure::usage(e)),
        }
    }
    match location.records().outcome(op) {
        Some(outcome) => outln!(
            "operation {op} is not running: it ended {}",
            outcome.status.name()
        ),
        None => outln!(
            "operation {op} is not running; its last checkpoint stays, and {}",
            resume_hint(record)
        ),
    }
    Ok(exit::OK)
}

/// Asks `runner` to stop, as Ctrl-C stops a run: its SLURM job is
/// cancelled, its process here gets SIGINT.
fn stop(runner: &pragma_session::Runner, op: &str, described: &str) -> Result<(), Failure> {
    if let Some(job) = &runner.batch_job {
        // The job may run on any node, or wait to start again: SLURM stops
        // it wherever it is (its pragma gets SIGINT, as here).
        return pragma_executor_slurm::cancel_job(job)
            .map_err(|e| Failure::usage(format!("{e} (operation {op})")));
    }
    if !runner.here() {
        return Err(Failure::usage(format!(
            "operation {op} runs in {described}; run `pragma cancel {op}` there (if that machine is gone \
             for good, `pragma cancel {op} --forget` lets `pragma run` resume it here)"
        )));
    }
    let pid = i32::try_from(runner.pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| Failure::usage(format!("process id {} is out of range", runner.pid)))?;
    // The record names the process; it is signalled only if it is a pragma
    // runner, so a stale or edited record cannot make cancel kill another.
    if let Some(other) = not_pragma(runner.pid) {
        return Err(Failure::usage(format!(
            "process {} on record as running operation {op} is not pragma (it runs `{other}`): \
             its record is stale or was edited; `pragma cancel {op} --forget` drops it",
            runner.pid
        )));
    }
    // SIGINT, as Ctrl-C: a SIGTERM is a preemption notice, which suspends.
    rustix::process::kill_process(pid, rustix::process::Signal::INT).map_err(|e| {
        Failure::usage(format!(
            "cannot signal process {} running operation {op}: {e}",
            runner.pid
        ))
    })
}

/// What process `pid` runs, if it is not this pragma binary.
fn not_pragma(pid: u32) -> Option<String> {
    let theirs = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let ours = std::env::current_exe().ok()?;
    // A binary rebuilt since it started shows as `… (deleted)`.
    let name = |path: &std::path::Path| {
        path.file_name().map(|n| {
            n.to_string_lossy()
                .trim_end_matches(" (deleted)")
                .to_owned()
        })
    };
    (name(&theirs) != name(&ours)).then(|| theirs.display().to_string())
}

/// Forgets the runner on record of `op`.
fn forget(location: &Location, op: &str) -> Result<Option<pragma_session::Runner>, Failure> {
    with_session(location, async |session| session.forget_runner(op))?
        .map_err(|e| Failure::usage(format!("cannot update the record of {op}: {e}")))
}

/// Runs `work` on the lifecycle of `location`, in a runtime of its own.
fn with_session<T>(
    location: &Location,
    work: impl AsyncFnOnce(&crate::location::ShellSession) -> T,
) -> Result<T, Failure> {
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| Failure::failed(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async {
        let host = location.host().map_err(Failure::usage)?;
        let config = Config::default().workers(1);
        let session = location.session(location.executor(host, config));
        Ok(work(&session).await)
    })
}

/// `pragma apply OP`: applies a finished operation's result to its live
/// state directory, settling conflicts as asked.
pub(crate) fn apply(args: &ApplyArgs) -> Exit {
    let (location, record) = open(&args.op, &args.store)?;
    let rule = match (args.take, args.keep_live) {
        (Some(Take::Background), _) => Some(OnConflict::TakeBackground),
        (None, true) => Some(OnConflict::KeepLive),
        (None, false) => None,
    };
    let settle: Settle = crate::args::settle(rule);
    let state = std::path::PathBuf::from(&record.state);
    let applied = with_session(&location, async |session| {
        let live = DirLive::new(&state, session.executor().host().clone());
        session.apply_kept(&args.op, &live, &settle).await
    })?;
    let store = location.store_flag();
    let summary = match applied {
        Ok(Applied::Now(summary)) => summary,
        // `Applied::Already`, and what later versions may add.
        Ok(_) => {
            outln!(
                "operation {}'s result is already applied to `{}`",
                args.op,
                record.state
            );
            return Ok(exit::OK);
        }
        Err(SessionError::NotEnded { running: true, .. }) => {
            return Err(Failure::usage(format!(
                "operation {} is still running; `pragma wait {0}{store}` waits for it",
                args.op
            )));
        }
        Err(SessionError::NotEnded { running: false, .. }) => {
            return Err(Failure::usage(format!(
                "operation {} has not ended, so it has no result yet; {}",
                args.op,
                resume_hint(&record)
            )));
        }
        Err(e @ SessionError::Apply { .. }) => return Err(Failure::failed(e)),
        Err(e) => return Err(Failure::usage(e)),
    };
    if summary.conflicts.is_empty() {
        outln!(
            "applied operation {}'s result to `{}`",
            args.op,
            record.state
        );
        Ok(exit::OK)
    } else {
        crate::ending::print_conflicts(
            &summary.conflicts,
            &format!("`{}`", record.state),
            &args.op,
            &location,
        );
        Ok(exit::CONFLICTS)
    }
}

/// Prints the events a run appends to its log, as they come.
struct EventTail {
    path: PathBuf,
    offset: Option<u64>,
    partial: String,
}

impl EventTail {
    fn new(path: PathBuf) -> Self {
        // Start at the end: what happened before is in `pragma report`.
        let offset = std::fs::metadata(&path).ok().map(|m| m.len());
        EventTail {
            path,
            offset,
            partial: String::new(),
        }
    }

    fn print_new(&mut self, json: bool) {
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return;
        };
        let offset = *self.offset.get_or_insert(0);
        if file.seek(SeekFrom::Start(offset)).is_err() {
            return;
        }
        let mut text = String::new();
        let Ok(read) = file.read_to_string(&mut text) else {
            return;
        };
        self.offset = Some(offset + read as u64);
        self.partial.push_str(&text);
        // Only whole lines; a line being written waits for the next call.
        let Some(end) = self.partial.rfind('\n') else {
            return;
        };
        let whole: String = self.partial.drain(..=end).collect();
        for line in whole.lines().filter(|l| !l.trim().is_empty()) {
            let Ok(event) = serde_json::from_str::<Event>(line) else {
                continue;
            };
            if matches!(event, Event::Finished { .. }) {
                continue;
            }
            if json {
                outln!("{line}");
            } else if let Some(text) = event_line(&event) {
                errln!("{text}");
            }
        }
    }
}
