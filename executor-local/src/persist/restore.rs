//! States read back from the store: a part of a commit, the part of a
//! generation, and the result a job that ran elsewhere left there.

use pragma_checkpoint::{Manifest, Store};

use crate::error::ExecError;
use crate::job::JobResult;
use crate::shared::Shared;
use pragma_contract::{Host, RunError};
use pragma_contract::{RemoteOutput, RemoteState};

/// The state in `part` of the commit `manifest` describes.
pub(crate) async fn restore_part<H: Host, S: Store>(
    shared: &Shared<H, S>,
    manifest: &Manifest,
    part: &str,
) -> Result<H::State, ExecError> {
    let mut reader = shared
        .log
        .open_part(manifest, part)
        .await
        .map_err(ExecError::Store)?;
    shared
        .host
        .restore(&mut reader)
        .await
        .map_err(ExecError::State)
}

/// The state in `part` of generation `generation` of `op`.
pub(crate) async fn restore_generation<H: Host, S: Store>(
    shared: &Shared<H, S>,
    op: &str,
    generation: u64,
    part: &str,
) -> Result<H::State, ExecError> {
    let manifest = shared.log.load(op, generation).await?;
    restore_part(shared, &manifest, part).await
}

/// The result of a job that ran elsewhere, its state restored from the
/// store (and the store's copy deleted).
pub(crate) async fn restore_remote<H: Host, S: Store>(
    shared: &Shared<H, S>,
    op: &str,
    iteration: u64,
    remote: RemoteOutput,
) -> JobResult<H::State> {
    let result = match remote.result {
        Err(e) => Err(e),
        Ok(RemoteState::Returned(bytes)) => shared
            .host
            .restore(&mut bytes.as_slice())
            .await
            .map_err(|e| {
                RunError::Failed(format!(
                    "restoring the result of iteration {iteration} of {op}: {e}"
                ))
            }),
        Ok(RemoteState::Stored(key)) => {
            let restored = match shared.log.store().get(&key).await {
                Ok(mut reader) => shared.host.restore(&mut reader).await.map_err(|e| {
                    RunError::Failed(format!(
                        "restoring the result of iteration {iteration} of {op}: {e}"
                    ))
                }),
                Err(e) => Err(RunError::Failed(format!(
                    "reading the result of iteration {iteration} of {op}: {e}"
                ))),
            };
            let _ = shared.log.store().delete(&key).await;
            restored
        }
    };
    let evaluation = match &result {
        Ok(_) => remote.evaluation,
        Err(_) => None,
    };
    JobResult {
        iteration,
        result,
        evaluation,
        seconds: remote.seconds,
        lost_runs: remote.lost_runs,
    }
}
