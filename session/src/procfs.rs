//! What the lifecycle (and a host's reaper) reads of other processes in
//! `/proc`: who they are, their parent, group and start time. Linux only.

/// The fields of `/proc/PID/stat` that tell a process apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// A zombie: it has exited, and waits for its parent to reap it.
    pub zombie: bool,
    /// Its parent's process id.
    pub parent: u32,
    /// Its process group.
    pub group: u32,
    /// Its start time, in clock ticks since boot: with the pid, it tells a
    /// process apart from a later one with the same pid.
    pub started: u64,
}

/// The stat of process `pid`, if it exists.
pub fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name in parentheses may hold spaces and parentheses: fields
    // count from after the last `)`, the state being the first of them.
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        zombie: *fields.first()? == "Z",
        parent: fields.get(1)?.parse().ok()?,
        group: fields.get(2)?.parse().ok()?,
        started: fields.get(19)?.parse().ok()?,
    })
}

/// The ids of the processes running now.
pub fn pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_found_with_its_parent_and_group() {
        let me = std::process::id();
        assert!(pids().any(|pid| pid == me));
        let stat = stat(me).unwrap();
        assert!(!stat.zombie);
        assert_eq!(stat.parent, std::os::unix::process::parent_id());
        assert_eq!(
            stat.group,
            rustix::process::getpgrp().as_raw_nonzero().get() as u32
        );
        assert_eq!(super::stat(me).unwrap().started, stat.started);
    }
}
