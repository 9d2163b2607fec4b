//! The candidates' scores in the store. They are not in a record's
//! metadata, which would grow with the iterations: each commit that adds
//! candidates carries them in a data part of its own, `candidates`, one
//! line each, checksummed like every part. A full record's part holds every
//! candidate so far (streamed from the parts before it, never held in
//! memory); a delta's holds the new ones. So the candidates as of a record
//! are the parts of its chain, read in order ([`Candidates`]).
//!
//! A line is `ITERATION SCORE` (a valid score, as `f64` prints it: `1`,
//! `0.25`, `inf`), `ITERATION -` (no score), or `ITERATION !REASON` (an
//! invalid candidate; the reason as a JSON string).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use pragma_checkpoint::{Manifest, Reader, Store};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, Lines};

use crate::error::ExecError;
use crate::report::CandidateScore;
use crate::shared::Shared;

/// The name of the part that holds candidates.
pub(crate) const PART: &str = "candidates";

/// Adds candidate `c` to `out`, as a line of a part.
pub(crate) fn encode_into(out: &mut Vec<u8>, c: &CandidateScore) {
    use std::io::Write;
    // Writing to a Vec cannot fail.
    let _ = match (&c.invalid, c.score) {
        (Some(reason), _) => writeln!(
            out,
            "{} !{}",
            c.iteration,
            serde_json::to_string(reason).unwrap_or_default()
        ),
        (None, Some(score)) => writeln!(out, "{} {score}", c.iteration),
        (None, None) => writeln!(out, "{} -", c.iteration),
    };
}

/// One line of a part, back as a candidate.
fn decode(line: &str) -> Result<CandidateScore, String> {
    let (iteration, rest) = line
        .split_once(' ')
        .ok_or_else(|| format!("`{line}` is not `ITERATION SCORE`"))?;
    let iteration = iteration
        .parse()
        .map_err(|e| format!("`{iteration}` is not an iteration: {e}"))?;
    let (score, invalid) = match rest {
        "-" => (None, None),
        _ if rest.starts_with('!') => {
            let reason: String = serde_json::from_str(&rest[1..])
                .map_err(|e| format!("`{rest}` is not a quoted reason: {e}"))?;
            (None, Some(reason))
        }
        _ => (
            Some(
                pragma_selector::parse_score(rest)
                    .map_err(|e| format!("`{rest}` is not a score: {e}"))?,
            ),
            None,
        ),
    };
    Ok(CandidateScore {
        iteration,
        score,
        invalid,
    })
}

/// Reads commits' parts (the store, type-erased so that [`Candidates`]
/// names neither the host nor the store).
pub(crate) trait OpenPart: Send + Sync {
    /// The usable commits of `op`, oldest first.
    fn commits<'a>(
        &'a self,
        op: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Manifest>, ExecError>> + Send + 'a>>;

    /// The `candidates` part of `manifest`'s commit, if it has one; the
    /// reader fails at its end if the bytes do not match their checksum.
    fn candidates_of<'a>(
        &'a self,
        manifest: &'a Manifest,
    ) -> Pin<Box<dyn Future<Output = Result<Option<Reader>, ExecError>> + Send + 'a>>;
}

impl<H: Send + Sync, S: Store> OpenPart for Shared<H, S> {
    fn commits<'a>(
        &'a self,
        op: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Manifest>, ExecError>> + Send + 'a>> {
        Box::pin(async move { Ok(self.log.checkpoints(op).await?) })
    }

    fn candidates_of<'a>(
        &'a self,
        manifest: &'a Manifest,
    ) -> Pin<Box<dyn Future<Output = Result<Option<Reader>, ExecError>> + Send + 'a>> {
        Box::pin(async move {
            if !manifest.parts().iter().any(|p| p.name == PART) {
                return Ok(None);
            }
            Ok(Some(self.log.open_part(manifest, PART).await?))
        })
    }
}

/// The commits of `generations` among `commits`, in that order; a missing
/// one is named.
pub(crate) fn commits_of(
    op: &str,
    commits: &[Manifest],
    generations: &[u64],
) -> Result<Vec<Manifest>, ExecError> {
    generations
        .iter()
        .map(|&generation| {
            commits
                .iter()
                .find(|m| m.generation() == generation)
                .cloned()
                .ok_or_else(|| damaged(op, generation, "the checkpoint is gone"))
        })
        .collect()
}

