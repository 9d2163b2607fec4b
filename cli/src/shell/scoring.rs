//! Scoring a state: the selection expression runs in the body's own shell
//! where it can (one process start less), its output and status in score
//! files; a body of plain commands runs without a subshell.

use super::*;

/// Where a body's shell leaves the score of the state it made: the body
/// runs in a subshell (so that its `exit`, `cd` and variables stay its
/// own, as in a shell of its own) unless it leaves the shell alone anyway,
/// and then, if it succeeded, the shell runs the selection command as its
/// last, with its standard input closed and its output and error in files
/// (see [`ScoreFiles::script`]).
pub(super) struct ScoreFiles {
    dir: Option<tempfile::TempDir>,
    pool: Arc<std::sync::Mutex<Vec<tempfile::TempDir>>>,
    /// Written with the status by this run alone: a status an earlier run
    /// of the directory left is never taken for this one's.
    token: u64,
}

impl ScoreFiles {
    /// A directory from `pool`, or a new one under `work`.
    pub(super) fn take(
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

    pub(super) fn path(&self, name: &str) -> PathBuf {
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
    pub(super) fn script(&self, body: &str, expr: &str) -> String {
        let quoted =
            |name: &str| pragma_parse::quote(&self.path(name).to_string_lossy()).into_owned();
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
    pub(super) fn written(&self) -> (bool, String) {
        let text = self.read("out");
        let (first, printed) = text.split_once('\n').unwrap_or((&text, ""));
        (first == self.token.to_string(), printed.to_owned())
    }

    /// The first MiB of the file `name` (empty if there is none), its
    /// bytes that are not UTF-8 replaced.
    pub(super) fn read(&self, name: &str) -> String {
        let mut bytes = Vec::new();
        let _ = std::fs::File::open(self.path(name))
            .and_then(|f| io::Read::read_to_end(&mut io::Read::take(f, 1 << 20), &mut bytes));
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// What the selection command gave, as `evaluate` would have: the
    /// shell ended as it did (`status`, once the body succeeded), having
    /// printed `printed`.
    pub(super) fn evaluation(&self, status: std::process::ExitStatus, printed: &str) -> Evaluation {
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
pub(super) fn leaves_the_shell_alone(body: &str) -> bool {
    static FUNCTIONS_IMPORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let imported = *FUNCTIONS_IMPORTED.get_or_init(|| {
        let bash = std::fs::canonicalize("/bin/sh")
            .is_ok_and(|sh| sh.file_name().is_some_and(|name| name == "bash"));
        bash && std::env::vars_os()
            .any(|(name, _)| name.as_encoded_bytes().starts_with(b"BASH_FUNC_"))
    });
    !imported && plain_commands(body)
}

/// Keywords, and the builtins of dash and bash that change the shell's
/// state (its directory, variables, options, traps, jobs, or whether it
/// goes on): `printf -v` assigns in bash.
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

/// Whether `body` is plain commands (see [`leaves_the_shell_alone`]): each
/// line a comment, or a command name that leaves the shell alone followed
/// by plain words.
pub(super) fn plain_commands(body: &str) -> bool {
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

/// A command name of plain characters that does not change the shell.
fn plain_name(word: &str) -> bool {
    !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./+-".contains(&b))
        && !CHANGES_THE_SHELL.contains(&word)
}

/// A shell variable's name.
fn is_name(name: &str) -> bool {
    name.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A word of plain characters and `$NAME` / `${NAME}` expansions only (no
/// quotes, globs, redirections or substitutions).
fn plain_word(word: &str) -> bool {
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
pub(super) fn selection_failed(status: std::process::ExitStatus, last: &str) -> Evaluation {
    Evaluation::failed(format!(
        "the selection command failed ({status}){}",
        if last.is_empty() {
            String::new()
        } else {
            format!(": {last}")
        }
    ))
}
