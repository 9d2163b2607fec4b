//! What a job run in this process gives back to the coordinator.

use pragma_contract::RunError;
use pragma_selector::Evaluation;

/// The result of one job run in this process (wrapped in a
/// [`LocalOutput`](pragma_contract::LocalOutput) on its way back).
pub(crate) struct JobResult<St> {
    pub(crate) iteration: u64,
    pub(crate) result: Result<St, RunError>,
    pub(crate) evaluation: Option<Evaluation>,
    pub(crate) seconds: f64,
    /// Runs of it cut short elsewhere (a cluster requeued it) before this
    /// one: lost work the scheduler never saw.
    pub(crate) lost_runs: u64,
}
