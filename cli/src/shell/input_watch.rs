//! Bodies that ask for input: every body reads one silent pipe, and a
//! watchdog sees a body (or one of its processes) waiting on it.

use super::*;

/// The standard input of every body: one pipe that nobody writes to, kept
/// for the host's life. A body that reads it waits, and the watchdog sees
/// it waiting. One pipe for all runs spares each run a pipe of its own,
/// its registration with the runtime and the wake-up when it turns
/// writable.
#[derive(Debug)]
pub(super) struct SilentInput {
    pub(super) read: std::io::PipeReader,
    // Held open, never written: a read waits instead of ending.
    _write: std::io::PipeWriter,
    /// What a body's `/proc/PID/fd/0` links to (`pipe:[INODE]`).
    pub(super) link: Option<PathBuf>,
}

impl SilentInput {
    pub(super) fn new() -> io::Result<SilentInput> {
        let (read, write) = std::io::pipe()?;
        let link = std::fs::read_link(format!("/proc/self/fd/{}", read.as_raw_fd())).ok();
        Ok(SilentInput {
            read,
            _write: write,
            link,
        })
    }
}

/// The `read` system call's number, as `/proc/PID/syscall` shows it.
pub(super) const READ_SYSCALL: i64 = if cfg!(target_arch = "x86_64") {
    0
} else if cfg!(target_arch = "aarch64") {
    63
} else {
    -1
};

/// Resolves with a message once a process of the body's tree has been
/// waiting to read its standard input or a terminal for about a second.
/// Never resolves where `/proc` cannot tell.
pub(super) async fn watch_for_input(root: Option<u32>, stdin: Option<PathBuf>) -> String {
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
pub(super) fn waiting_for_input(root: u32, stdin: Option<&Path>) -> Option<String> {
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
pub(super) fn descendants(root: u32) -> Vec<u32> {
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
