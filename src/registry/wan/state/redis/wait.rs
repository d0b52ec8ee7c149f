//! A HEAD's wait for another job's upload of the same blob, on the store: it looks at the
//! blob's flight (`wan:flight:<digest>`) until it is gone, woken early by the flight's end
//! published on `wan:ends` (any replica) or by the end of this replica's own upload, and at the
//! latest every [`POLL`] — the store's messages are best effort.

use tokio::sync::broadcast;

use super::super::Waited;
use super::{Flight, RedisState, CLAIM_TTL, WAIT_FOR_UPLOAD};
use crate::oci::{Digest, RepoName};

/// How often a waiting HEAD looks at the flight again (a GET; an upload's end reaches the
/// waiters of other replicas at most this late when its message is lost).
const POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// How a pause between two looks at a flight ended.
#[derive(Debug, PartialEq, Eq)]
enum Paused {
    /// This replica's own upload of the blob ended: nothing more to look at.
    EndedHere,
    /// Time to look again (the poll's interval passed, or an end was published).
    Look,
}

impl RedisState {
    pub(super) async fn wait_shared(
        &self,
        digest: &Digest,
        target: &RepoName,
    ) -> Result<Waited, ()> {
        let started = tokio::time::Instant::now();
        // Listening before the first look: an end published after it is not missed.
        let mut ends = self.store.subscribe(&self.ends_channel());
        let mut last: Option<Flight> = None;
        loop {
            let now = self.flight(digest).await?;
            match (&now, &last) {
                (None, None) => return Ok(Waited::Nothing),
                (None, Some(seen)) => {
                    // Gone: an upload ended, or a claim was settled before its time ran out.
                    return Ok(match seen {
                        Flight::Claim { at_ms, .. }
                            if self.store.now_ms() - at_ms >= CLAIM_TTL.as_millis() as i64 =>
                        {
                            Waited::ClaimExpired
                        }
                        f => Waited::Upload(f.repo().clone()),
                    });
                }
                (Some(Flight::Claim { repo, .. }), None) if repo == target => {
                    return Ok(Waited::Nothing); // one's own claim is never waited on
                }
                (Some(Flight::Claim { at_ms, .. }), _)
                    if self.store.now_ms() - at_ms >= CLAIM_TTL.as_millis() as i64 =>
                {
                    let _ = self
                        .store
                        .delete_if(
                            &self.flight_key(digest),
                            now.as_ref()
                                .map(Flight::encode)
                                .unwrap_or_default()
                                .as_bytes(),
                        )
                        .await;
                    return Ok(Waited::ClaimExpired);
                }
                _ => {}
            }
            if started.elapsed() >= WAIT_FOR_UPLOAD {
                return Ok(Waited::Upload(
                    now.as_ref()
                        .map(|f| f.repo().clone())
                        .unwrap_or(target.clone()),
                ));
            }
            let Some(seen) = now else {
                continue; // unreachable: a flight that is gone returned above
            };
            if self.pause(digest, &mut ends).await == Paused::EndedHere {
                return Ok(Waited::Upload(seen.repo().clone()));
            }
            last = Some(seen);
        }
    }

    /// The pause between two looks at a flight: at most [`POLL`], cut short when the flight's
    /// end is published (any replica), and the wait's end when the upload was this replica's
    /// own and ended meanwhile (what it learned reached Redis before the signal: `uploaded`
    /// runs while the upload's mark is held).
    async fn pause(
        &self,
        digest: &Digest,
        ends: &mut Option<broadcast::Receiver<String>>,
    ) -> Paused {
        let here = async {
            match self.local.upload_signal(digest) {
                Some(mut done) => {
                    let _ = done.wait_for(|d| *d).await;
                }
                None => std::future::pending().await,
            }
        };
        let heard = async {
            let Some(rx) = ends.as_mut() else {
                return std::future::pending().await;
            };
            loop {
                match rx.recv().await {
                    Ok(d) if d == digest.as_str() => return,
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(_)) => return,
                    Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
                }
            }
        };
        tokio::select! {
            biased;
            _ = here => Paused::EndedHere,
            _ = heard => Paused::Look,
            _ = tokio::time::sleep(POLL) => Paused::Look,
        }
    }
}
