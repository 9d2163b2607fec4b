//! What the executor writes to and reads from the checkpoint log: commits
//! of states and records ([`commit`]), the candidates' scores
//! ([`candidates`]), states read back ([`restore`]), and
//! the clean-up of commits no longer needed ([`retain`](mod@retain)).

pub(crate) mod candidates;
mod commit;
mod restore;
mod retain;

pub(crate) use commit::{CandidatesPart, CommitFailure, commit_record, commit_state, whole_record};
pub(crate) use restore::{restore_generation, restore_part, restore_remote};
pub(crate) use retain::retain;
