//! The clean-up after a commit: only the commits an operation may still
//! need stay in the store.

use pragma_checkpoint::{Lease, Store};

use super::CommitFailure;
use crate::error::ExecError;
use crate::record::Record;
use crate::shared::Shared;
use pragma_contract::Host;

/// Keeps `keep`, the latest and the best; failures to clean up are logged,
/// not fatal.
pub(crate) async fn retain<H: Host, S: Store>(
    shared: &Shared<H, S>,
    lease: &Lease,
    record: &Record,
    mut keep: Vec<u64>,
    committed: Result<(u64, u64), ExecError>,
) -> Result<(u64, u64), CommitFailure> {
    let (generation, bytes) = committed.map_err(CommitFailure::from)?;
    if let Some(best) = &record.best {
        keep.push(best.generation.unwrap_or(generation));
    }
    if let Err(e) = shared.log.retain(lease, &keep).await {
        tracing::warn!(op = lease.op(), error = %e, "old checkpoints could not be deleted");
    }
    Ok((generation, bytes))
}
