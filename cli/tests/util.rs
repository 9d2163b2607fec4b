//! What every topic's tests share: the binary, the product page's cells,
//! one test directory ([`Fixture`]: a state, a cell and a store, and the
//! commands run on them), and the waits and looks into a store that the
//! topics make.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use predicates::prelude::*;

/// The `pragma` binary.
pub(crate) fn pragma() -> Command {
    Command::cargo_bin("pragma").unwrap()
}

/// The cells of the product page, as fixtures.
pub(crate) fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// One test's directory, laid out as a user lays one out: the state
/// directory `state/`, the cell file `cell`, and a store beside them.
/// Removed when dropped.
///
/// Two layouts: [`Fixture::with_cell`] runs in the directory, relative
/// names and the default store `.pragma/` (as a user at a prompt);
/// [`Fixture::new`] names every path, its store `store/` with `--store`
/// (as a script does).
pub(crate) struct Fixture {
    dir: tempfile::TempDir,
    /// The state directory, `state/`.
    pub(crate) state: PathBuf,
    /// The store: `.pragma/` with [`Fixture::with_cell`], `store/` with
    /// [`Fixture::new`].
    pub(crate) store: PathBuf,
}

impl Fixture {
    /// An empty state, no cell yet, and the store `store/`, which the
    /// commands below pass with `--store`.
    pub(crate) fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (state, store) = (dir.path().join("state"), dir.path().join("store"));
        std::fs::create_dir(&state).unwrap();
        Fixture { dir, state, store }
    }

    /// A directory with `state/score` (0), `cell_text` as the cell, and
    /// the default store `.pragma/`, which [`Fixture::run`] finds itself.
    pub(crate) fn with_cell(cell_text: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (state, store) = (dir.path().join("state"), dir.path().join(".pragma"));
        std::fs::create_dir(&state).unwrap();
        std::fs::write(state.join("score"), "0\n").unwrap();
        std::fs::write(dir.path().join("cell"), cell_text).unwrap();
        Fixture { dir, state, store }
    }

    /// The fixture with the state file `name` holding `text`.
    pub(crate) fn with_state_file(self, name: &str, text: &str) -> Fixture {
        std::fs::write(self.state.join(name), text).unwrap();
        self
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `name` in the directory (where the bodies of [`Fixture::pragma`]
    /// and [`Fixture::spawn`] find it as `$OUT/name`).
    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }

    /// The cell file.
    pub(crate) fn cell(&self) -> PathBuf {
        self.path().join("cell")
    }

    /// Writes `text` as the cell file; returns its path.
    pub(crate) fn write_cell(&self, text: &str) -> PathBuf {
        let path = self.cell();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `pragma run cell --state state` with `extra` arguments, in the
    /// directory, given at most `timeout`.
    pub(crate) fn run(&self, extra: &[&str], timeout: Duration) -> assert_cmd::assert::Assert {
        pragma()
            .args(["run", "cell", "--state", "state"])
            .args(extra)
            .current_dir(self.path())
            .timeout(timeout)
            .assert()
    }

    /// `pragma run CELL --state STATE --store STORE`, as a std command to
    /// add to (run, spawned, or asserted through `Command::from_std`).
    pub(crate) fn run_command(&self, cell: &Path) -> std::process::Command {
        let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("pragma"));
        command
            .arg("run")
            .arg(cell)
            .arg("--state")
            .arg(&self.state)
            .arg("--store")
            .arg(&self.store);
        command
    }

    /// `pragma run CELL` on the state and the store, with `extra`
    /// arguments.
    pub(crate) fn run_cell(&self, cell: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
        Command::from_std(self.run_command(cell))
            .args(extra)
            .assert()
    }

    /// `pragma ARGS --store STORE`, `$OUT` the directory.
    pub(crate) fn pragma(&self, args: &[&str]) -> Command {
        let mut command = pragma();
        command
            .args(args)
            .arg("--store")
            .arg(&self.store)
            .env("OUT", self.path());
        command
    }

    /// `pragma submit CELL` on the state; returns the operation id.
    pub(crate) fn submit(&self, cell: &Path) -> String {
        let out = self
            .pragma(&["submit"])
            .arg(cell)
            .arg("--state")
            .arg(&self.state)
            .assert()
            .code(0)
            .stderr(predicate::str::contains("pragma wait op-"))
            .get_output()
            .stdout
            .clone();
        let op = String::from_utf8(out).unwrap().trim().to_owned();
        assert!(op.starts_with("op-"), "{op}");
        op
    }

    /// The JSON status of one operation.
    pub(crate) fn status(&self, op: &str) -> serde_json::Value {
        let out = self
            .pragma(&["status", op, "--json"])
            .assert()
            .code(0)
            .get_output()
            .stdout
            .clone();
        serde_json::from_slice(&out).unwrap()
    }

    /// `pragma ARGS --store STORE` started as a std command, `$OUT` the
    /// directory, its output piped.
    pub(crate) fn spawn(&self, args: &[&str]) -> std::process::Child {
        std::process::Command::new(assert_cmd::cargo::cargo_bin("pragma"))
            .args(args)
            .arg("--store")
            .arg(&self.store)
            .env("OUT", self.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
}

/// A [`Fixture`] whose cell sets `score` to 1.
pub(crate) fn setup() -> Fixture {
    Fixture::with_cell("#pragma repeat --iterations 1 --max-by 'cat score'\necho 1 > score\n")
}

/// Writes `cell_text` as the cell, then runs `pragma run cell --state
/// state` with `extra` arguments in `dir`, given at most `timeout`.
pub(crate) fn run_cell_with(
    dir: &Path,
    cell_text: &str,
    extra: &[&str],
    timeout: Duration,
) -> assert_cmd::assert::Assert {
    std::fs::write(dir.join("cell"), cell_text).unwrap();
    pragma()
        .args(["run", "cell", "--state", "state"])
        .args(extra)
        .current_dir(dir)
        .timeout(timeout)
        .assert()
}

/// The one operation in the default store (`.pragma/`) of `dir`.
pub(crate) fn only_op(dir: &Path) -> String {
    only_op_in(&dir.join(".pragma"))
}

/// The one operation in `store`.
pub(crate) fn only_op_in(store: &Path) -> String {
    let mut ops = std::fs::read_dir(store.join("ops")).unwrap();
    let op = ops.next().unwrap().unwrap().file_name();
    assert!(ops.next().is_none(), "one operation");
    op.to_str().unwrap().to_owned()
}

/// Waits until `path` exists (a body got that far).
pub(crate) fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `path` holds something (its writer may create it before
/// writing); returns what it holds.
pub(crate) fn wait_for_text(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && !text.is_empty()
        {
            return text;
        }
        assert!(Instant::now() < deadline, "no {}", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}
