//! Results worked out in the background (a session opened ahead, a check, a mount).

use tokio::sync::watch;

/// A result being worked out in the background.
pub type Ahead<T> = watch::Receiver<Option<T>>;

/// The result, once there (`None`: the work was abandoned).
pub async fn settled<T: Clone>(mut ahead: Ahead<T>) -> Option<T> {
    ahead
        .wait_for(|v| v.is_some())
        .await
        .ok()
        .and_then(|v| v.clone())
}

/// Run `work` in the background; its result, later.
pub fn spawn<T, F>(work: F) -> Ahead<T>
where
    T: Send + Sync + 'static,
    F: std::future::Future<Output = T> + 'static,
{
    let (tx, rx) = watch::channel(None);
    actix_web::rt::spawn(async move {
        let _ = tx.send(Some(work.await));
    });
    rx
}