/// Streams into `writer` the candidates parts of `generations` of `op` (in
/// order), then `new`; a failure is left in `failed` too, so that the
/// commit reading the other end fails rather than commit a part cut short.
pub(crate) async fn stream_into(
    store: &dyn OpenPart,
    op: &str,
    generations: &[u64],
    new: &[u8],
    mut writer: DuplexStream,
    failed: Arc<Mutex<Option<String>>>,
) -> Result<(), ExecError> {
    let result = async {
        // One listing of the commits, not one per part.
        let commits = store.commits(op).await?;
        for manifest in commits_of(op, &commits, generations)? {
            if let Some(mut part) = store.candidates_of(&manifest).await? {
                tokio::io::copy(&mut part, &mut writer)
                    .await
                    .map_err(|e| damaged(op, manifest.generation(), &e.to_string()))?;
            }
        }
        writer.write_all(new).await.map_err(ExecError::State)?;
        writer.shutdown().await.map_err(ExecError::State)
    }
    .await;
    if let Err(e) = &result
        && let Ok(mut slot) = failed.lock()
    {
        *slot = Some(format!("the earlier candidates could not be read: {e}"));
    }
    result
}

fn damaged(op: &str, generation: u64, reason: &str) -> ExecError {
    ExecError::Damaged {
        op: op.to_owned(),
        problem: format!("the candidates of its checkpoint {generation} cannot be read: {reason}"),
    }
}

/// Every candidate of an operation, in the order they were scored, read
/// from the store as they are asked for: memory stays flat however many
/// there are. Made by [`Executor::candidates`](crate::Executor::candidates).
pub struct Candidates {
    op: String,
    store: Arc<dyn OpenPart>,
    /// Candidates of earlier versions' records, kept in their metadata.
    from_metadata: VecDeque<CandidateScore>,
    /// The commits whose parts are still to be read.
    commits: VecDeque<Manifest>,
    /// The part being read, and its commit.
    current: Option<(u64, Lines<BufReader<Reader>>)>,
    count: u64,
}

impl std::fmt::Debug for Candidates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Candidates")
            .field("op", &self.op)
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl Candidates {
    pub(crate) fn new(
        op: &str,
        store: Arc<dyn OpenPart>,
        from_metadata: Vec<CandidateScore>,
        commits: Vec<Manifest>,
        count: u64,
    ) -> Self {
        Candidates {
            op: op.to_owned(),
            store,
            from_metadata: from_metadata.into(),
            commits: commits.into(),
            current: None,
            count,
        }
    }

    /// How many candidates there are, as the operation's record says.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The next candidate; `None` after the last. An error (a damaged or
    /// missing part) names the operation and the checkpoint.
    pub async fn next(&mut self) -> Option<Result<CandidateScore, ExecError>> {
        if let Some(candidate) = self.from_metadata.pop_front() {
            return Some(Ok(candidate));
        }
        loop {
            if let Some((generation, lines)) = &mut self.current {
                let generation = *generation;
                match lines.next_line().await {
                    Ok(Some(line)) => {
                        return Some(
                            decode(&line).map_err(|reason| damaged(&self.op, generation, &reason)),
                        );
                    }
                    Ok(None) => self.current = None,
                    Err(e) => {
                        self.current = None;
                        self.commits.clear();
                        return Some(Err(damaged(&self.op, generation, &e.to_string())));
                    }
                }
            }
            let manifest = self.commits.pop_front()?;
            match self.store.candidates_of(&manifest).await {
                Ok(Some(part)) => {
                    self.current = Some((manifest.generation(), BufReader::new(part).lines()));
                }
                Ok(None) => {}
                Err(e) => {
                    self.commits.clear();
                    return Some(Err(e));
                }
            }
        }
    }

    /// Every candidate left, in a vector (memory grows with them: for
    /// reports and tests of bounded size).
    pub async fn collect(mut self) -> Result<Vec<CandidateScore>, ExecError> {
        let mut all = Vec::new();
        while let Some(candidate) = self.next().await {
            all.push(candidate?);
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_back_as_they_were_written() {
        let candidates = vec![
            CandidateScore {
                iteration: 7,
                score: Some(0.1 + 0.2),
                invalid: None,
            },
            CandidateScore {
                iteration: 0,
                score: Some(f64::NEG_INFINITY),
                invalid: None,
            },
            CandidateScore {
                iteration: u64::MAX,
                score: None,
                invalid: None,
            },
            CandidateScore {
                iteration: 3,
                score: None,
                invalid: Some("NaN\n \"quoted\" ünï".into()),
            },
        ];
        let mut lines = Vec::new();
        for c in &candidates {
            encode_into(&mut lines, c);
        }
        let text = String::from_utf8(lines).unwrap();
        assert_eq!(text.lines().count(), 4);
        let back: Vec<CandidateScore> = text.lines().map(|l| decode(l).unwrap()).collect();
        assert_eq!(back, candidates);
        assert!(decode("12").unwrap_err().contains("ITERATION SCORE"));
        assert!(decode("x 1").unwrap_err().contains("not an iteration"));
        assert!(decode("1 one").unwrap_err().contains("not a score"));
    }
}
