//! Leader election on a `Lease`, and running the leader's work only while the lease is held.

use std::future::Future;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub const LEASE_NAME: &str = "webhook-operator-leader";
/// Seconds a lease is valid without renewal: how long a crashed leader blocks a successor.
const LEASE_SECONDS: u64 = 15;
const GRACE_SECONDS: u64 = 5;

/// Campaigns for the lease; the receiver says whether this replica currently leads.
pub async fn elect(
    client: Client,
    namespace: &str,
    identity: &str,
) -> Result<watch::Receiver<bool>, kube_lease_manager::LeaseManagerError> {
    let manager = LeaseManagerBuilder::new(client, LEASE_NAME)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(LEASE_SECONDS)
        .with_grace(GRACE_SECONDS)
        .build()
        .await?;
    let (leading, _task) = manager.watch().await;
    Ok(leading)
}

/// Runs `lead` each time leadership is gained, and cancels its token as soon as it is lost.
/// Returns when `cancel` fires or the leadership channel closes.
pub async fn run_while_leader<F, Fut>(
    mut leadership: watch::Receiver<bool>,
    cancel: CancellationToken,
    mut lead: F,
) where
    F: FnMut(CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            leading = leadership.wait_for(|leading| *leading) => if leading.is_err() { return },
        }
        let term = cancel.child_token();
        let task = tokio::spawn(lead(term.clone()));
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = leadership.wait_for(|leading| !*leading) => tracing::warn!("lost the lease: stopping reconcilers"),
        }
        term.cancel();
        let _ = task.await;
        if cancel.is_cancelled() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        time::Duration,
    };

    async fn settle() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    /// Hand-over: work runs only between gaining and losing the lease, and starts again on
    /// re-election; nothing keeps running after the lease is gone.
    #[tokio::test]
    async fn leader_work_follows_the_lease() {
        let (tx, rx) = watch::channel(false);
        let cancel = CancellationToken::new();
        let (started, running) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let runner = tokio::spawn(run_while_leader(rx, cancel.clone(), {
            let (started, running) = (started.clone(), running.clone());
            move |term: CancellationToken| {
                let (started, running) = (started.clone(), running.clone());
                async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    running.fetch_add(1, Ordering::SeqCst);
                    term.cancelled().await;
                    running.fetch_sub(1, Ordering::SeqCst);
                }
            }
        }));
        settle().await;
        assert_eq!(
            started.load(Ordering::SeqCst),
            0,
            "a follower does no leader work"
        );
        tx.send_replace(true);
        settle().await;
        assert_eq!(
            (
                started.load(Ordering::SeqCst),
                running.load(Ordering::SeqCst)
            ),
            (1, 1)
        );
        tx.send_replace(false);
        settle().await;
        assert_eq!(
            running.load(Ordering::SeqCst),
            0,
            "work stops when the lease is lost"
        );
        tx.send_replace(true);
        settle().await;
        assert_eq!(
            (
                started.load(Ordering::SeqCst),
                running.load(Ordering::SeqCst)
            ),
            (2, 1)
        );
        cancel.cancel();
        let _ = runner.await;
        assert_eq!(running.load(Ordering::SeqCst), 0);
    }
}
