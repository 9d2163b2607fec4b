//! Stops the bodies of a `pragma` process that dies without stopping them.
//!
//! Each body runs in its own process group. A small companion process
//! (`pragma __reap`, in a process group of its own so that Ctrl-C in the
//! terminal leaves it alone) reads `+PGID` and `-PGID` lines on a pipe from
//! the runner, in batches. The pipe closes when the runner exits, however
//! it exits, kill -9 included; the companion sees that at once, and kills
//! every group still listed, so no orphaned body goes on writing into the
//! store.
//!
//! A body can start before its group is on the pipe: the runner may be
//! killed between starting it and telling the companion. So each body also
//! carries a mark in its environment ([`MARK`], unique to the runner), which
//! its children inherit; the companion kills the process groups of every
//! process that carries it, found in `/proc/PID/environ`.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::process::{Pid, Signal, kill_process_group};

/// The environment variable that marks the bodies of one runner.
pub(crate) const MARK: &str = "PRAGMA_RUNNER";

/// The runner's end of the companion process.
#[derive(Debug)]
pub(crate) struct Reaper {
    input: Mutex<ChildStdin>,
    /// The value of [`MARK`] in this runner's bodies.
    token: String,
    // Kept so that the companion is not reaped while this end lives.
    _companion: Child,
}

impl Reaper {
    /// Starts the companion process.
    pub(crate) fn start() -> std::io::Result<Reaper> {
        // Unique to this runner: its pid with the time it starts at.
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let token = format!("{}-{}", std::process::id(), since_epoch.as_nanos());
        let mut companion = Command::new(std::env::current_exe()?)
            .arg("__reap")
            .arg(&token)
            .env_remove(MARK)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()?;
        let input = companion
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("the reaper has no standard input"))?;
        // The companion reads its lines in batches (see `serve`): room for
        // a batch of many thousand, so that the runner never waits on it.
        let _ = rustix::pipe::fcntl_setpipe_size(&input, 1 << 20);
        Ok(Reaper {
            input: Mutex::new(input),
            token,
            _companion: companion,
        })
    }

    /// The value of [`MARK`] to give each body, so that it is found even
    /// before [`watch`](Reaper::watch).
    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    /// Kill the process group `pgid` if this process dies.
    pub(crate) fn watch(&self, pgid: u32) {
        self.send('+', pgid);
    }

    /// The process group `pgid` has been stopped; forget it.
    pub(crate) fn forget(&self, pgid: u32) {
        self.send('-', pgid);
    }

    fn send(&self, sign: char, pgid: u32) {
        // One write per line (`writeln!` on the pipe makes three, each
        // waking the companion): far below PIPE_BUF, so it is atomic. If
        // the companion is gone there is nothing better to do than go on.
        let line = format!("{sign}{pgid}\n");
        if let Ok(mut input) = self.input.lock() {
            let _ = input.write_all(line.as_bytes());
        }
    }
}

/// Kills the process group `pgid`; a group that is already gone is fine.
pub(crate) fn kill_group(pgid: u32) {
    if let Some(pid) = i32::try_from(pgid).ok().and_then(Pid::from_raw) {
        let _ = kill_process_group(pid, Signal::KILL);
    }
}

/// The companion: `pragma __reap TOKEN`. Returns when its input closes,
/// after killing the groups still listed and those of the processes marked
/// with `token`.
pub(crate) fn serve(token: &str) -> u8 {
    let stdin = std::io::stdin();
    let input = stdin.as_fd();
    // The lines are read in batches, every `BATCH`, not as they come: a
    // wake-up per line cost the runner's iterations more than the rest of
    // this companion. `poll` asked for no event wakes on the hangup alone
    // (the runner is gone), so that is still seen at once.
    let _ = rustix::fs::fcntl_setfl(input, rustix::fs::OFlags::NONBLOCK);
    const BATCH: Timespec = Timespec {
        tv_sec: 0,
        tv_nsec: 100_000_000,
    };
    let mut groups = BTreeSet::new();
    let mut unread = Vec::new();
    loop {
        let mut waiting = [PollFd::from_borrowed_fd(input, PollFlags::empty())];
        let _ = rustix::event::poll(&mut waiting, Some(&BATCH));
        let ended = read_lines(input, &mut unread, &mut groups);
        if ended {
            break;
        }
    }
    for pgid in groups {
        kill_group(pgid);
    }
    // Twice: a marked process may have been starting another one during the
    // first look.
    for _ in 0..2 {
        for pgid in marked_groups(token) {
            kill_group(pgid);
        }
    }
    crate::failure::exit::OK
}

/// Reads what `input` holds now, applying each whole `+PGID` or `-PGID`
/// line to `groups` (`unread` keeps a line's start until its end comes).
/// Whether the input has ended: the runner is gone.
fn read_lines(input: BorrowedFd<'_>, unread: &mut Vec<u8>, groups: &mut BTreeSet<u32>) -> bool {
    let mut buffer = [0u8; 4096];
    let ended = loop {
        match rustix::io::read(input, &mut buffer) {
            Ok(0) => break true,
            Ok(n) => unread.extend_from_slice(&buffer[..n]),
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => break false,
            Err(_) => break true,
        }
    };
    let whole = unread
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |end| end + 1);
    for line in unread[..whole].split(|&b| b == b'\n') {
        let Some((&sign, number)) = line.split_first() else {
            continue;
        };
        let Some(pgid) = std::str::from_utf8(number)
            .ok()
            .and_then(|n| n.parse().ok())
        else {
            continue;
        };
        match sign {
            b'+' => {
                groups.insert(pgid);
            }
            b'-' => {
                groups.remove(&pgid);
            }
            _ => {}
        }
    }
    unread.drain(..whole);
    ended
}

/// The process groups of the processes whose environment holds
/// `MARK=token`, this process's own group left out.
fn marked_groups(token: &str) -> BTreeSet<u32> {
    let needle = format!("\0{MARK}={token}\0");
    let own = rustix::process::getpgrp().as_raw_nonzero().get() as u32;
    let mut groups = BTreeSet::new();
    for pid in pragma_session::procfs::pids() {
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let mut framed = Vec::with_capacity(environ.len() + 2);
        framed.push(0);
        framed.extend_from_slice(&environ);
        framed.push(0);
        let marked = framed
            .windows(needle.len())
            .any(|window| window == needle.as_bytes());
        if marked
            && let Some(pgid) = pragma_session::procfs::stat(pid).map(|s| s.group)
            && pgid != own
        {
            groups.insert(pgid);
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_between_reads_are_applied_whole_and_the_end_is_seen() {
        let (read, mut write) = std::io::pipe().unwrap();
        rustix::fs::fcntl_setfl(&read, rustix::fs::OFlags::NONBLOCK).unwrap();
        let (mut unread, mut groups) = (Vec::new(), BTreeSet::new());
        write.write_all(b"+12\n+3").unwrap();
        assert!(!read_lines(read.as_fd(), &mut unread, &mut groups));
        assert_eq!(groups, BTreeSet::from([12]));
        write.write_all(b"4\n-12\nnoise\n+").unwrap();
        assert!(!read_lines(read.as_fd(), &mut unread, &mut groups));
        assert_eq!(groups, BTreeSet::from([34]));
        drop(write);
        assert!(read_lines(read.as_fd(), &mut unread, &mut groups));
        assert_eq!(groups, BTreeSet::from([34]));
    }
}
