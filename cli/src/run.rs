//! `pragma run CELL --state DIR`: run a shell cell in the background and
//! wait for it, resuming an interrupted run of the same cell and state.
//! `pragma submit` runs the same thing detached (see `control`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pragma_executor_local::{
    Config, Event, ExecError, ExecutionBackend, Executor, Handle, Outcome, Status,
};
use pragma_executor_slurm::SlurmBackend;
use pragma_parse::{Directive, ParsedCell};
use pragma_session::{Running, SessionError, StartRequest, StoreSpec, Ticket};
use tokio::signal::unix::{SignalKind, signal};

use crate::args::{Backend, RunArgs, settle};
use crate::ending::{announce, exit_code, print_summary};
use crate::failure::{Exit, Failure, exit};
use crate::live::{DirLive, FileDigest};
use crate::location::{Location, ShellExecutor, ShellSession};
use crate::progress::Progress;
use crate::reaper::Reaper;
use crate::shell::{DirState, ShellHost};

/// Runs the command; returns the exit code.
pub(crate) fn run(args: &RunArgs) -> Exit {
    if args.detached {
        // A session of its own: the terminal's hangup and Ctrl-C do not
        // reach a detached run.
        let _ = rustix::process::setsid();
    }
    // One thread: the work is in the bodies' own processes, and handing
    // each iteration's steps between threads cost more than they took.
    // Blocking work (copies, archives, files) goes to the blocking pool.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::failed(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(run_async(args))
}

/// The cell `args` names, parsed (once, here), once the state is a
/// directory; otherwise why not, the problem reported.
pub(crate) fn checked_cell(args: &RunArgs) -> Result<ParsedCell, Failure> {
    let name = args.cell.display().to_string();
    let text = crate::check::read_cell(&args.cell)
        .map_err(|message| Failure::usage(format!("cannot read cell `{name}`: {message}")))?;
    let cell = match ParsedCell::parse(text.as_str()) {
        Ok(cell) => cell,
        Err(error) => {
            err!("{}", error.render(&text, &name));
            return Err(Failure::reported(exit::USAGE));
        }
    };
    if let Some(var) = cell.directive().iteration_var()
        && let Some(why) = reserved_var(var)
    {
        return Err(Failure::usage(format!(
            "`--iteration-var {var}` in `{name}`: {why}; choose another name, such as `iteration`"
        )));
    }
    if !args.state.is_dir() {
        return Err(Failure::usage(format!(
            "the state `{}` is not a directory; create it, or point --state at the directory whose files the cell works on",
            args.state.display()
        )));
    }
    refuse_store_inside_state(args)?;
    if args.backend == crate::args::Backend::Local
        && (args.partition.is_some() || !args.sbatch_args.is_empty())
    {
        return Err(Failure::usage(
            "--partition and --sbatch-arg are for --backend slurm: add `--backend slurm`, or drop them to run here",
        ));
    }
    Ok(cell)
}

/// Why a shell body cannot have `var` as its iteration variable (it is an
/// environment variable), if it cannot.
fn reserved_var(var: &str) -> Option<&'static str> {
    match var {
        "PRAGMA_SEED" | "PRAGMA_OP_ID" | "PRAGMA_RUNNER" => {
            Some("pragma sets that variable for every body itself")
        }
        "PATH" | "IFS" | "HOME" | "PWD" | "OLDPWD" | "SHELL" | "ENV" | "CDPATH" | "PS4" => {
            Some("the body's shell needs that variable; the iteration number would replace it")
        }
        _ => None,
    }
}

