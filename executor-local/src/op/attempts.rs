//! Which start of an iteration a run is, across resumes: the scheduler
//! counts the starts it made; an iteration that was running when the
//! operation was last recorded, before a crash, had made some already.

use std::collections::BTreeMap;

/// The starts of the iterations running now, and those made before a
/// resume.
#[derive(Debug, Default)]
pub(crate) struct Attempts {
    /// Starts made before this executor took the operation up, of the
    /// iterations that were running at its last record.
    earlier: BTreeMap<u64, u32>,
    /// The iterations running now, and which start each is.
    running: BTreeMap<u64, u32>,
}

impl Attempts {
    /// Attempts taken up from a record's `started` list.
    pub(crate) fn resumed(started: &[(u64, u32)]) -> Attempts {
        Attempts {
            earlier: started.iter().copied().collect(),
            running: BTreeMap::new(),
        }
    }

    /// `iteration` starts, the scheduler's `attempt`th start of it here;
    /// which start it is in all.
    pub(crate) fn start(&mut self, iteration: u64, attempt: u32) -> u32 {
        let attempt = attempt.saturating_add(self.earlier.get(&iteration).copied().unwrap_or(0));
        self.running.insert(iteration, attempt);
        attempt
    }

    /// `iteration`'s run ended, however.
    pub(crate) fn end(&mut self, iteration: u64) {
        self.running.remove(&iteration);
    }

    /// The iterations running now, and which start each is: what a record
    /// keeps, so that a resume goes on counting from there.
    pub(crate) fn running(&self) -> Vec<(u64, u32)> {
        self.running.iter().map(|(i, a)| (*i, *a)).collect()
    }
}
