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

mod copying;
mod input_watch;
mod scoring;
mod workdirs;

pub(crate) use copying::copy_tree;
use copying::*;
use input_watch::*;
use scoring::*;
use workdirs::*;

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

impl ShellHost {
    /// Runs `script` with `/bin/sh -c` in `dir` with `env`, its output
    /// captured to the run's logs, until it ends, the run is cancelled, or
    /// it waits for input; its status and its standard error.
    async fn run_shell(
        &self,
        script: &str,
        dir: &Path,
        env: &BTreeMap<String, String>,
        ctx: &IterationContext,
    ) -> Result<(std::process::ExitStatus, Capture), RunError> {
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .envs(env)
            .env("PRAGMA_SEED", ctx.seed.to_string())
            .env("PRAGMA_OP_ID", &*ctx.op)
            .env(crate::reaper::MARK, self.reaper_token())
            // Standard input is a pipe nobody writes to: a body that reads
            // it waits, and the watchdog below sees it waiting.
            .stdin(
                self.input
                    .read
                    .try_clone()
                    .map_err(|e| io_failure("starting /bin/sh", e))?,
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that stopping it stops its children.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| io_failure("starting /bin/sh", e))?;
        let pid = child.id();
        let group = GroupGuard::new(pid, self.reaper.as_deref());
        let (out, err) = self.captures(ctx);
        let pumps = Pumps::start(&mut child, out, err);
        let status = tokio::select! {
            status = child.wait() => status.map_err(|e| io_failure("running the body", e))?,
            () = ctx.cancel.cancelled() => return Err(RunError::Cancelled),
            message = watch_for_input(pid, self.input.link.clone()) => {
                return Err(RunError::InteractiveInput(message));
            }
        };
        // The iteration ends with its shell: what it left running in the
        // background is stopped now, and its output not waited for.
        drop(group);
        let (_, err) = pumps.finish().await;
        Ok((status, err))
    }

    /// Why a body that ended with `status` failed, `last` the last line it
    /// wrote to standard error; in `copy`, its working copy.
    fn body_failed(&self, status: std::process::ExitStatus, last: &str, copy: &Path) -> RunError {
        let code = status
            .code()
            .map_or("a signal".to_owned(), |c| format!("exit code {c}"));
        let message = if last.is_empty() {
            format!("the body failed with {code}")
        } else {
            format!("the body failed with {code}: {last}")
        };
        // A body that failed on the disk its working copy filled is no
        // failure of its own: running it again cannot help.
        if disk_full(copy) {
            return RunError::StorageFull(format!(
                "{message} (the disk of the working copies, `{}`, is full)",
                self.work.0.display()
            ));
        }
        RunError::Failed(message)
    }
}

/// An I/O error while doing `what` for a run: a full disk under the
/// working copies stops the operation (resumable), where another error is
/// the iteration's failure.
fn io_failure(what: &str, e: io::Error) -> RunError {
    if matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) {
        RunError::StorageFull(format!("{what}: {e}"))
    } else {
        RunError::Failed(format!("{what}: {e}"))
    }
}

/// A body that left a special file (a FIFO, a socket, a device) in its
/// working copy `copy` failed: such a file cannot be state.
async fn refuse_special_files(copy: &Path) -> Result<(), RunError> {
    match special_file_in_state(copy).await {
        Some(special) => {
            let name = special.strip_prefix(copy).unwrap_or(&special);
            Err(RunError::Failed(format!(
                "the body left `{}`, a special file (a FIFO, socket or device), which \
                 cannot be state: remove it before the body ends",
                name.display()
            )))
        }
        None => Ok(()),
    }
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
        let copy = self
            .new_dir()
            .map_err(|e| io_failure("creating a working copy", e))?;
        copy_state(state.path(), copy.path())
            .await
            .map_err(|e| io_failure("copying the state", e))?;
        // A cell saved with CRLF line endings (on Windows) runs as with LF:
        // the shell would take each `\r` for part of a word.
        let body = body.replace("\r\n", "\n");
        // A candidate is scored in the same shell, after the body: one
        // process start per iteration instead of two.
        let score_files = match &ctx.expr {
            Some(_) => Some(
                ScoreFiles::take(self.scratch_dir(), &self.score_dirs)
                    .map_err(|e| io_failure("scoring", e))?,
            ),
            None => None,
        };
        let script = match (&ctx.expr, &score_files) {
            (Some(expr), Some(files)) => files.script(&body, expr),
            _ => body,
        };
        let (status, err) = self
            .run_shell(&script, copy.path(), &state.env, ctx)
            .await?;
        // With a score to take, the shell goes on to the selection command
        // once the body succeeded, and ends with the body's status if it
        // failed.
        let (scoring, printed) = score_files
            .as_ref()
            .map_or((false, String::new()), ScoreFiles::written);
        if !scoring && !status.success() {
            return Err(self.body_failed(status, &err.last_line(), copy.path()));
        }
        refuse_special_files(copy.path()).await?;
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
