//! Stops the bodies of a `pragma` process that dies without stopping them.
//!
//! Each body runs in its own process group. A small companion process
//! (`pragma __reap`, in a process group of its own so that Ctrl-C in the
//! terminal leaves it alone) reads `+PGID` and `-PGID` lines on a pipe from
//! the runner. The pipe closes when the runner exits, however it exits,
//! kill -9 included; the companion then kills every group still listed, so
//! no orphaned body goes on writing into the store.

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;

use rustix::process::{Pid, Signal, kill_process_group};

/// The runner's end of the companion process.
#[derive(Debug)]
pub(crate) struct Reaper {
    input: Mutex<ChildStdin>,
    // Kept so that the companion is not reaped while this end lives.
    _companion: Child,
}

impl Reaper {
    /// Starts the companion process.
    pub(crate) fn start() -> std::io::Result<Reaper> {
        let mut companion = Command::new(std::env::current_exe()?)
            .arg("__reap")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()?;
        let input = companion
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("the reaper has no standard input"))?;
        Ok(Reaper {
            input: Mutex::new(input),
            _companion: companion,
        })
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
        if let Ok(mut input) = self.input.lock() {
            // A line is far below PIPE_BUF, so the write is atomic. If the
            // companion is gone there is nothing better to do than go on.
            let _ = writeln!(input, "{sign}{pgid}");
        }
    }
}

/// Kills the process group `pgid`; a group that is already gone is fine.
pub(crate) fn kill_group(pgid: u32) {
    if let Some(pid) = i32::try_from(pgid).ok().and_then(Pid::from_raw) {
        let _ = kill_process_group(pid, Signal::KILL);
    }
}

/// The companion: `pragma __reap`. Returns when its input closes, after
/// killing the groups still listed.
pub(crate) fn serve() -> u8 {
    let mut groups = BTreeSet::new();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let (sign, number) = line.split_at(line.len().min(1));
        let Ok(pgid) = number.parse::<u32>() else {
            continue;
        };
        match sign {
            "+" => {
                groups.insert(pgid);
            }
            "-" => {
                groups.remove(&pgid);
            }
            _ => {}
        }
    }
    for pgid in groups {
        kill_group(pgid);
    }
    crate::exit::OK
}