/// A store inside the state would be copied into every iteration's state,
/// and its files taken for variables: refused before anything is written.
fn refuse_store_inside_state(args: &RunArgs) -> Result<(), Failure> {
    // An S3 store keeps its local files in `.pragma/` here.
    let local = match &args.store {
        StoreSpec::Directory(dir) => dir.clone(),
        _ => PathBuf::from(".pragma"),
    };
    let (Some(store), Ok(state)) = (resolved(&local), std::fs::canonicalize(&args.state)) else {
        return Ok(());
    };
    if store.starts_with(&state) {
        return Err(Failure::usage(format!(
            "the store `{}` would be inside the state `{}`, whose files are the cell's variables; \
             keep it outside: pass --store with a directory outside the state (the default \
             `.pragma` is in the current directory, so run pragma from outside the state)",
            args.store,
            args.state.display()
        )));
    }
    Ok(())
}

/// `path` made absolute, with symlinks and `..` resolved as far as it
/// exists.
fn resolved(path: &Path) -> Option<std::path::PathBuf> {
    let absolute = std::path::absolute(path).ok()?;
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    while std::fs::symlink_metadata(existing).is_err() {
        rest.push(existing.file_name()?.to_owned());
        existing = existing.parent()?;
    }
    let mut resolved = std::fs::canonicalize(existing).ok()?;
    for part in rest.iter().rev() {
        resolved.push(part);
    }
    Some(resolved)
}

/// The shell host on `location`, with the companion that stops its bodies
/// if this process is killed.
pub(crate) fn host(location: &Location) -> Result<ShellHost, Failure> {
    let host = location.host().map_err(Failure::usage)?;
    Ok(match Reaper::start() {
        Ok(reaper) => host.with_reaper(reaper),
        Err(e) => {
            errln!("warning: cannot start the process that stops bodies if pragma is killed: {e}");
            host
        }
    })
}

/// The executor's configuration for `args`.
pub(crate) fn config(args: &RunArgs) -> Config {
    let config = Config::default();
    let workers = args.workers.unwrap_or(config.workers).max(1);
    config
        .workers(workers)
        .retries(args.retries)
        // A shell iteration costs milliseconds: recording finished ones a
        // few times a second is cheap, and a crash re-runs little.
        .record_interval(std::time::Duration::from_millis(100))
}

/// Runs the checked cell to its end: a repeat cell on SLURM as one job,
/// anything else started (or extended) here, followed, then applied and
/// reported.
async fn run_async(args: &RunArgs) -> Exit {
    let cell = checked_cell(args)?;
    let directive = cell.directive().clone();
    let location = Location::open(&args.store).map_err(Failure::usage)?;
    let host = host(&location)?;
    let config = config(args);
    let slurm = slurm_backend(args, &location, &directive, config.workers)?;
    if let (Some(backend), Directive::Repeat(_)) = (&slurm, &directive) {
        if args.extend.is_some() {
            return Err(Failure::usage(
                "--extend of a repeat runs here, not as a SLURM job: leave out --backend slurm",
            ));
        }
        let session = location.session(location.executor(host.clone(), config));
        return crate::slurm::run_repeat(args, &cell, &location, backend, (&host, &session)).await;
    }
    let session = location.session(executor_on(&location, &host, config, slurm.as_ref()));
    let live = DirLive::new(&args.state, host);
    let request = StartRequest::new(cell, args.cell.display().to_string())
        .fresh(args.fresh)
        .in_batch_job(args.slurm_job.clone());
    let running = start_or_extend(args, (&session, &location), &request, &live).await?;
    let op = running.ticket.op().to_owned();
    tell_started(args, &running, &op, &directive);
    let outcome = follow_to_end(args, &session, running.handle, slurm.as_ref(), &op).await?;
    apply_and_report(args, (&session, &location), running.ticket, outcome, &live).await
}

/// The SLURM backend `--backend slurm` asks for, or `None` to run here.
fn slurm_backend(
    args: &RunArgs,
    location: &Location,
    directive: &Directive,
    workers: u64,
) -> Result<Option<Arc<SlurmBackend>>, Failure> {
    match args.backend {
        Backend::Local => Ok(None),
        Backend::Slurm => crate::slurm::backend(args, location, directive, workers)
            .map(Some)
            .map_err(Failure::usage),
    }
}

