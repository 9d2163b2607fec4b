//! The `pragma` command: background cells from the shell.
//!
//! The binary stays thin: it parses flags, calls the libraries and maps
//! outcomes to exit codes. The behaviour lives in the workspace's crates:
//! the operation lifecycle (resume, one runner per operation, apply and
//! conflicts) in `pragma-session`, the execution in the executors.
//!
//! - `check`: `pragma check`;
//! - `args`: the flags of `run` and `submit`;
//! - `run`: `pragma run`, and the detached run behind `pragma submit`;
//! - `ending`: a run's announcement, summary and exit code;
//! - `failure`: the exit codes, and why a command stopped short;
//! - `control`: `submit`, `wait`, `cancel` and `apply`;
//! - `inspect`: `status`, `report` and `logs`;
//! - `shell`: the host for shell cells (state directories, `/bin/sh`);
//! - `capture`: a shell's output, streamed to its log with bounded memory;
//! - `live`: the state directory as the lifecycle sees it (digests, apply);
//! - `output`: all printing, which a closed pipe never turns into a panic;
//! - `location`: `--store` as a directory or an `s3://` URL;
//! - `progress`: the progress bar and lines;
//! - `reaper`: the companion that kills bodies when `pragma` is killed;
//! - `slurm`: `--backend slurm`, the task that runs an iteration there, and
//!   the job that runs a whole repeat operation.

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::failure::{Exit, Failure, exit};

#[macro_use]
mod output;
mod args;
mod capture;
mod check;
mod control;
mod ending;
mod failure;
mod inspect;
mod live;
mod location;
mod progress;
mod reaper;
mod run;
mod shell;
mod slurm;

/// Run notebook-style cells in the background: `#pragma repeat`, `#pragma parallel`, `#pragma async`.
#[derive(Parser)]
#[command(
    name = "pragma",
    version,
    after_help = "Exit codes: 0 succeeded, 1 failed (or stopped by a full store; run again to resume), \
                  2 usage error, unreadable cell or invalid directive, \
                  3 conflicts left unapplied, 4 interrupted by interactive input, \
                  75 suspended by a preemption notice (SIGTERM; run again to resume), \
                  130 cancelled (Ctrl-C, `pragma cancel`)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a cell's directive and print it in canonical form.
    Check(check::CheckArgs),
    /// Run a shell cell on a state directory and wait; apply the best state.
    Run(args::RunArgs),
    /// Start a run detached in the background and print its operation id.
    Submit(args::RunArgs),
    /// Wait for a submitted operation; exit as `run` would have.
    Wait(control::WaitArgs),
    /// Cancel a running operation; its last checkpoint stays for a resume.
    Cancel(control::CancelArgs),
    /// Apply a finished operation's result to its state directory.
    Apply(control::ApplyArgs),
    /// List the operations in a store and their states.
    Status(inspect::StatusArgs),
    /// Show an operation's candidates and scores, and chart them as SVG.
    Report(inspect::ReportArgs),
    /// Show the standard output and error of an operation's iterations.
    Logs(inspect::LogsArgs),
    /// Internal: the run behind `pragma submit`, its arguments as JSON on
    /// standard input.
    #[command(name = "__run-detached", hide = true)]
    RunDetached,
    /// Internal: stops the bodies of a run whose process dies.
    #[command(name = "__reap", hide = true)]
    Reap {
        /// The mark of the runner's bodies.
        token: String,
    },
    /// Internal: runs one iteration as a SLURM task.
    #[command(name = "__slurm-task", hide = true)]
    SlurmTask {
        /// The task directory.
        dir: std::path::PathBuf,
    },
    /// Internal: runs a whole repeat operation as a SLURM job.
    #[command(name = "__slurm-run", hide = true)]
    SlurmRun {
        /// The job directory.
        dir: std::path::PathBuf,
    },
}

fn try_main(cli: Cli) -> Exit {
    match cli.command {
        Command::Check(args) => match check::run(&args, &mut std::io::stdout().lock()) {
            // A closed pipe (`pragma check x | head -0`) is not an error.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(exit::OK),
            Err(e) => Err(Failure::usage(e)),
            Ok(code) => Ok(code),
        },
        Command::Run(args) => run::run(&args),
        Command::Submit(args) => control::submit(&args),
        Command::RunDetached => run::run(&control::detached_request()?),
        Command::Wait(args) => control::wait(&args),
        Command::Cancel(args) => control::cancel(&args),
        Command::Apply(args) => control::apply(&args),
        Command::Reap { token } => Ok(reaper::serve(&token)),
        Command::SlurmTask { dir } => Ok(slurm::task(&dir)),
        Command::SlurmRun { dir } => run::run(&slurm::whole_job_run(&dir)?),
        Command::Status(args) => inspect::status(&args),
        Command::Report(args) => inspect::report(&args),
        Command::Logs(args) => inspect::logs(&args),
    }
}

fn main() -> ExitCode {
    let code = match try_main(Cli::parse()) {
        Ok(code) => code,
        Err(failure) => {
            if let Some(message) = failure.message {
                errln!("error: {message}");
            }
            failure.code
        }
    };
    let _ = std::io::stdout().lock().flush();
    ExitCode::from(code)
}
