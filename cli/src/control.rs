//! `pragma submit`, `wait`, `cancel` and `apply`: operations that run
//! detached from the shell that started them.
//!
//! `submit` starts `pragma run --detached` in a session of its own and
//! returns once it prints the operation id. The detached run keeps its
//! events, outcome and unapplied result under `ops/OP/` (see `records`),
//! which is all the other commands read; `cancel` signals the run's
//! process, which stops as Ctrl-C stops a run in the foreground.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use pragma_executor_local::Event;

use crate::exit;
use crate::location::Location;
use crate::progress::event_line;
use crate::records::{RunRecord, check_op};
use crate::run::{OnConflict, RunArgs, exit_code, print_summary, usage_error};

/// Arguments of `pragma wait`.
#[derive(Args)]
pub(crate) struct WaitArgs {
    /// The operation (as `pragma submit` printed it).
    op: String,
    /// The store the operation is in.
    #[arg(long, default_value = ".pragma")]
    store: String,
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
    store: String,
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
    store: String,
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

/// Quotes `text` for a shell command line the user may copy.
pub(crate) fn quoted(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// `--store X` when X is not the default, for suggested commands.
fn store_flag(location: &Location) -> String {
    if location.shown == ".pragma" {
        String::new()
    } else {
        format!(" --store {}", quoted(&location.shown))
    }
}

/// `pragma submit`: starts the run detached and prints its id.
pub(crate) fn submit(args: &RunArgs) -> u8 {
    // Problems with the cell or the flags show here, not in a log.
    if let Err(code) = crate::run::checked_cell(args) {
        return code;
    }
    let location = match Location::open(&args.store) {
        Ok(location) => location,
        Err(message) => return usage_error(message),
    };
    let log_path = location.local.join("submitted.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path);
    let (log, log_start) = match log.and_then(|f| f.metadata().map(|m| (f, m.len()))) {
        Ok(pair) => pair,
        Err(e) => return usage_error(format!("cannot write `{}`: {e}", log_path.display())),
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return usage_error(format!("cannot find the pragma executable: {e}")),
    };
    let mut command = Command::new(exe);
    command
        .arg("run")
        .arg(&args.cell)
        .arg("--state")
        .arg(&args.state)
        .args(["--store", &args.store])
        .args(["--retries", &args.retries.to_string()])
        .arg("--detached")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    if let Some(workers) = args.workers {
        command.args(["--workers", &workers.to_string()]);
    }
    if args.fresh {
        command.arg("--fresh");
    }
    if args.backend == crate::run::Backend::Slurm {
        command.args(["--backend", "slurm"]);
    }
    if let Some(partition) = &args.partition {
        command.args(["--partition", partition]);
    }
    for arg in &args.sbatch_args {
        command.arg(format!("--sbatch-arg={arg}"));
    }
    if let Some(rule) = args.on_conflict {
        command.args([
            "--on-conflict",
            match rule {
                OnConflict::TakeBackground => "take-background",
                OnConflict::KeepLive => "keep-live",
            },
        ]);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return usage_error(format!("cannot start the background run: {e}")),
    };
    let mut line = String::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = BufReader::new(stdout).read_line(&mut line);
    }
    let op = line.trim();
    if !op.is_empty() {
        // The run goes on in its own session; this process is done.
        if args.json {
            println!("{}", serde_json::json!({ "event": "submitted", "op": op }));
        } else {
            println!("{op}");
            let store = store_flag(&location);
            eprintln!(
                "submitted: `pragma wait {op}{store}` follows it, `pragma status {op}{store}` shows it, `pragma cancel {op}{store}` stops it"
            );
        }
        return exit::OK;
    }
    // It stopped before submitting: show why.
    let code = child
        .wait()
        .ok()
        .and_then(|s| s.code())
        .and_then(|c| u8::try_from(c).ok())
        .unwrap_or(exit::FAILED);
    let mut why = String::new();
    if let Ok(mut file) = std::fs::File::open(&log_path)
        && file.seek(SeekFrom::Start(log_start)).is_ok()
    {
        let _ = file.read_to_string(&mut why);
    }
    eprint!("{why}");
    eprintln!("error: the background run stopped before it started the operation");
    if code == exit::OK { exit::FAILED } else { code }
}

/// Opens the location and the record of `op`.
fn open(op: &str, store: &str) -> Result<(Location, RunRecord), u8> {
    check_op(op).map_err(usage_error)?;
    let location = Location::existing(store).map_err(usage_error)?;
    match location.read_run(op) {
        Some(record) => Ok((location, record)),
        None => Err(usage_error(format!(
            "the store `{store}` has no run of operation `{op}` (`pragma status{}` lists them)",
            store_flag(&location)
        ))),
    }
}

/// How to go on with an operation that is neither running nor ended.
fn resume_hint(record: &RunRecord) -> String {
    format!(
        "`pragma run {} --state {}` (or `pragma submit` with the same arguments) resumes it from its last checkpoint",
        quoted(&record.cell.display().to_string()),
        quoted(&record.state.display().to_string())
    )
}

/// `pragma wait OP`: follows a run to its end; exits as `run` would have.
pub(crate) fn wait(args: &WaitArgs) -> u8 {
    let (location, record) = match open(&args.op, &args.store) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let mut events = EventTail::new(location.events_path(&args.op));
    loop {
        // Read the outcome before the liveness check: a run writes its
        // outcome before it exits.
        let outcome = location.read_outcome(&args.op);
        let runner = location.read_run(&args.op).and_then(|r| r.runner);
        let running = runner.as_ref().is_some_and(|r| r.alive());
        events.print_new(args.json);
        if let Some(outcome) = outcome.filter(|_| !running) {
            print_summary(&outcome, &location, args.json);
            return exit_code(&outcome);
        }
        if !running && location.read_outcome(&args.op).is_none() {
            eprintln!(
                "error: operation {} is not running and has not ended: its run was stopped (killed or crashed); {}",
                args.op,
                resume_hint(&record)
            );
            return exit::FAILED;
        }
        // A SLURM job is asked after through slurmctld: not too often.
        let slurm = runner.is_some_and(|r| r.slurm_job.is_some());
        std::thread::sleep(Duration::from_millis(if slurm { 1000 } else { 100 }));
    }
}

/// `pragma cancel OP`: stops a running operation; its last checkpoint
/// stays, and running the same cell and state again resumes it.
pub(crate) fn cancel(args: &CancelArgs) -> u8 {
    let (location, record) = match open(&args.op, &args.store) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    if args.forget {
        let mut record = record;
        let forgotten = record.runner.take();
        if let Err(e) = location.write_run(&record) {
            return usage_error(format!("cannot update the record of {}: {e}", args.op));
        }
        match forgotten {
            Some(runner) => println!(
                "forgot {} as the runner of operation {}; {}",
                runner.describe(),
                args.op,
                resume_hint(&record)
            ),
            None => println!("operation {} had no runner on record", args.op),
        }
        return exit::OK;
    }
    let Some(runner) = record.runner.clone().filter(|r| r.alive()) else {
        // Its coordinator is gone (killed), but SLURM may still run its
        // tasks: they are stopped as the coordinator would have.
        if location.local.join("slurm").join(&args.op).is_dir() {
            match cancel_orphaned_jobs(&args.op) {
                Ok(0) => {}
                Ok(jobs) => eprintln!(
                    "cancelled {jobs} SLURM job(s) of operation {} that ran without their coordinator",
                    args.op
                ),
                Err(message) => return usage_error(message),
            }
        }
        match location.read_outcome(&args.op) {
            Some(outcome) => println!(
                "operation {} is not running: it ended {}",
                args.op,
                outcome["status"].as_str().unwrap_or("?")
            ),
            None => println!(
                "operation {} is not running; its last checkpoint stays, and {}",
                args.op,
                resume_hint(&record)
            ),
        }
        return exit::OK;
    };
    if let Some(job) = &runner.slurm_job {
        // The job may run on any node, or wait to start again: SLURM
        // stops it wherever it is, with the SIGTERM a cancel sends.
        let cancelled = Command::new("scancel").arg(job).output();
        match cancelled {
            Ok(output) if output.status.success() => {}
            Ok(output) => {
                return usage_error(format!(
                    "scancel {job} (operation {}): {}",
                    args.op,
                    String::from_utf8_lossy(&output.stderr).trim()
                ));
            }
            Err(e) => return usage_error(format!("cannot run scancel {job}: {e}")),
        }
    } else if !runner.here() {
        return usage_error(format!(
            "operation {} runs in {}; run `pragma cancel {0}` there (if that machine is gone \
             for good, `pragma cancel {0} --forget` lets `pragma run` resume it here)",
            args.op,
            runner.describe()
        ));
    } else {
        let signalled = i32::try_from(runner.pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .map(|pid| rustix::process::kill_process(pid, rustix::process::Signal::TERM));
        match signalled {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                return usage_error(format!(
                    "cannot signal process {} running operation {}: {e}",
                    runner.pid, args.op
                ));
            }
            None => return usage_error(format!("process id {} is out of range", runner.pid)),
        }
    }
    eprintln!(
        "cancelling operation {} ({}): workers stop, the last checkpoint stays",
        args.op,
        runner.describe()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while runner.alive() {
        if Instant::now() > deadline {
            eprintln!(
                "warning: {} has not stopped after a minute; it may still be stopping its workers",
                runner.describe()
            );
            return exit::FAILED;
        }
        std::thread::sleep(Duration::from_millis(if runner.slurm_job.is_some() {
            250
        } else {
            50
        }));
    }
    match location.read_outcome(&args.op) {
        Some(outcome) if outcome["status"] != "cancelled" => println!(
            "operation {} ended {} before the cancel reached it",
            args.op,
            outcome["status"].as_str().unwrap_or("?")
        ),
        _ => println!("cancelled: {}", resume_hint(&record)),
    }
    exit::OK
}

/// Cancels the SLURM jobs of `op` still in the queue; how many there were.
fn cancel_orphaned_jobs(op: &str) -> Result<usize, String> {
    let name = pragma_executor_slurm::job_name(op);
    let listed = Command::new("squeue")
        .args(["-h", "-r", "-o", "%i", "--name", &name])
        .output();
    let jobs = match listed {
        Ok(output) if output.status.success() => {
            String::from_utf8_lossy(&output.stdout).lines().count()
        }
        Ok(output) => {
            return Err(format!(
                "squeue --name {name}: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        // No SLURM here: nothing of it to cancel from this machine.
        Err(_) => return Ok(0),
    };
    if jobs > 0 {
        let cancelled = Command::new("scancel").args(["--name", &name]).output();
        match cancelled {
            Ok(output) if output.status.success() => {}
            Ok(output) => {
                return Err(format!(
                    "scancel --name {name}: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                ));
            }
            Err(e) => return Err(format!("cannot run scancel: {e}")),
        }
    }
    Ok(jobs)
}

/// `pragma apply OP`: applies a finished operation's result to its live
/// state directory, settling conflicts as asked.
pub(crate) fn apply(args: &ApplyArgs) -> u8 {
    let (location, record) = match open(&args.op, &args.store) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let Some(mut outcome) = location.read_outcome(&args.op) else {
        let running = record.runner.as_ref().is_some_and(|r| r.alive());
        return usage_error(if running {
            format!(
                "operation {} is still running; `pragma wait {0}{}` waits for it",
                args.op,
                store_flag(&location)
            )
        } else {
            format!(
                "operation {} has not ended, so it has no result yet; {}",
                args.op,
                resume_hint(&record)
            )
        });
    };
    if outcome["status"] != "succeeded" {
        return usage_error(format!(
            "operation {} ended {}: there is no result to apply",
            args.op,
            outcome["status"].as_str().unwrap_or("?")
        ));
    }
    let result = location.result_dir(&args.op);
    if !result.is_dir() {
        println!(
            "operation {}'s result is already applied to `{}`",
            args.op,
            record.state.display()
        );
        return exit::OK;
    }
    let rule = match (args.take, args.keep_live) {
        (Some(Take::Background), _) => Some(OnConflict::TakeBackground),
        (None, true) => Some(OnConflict::KeepLive),
        (None, false) => None,
    };
    let left = match crate::run::apply(&record.state, &result, &record.submitted, rule) {
        Ok(left) => left,
        Err(e) => {
            eprintln!(
                "error: cannot apply the result to `{}`: {e}",
                record.state.display()
            );
            return exit::FAILED;
        }
    };
    outcome["conflicts"] = serde_json::json!(left);
    if let Some(object) = outcome.as_object_mut() {
        object.remove("apply_error");
    }
    if let Err(e) = location.write_outcome(&args.op, &outcome) {
        eprintln!("warning: cannot record what was applied: {e}");
    }
    if left.is_empty() {
        let _ = std::fs::remove_dir_all(&result);
        println!(
            "applied operation {}'s result to `{}`",
            args.op,
            record.state.display()
        );
        exit::OK
    } else {
        let store = store_flag(&location);
        println!(
            "conflicts: changed both by the run and in `{}` meanwhile, not applied: {}",
            record.state.display(),
            left.join(", ")
        );
        println!(
            "  settle them with `pragma apply {}{store} --take background` or `pragma apply {0}{store} --keep-live`",
            args.op
        );
        exit::CONFLICTS
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
        let mut out = std::io::stdout().lock();
        for line in whole.lines().filter(|l| !l.trim().is_empty()) {
            let Ok(event) = serde_json::from_str::<Event>(line) else {
                continue;
            };
            if matches!(event, Event::Finished { .. }) {
                continue;
            }
            if json {
                let _ = writeln!(out, "{line}");
            } else if let Some(text) = event_line(&event) {
                eprintln!("{text}");
            }
        }
    }
}