/// Starts the operation (resuming an interrupted run of the same cell and
/// state), or with `--extend` extends the last run by more iterations;
/// a refusal says how the user goes on.
async fn start_or_extend(
    args: &RunArgs,
    (session, location): (&ShellSession, &Location),
    request: &StartRequest,
    live: &DirLive,
) -> Result<Running<DirState, FileDigest>, Failure> {
    match args.extend {
        None => session.start(request, live).await,
        Some(more) => {
            let op = session.last_run(request, live).ok_or_else(|| {
                Failure::usage(format!(
                    "no earlier run of `{}` on `{}` to extend: run it first, without --extend",
                    args.cell.display(),
                    args.state.display()
                ))
            })?;
            if !args.json && !args.detached {
                errln!("extending operation {op} by {more} iterations");
            }
            session.extend(&op, more, live).await
        }
    }
    .map_err(|e| start_failure(e, location))
}

/// Tells that operation `op` started: its warnings, whether it resumed,
/// and its id.
fn tell_started(
    args: &RunArgs,
    running: &Running<DirState, FileDigest>,
    op: &str,
    directive: &Directive,
) {
    for warning in &running.warnings {
        errln!("warning: {warning}");
    }
    if running.resumed && args.extend.is_none() && !args.json && !args.detached {
        errln!("resuming operation {op} from its last checkpoint (--fresh starts over)");
    }
    announce(args, op, directive);
}

/// Follows operation `op` to its end, its progress shown; on SLURM, then
/// cancels the array's tasks that were never asked for.
async fn follow_to_end(
    args: &RunArgs,
    session: &ShellSession,
    handle: Handle<DirState>,
    slurm: Option<&Arc<SlurmBackend>>,
    op: &str,
) -> Result<Outcome<DirState>, Failure> {
    let progress = Progress::new(args.json || args.detached);
    let outcome = follow(
        session,
        handle,
        &progress,
        args.json && !args.detached,
        Duration::from_secs_f64(args.grace),
    )
    .await;
    progress.finish();
    if let Some(backend) = slurm {
        // Tasks of the array that were never asked for (a cancel, a
        // failure) must not go on running.
        if let Err(e) = backend.cancel(op).await {
            errln!("warning: cannot cancel the SLURM jobs of {op}: {e}");
        }
    }
    outcome.map_err(exec_failure)
}

/// The executor on `location`: its iterations on SLURM with `slurm`, or
/// here.
fn executor_on(
    location: &Location,
    host: &ShellHost,
    config: Config,
    slurm: Option<&Arc<SlurmBackend>>,
) -> ShellExecutor {
    match slurm {
        None => location.executor(host.clone(), config),
        Some(backend) => Executor::with_backend(
            host.clone(),
            location.checkpoints.clone(),
            Arc::clone(backend) as Arc<dyn ExecutionBackend>,
            config,
        ),
    }
}

