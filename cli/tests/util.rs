//! What every topic's tests share: the binary, the product page's cells,
//! and a test directory with a state, a cell and the default store.

use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;

/// The `pragma` binary.
pub(crate) fn pragma() -> Command {
    Command::cargo_bin("pragma").unwrap()
}

/// The cells of the product page, as fixtures.
pub(crate) fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// One test's directory, laid out as a user lays one out: the state
/// directory `state/` (its file `score` 0), the cell file `cell`, and the
/// default store `.pragma/` beside them. Removed when dropped.
pub(crate) struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    /// A directory with `state/score` (0), and `cell_text` as the cell.
    pub(crate) fn with_cell(cell_text: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("state")).unwrap();
        std::fs::write(dir.path().join("state/score"), "0\n").unwrap();
        std::fs::write(dir.path().join("cell"), cell_text).unwrap();
        Fixture { dir }
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The cell file.
    pub(crate) fn cell(&self) -> PathBuf {
        self.path().join("cell")
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

/// The one operation in the store of `dir`.
pub(crate) fn only_op(dir: &Path) -> String {
    let mut ops = std::fs::read_dir(dir.join(".pragma/ops")).unwrap();
    let op = ops.next().unwrap().unwrap().file_name();
    assert!(ops.next().is_none(), "one operation");
    op.to_str().unwrap().to_owned()
}