/// Applies the outcome of a followed run to the state directory (conflicts
/// as `--on-conflict` says) and reports it; a signal meanwhile stops the
/// apply before its next file, the state as it was and the result kept
/// for `pragma apply`.
async fn apply_and_report(
    args: &RunArgs,
    (session, location): (&ShellSession, &Location),
    ticket: Ticket<FileDigest>,
    outcome: Outcome<DirState>,
    live: &DirLive,
) -> Exit {
    let op = ticket.op().to_owned();
    let stop = live.stop_flag();
    let watch = tokio::spawn(async move {
        stop_signal().await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let summary = session
        .finish(ticket, outcome, live, &settle(args.on_conflict))
        .await;
    watch.abort();
    if live.stop_flag().load(std::sync::atomic::Ordering::Relaxed)
        && let Some(error) = &summary.apply_error
    {
        errln!("error: {error}");
        errln!(
            "stopped by a signal: the result is kept; `pragma apply {op}{}` applies it",
            location.store_flag()
        );
        return Ok(exit::CANCELLED);
    }
    for warning in &summary.warnings {
        errln!("warning: {warning}");
    }
    if !args.detached {
        print_summary(&summary, location, args.json);
    }
    Ok(exit_code(&summary))
}

/// Why a start was refused, with how the user goes on.
pub(crate) fn start_failure(error: SessionError, location: &Location) -> Failure {
    match &error {
        SessionError::AlreadyRunning { op, reachable, .. } => {
            let store = location.store_flag();
            Failure::usage(format!(
                "{error}; `pragma wait {op}{store}` follows it and `pragma cancel {op}{store}` stops it{}",
                if *reachable {
                    ""
                } else {
                    " (`pragma cancel --forget` if that machine is gone for good)"
                }
            ))
        }
        SessionError::Exec(
            ExecError::Directive(_) | ExecError::Unsaveable(_) | ExecError::NotExtendable { .. },
        )
        | SessionError::LiveState { .. } => Failure::usage(error),
        _ => Failure::failed(error),
    }
}

fn exec_failure(error: ExecError) -> Failure {
    match error {
        ExecError::Directive(_) | ExecError::Unsaveable(_) => Failure::usage(error),
        _ => Failure::failed(error),
    }
}

/// The first of Ctrl-C, SIGTERM and a hangup.
async fn stop_signal() {
    let (terminate, hangup) = (
        signal(SignalKind::terminate()).ok(),
        signal(SignalKind::hangup()).ok(),
    );
    match (terminate, hangup) {
        (Some(mut terminate), Some(mut hangup)) => tokio::select! {
            _ = terminate.recv() => {},
            _ = hangup.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        },
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// What the command shows of a followed operation: its progress line, and
/// with `--json` each event as a JSON line on standard output.
struct Shown<'a> {
    progress: &'a Progress,
    json: bool,
}

impl pragma_session::FollowObserver for Shown<'_> {
    fn event(&mut self, event: &Event, status: &Status) {
        // The final line is the command's own summary.
        if self.json && !matches!(event, Event::Finished { .. }) {
            outln!("{}", serde_json::to_string(event).unwrap_or_default());
        }
        self.progress.event(event, status);
    }

    fn tick(&mut self, status: &Status) {
        self.progress.update(status);
    }
}

/// Follows the operation to its end as every host does (its events kept
/// in the store). Ctrl-C, SIGINT (`pragma cancel`) and a hangup cancel it;
/// SIGTERM is a preemption notice (the machine is going: a cloud's,
/// Kubernetes', SLURM's `--signal`): it suspends the operation, the
/// iterations running given `grace` to finish.
async fn follow(
    session: &ShellSession,
    handle: Handle<DirState>,
    progress: &Progress,
    json: bool,
    grace: Duration,
) -> Result<Outcome<DirState>, ExecError> {
    let observer = handle.observer();
    let stop_on_signal = async {
        let mut terminate = signal(SignalKind::terminate()).ok();
        let mut hangup = signal(SignalKind::hangup()).ok();
        let notice = async {
            match terminate.as_mut() {
                Some(terminate) => terminate.recv().await,
                None => std::future::pending().await,
            }
        };
        let hung_up = async {
            match hangup.as_mut() {
                Some(hangup) => hangup.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                progress.say("cancelling: workers stop, the last checkpoint stays; run again to resume");
                observer.cancel();
            }
            _ = hung_up => {
                progress.say("cancelling (hung up): workers stop, the last checkpoint stays");
                observer.cancel();
            }
            _ = notice => {
                progress.say(&format!(
                    "suspending (a preemption notice, SIGTERM): no iteration starts; those running \
                     have {} s to finish, then what finished is checkpointed",
                    grace.as_secs_f64()
                ));
                observer.suspend(grace);
            }
        }
        // Once is enough: the operation ends at its last checkpoint.
        std::future::pending::<()>().await;
    };
    let mut shown = Shown { progress, json };
    tokio::select! {
        outcome = session.follow(handle, &mut shown) => outcome,
        () = stop_on_signal => unreachable!("it never ends"),
    }
}
