//! The body of a `#[pglock::advisory]` function learns that its lock was lost
//! (`HeldLock::lost`), within the bound of `Guard::lost`; `on_lost = cancel` stops
//! the body (its future is dropped) and returns the lost error. The loss is made
//! real: the lock's backend is terminated from a second connection, and another
//! session then takes the lock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use pglock_tests::{connect, eventually, holders, pool, unique_name};
use tokio::sync::oneshot;

/// Says how long after the termination the body heard of the loss.
#[pglock::advisory(name, pool = pool)]
async fn watching(
    pool: &Pool,
    name: &str,
    entered: oneshot::Sender<()>,
    terminated: oneshot::Receiver<Instant>,
    waited: oneshot::Sender<Duration>,
) -> Result<(), pglock::Error> {
    let lock = pglock::held().expect("inside the body");
    assert!(!lock.is_lost());
    let _ = entered.send(());
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(30)) => panic!("the loss was not noticed"),
        lost = lock.lost() => {
            let at = terminated.await.expect("the test says when it terminated");
            assert!(lost.is_lost(), "{lost}");
            assert!(lock.is_lost());
            assert!(pglock::held().unwrap().is_lost(), "every HeldLock of the call sees it");
            let _ = waited.send(at.elapsed());
            // The body chooses to go on: the call still turns its `Ok` into the
            // lost error, from the release.
            Ok(())
        }
    }
}

/// Terminates the backend holding `name` once `entered` fires; says when.
async fn terminate_holder(
    name: String,
    entered: oneshot::Receiver<()>,
    at: oneshot::Sender<Instant>,
) {
    let observer = connect().await;
    entered.await.expect("the body started");
    let pid = holders(&observer, &name).await[0];
    let when = Instant::now();
    observer
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    let _ = at.send(when);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_body_learns_of_loss() {
    let pool = pool(2).await;
    let name = unique_name("attr-loss");
    let (entered_tx, entered_rx) = oneshot::channel();
    let (at_tx, at_rx) = oneshot::channel();
    let killer = tokio::spawn(terminate_holder(name.clone(), entered_rx, at_tx));
    let (waited_tx, waited_rx) = oneshot::channel();
    let err = watching(&pool, &name, entered_tx, at_rx, waited_tx)
        .await
        .unwrap_err();
    assert!(err.is_lost(), "{err}");
    let waited = waited_rx.await.unwrap();
    killer.await.unwrap();
    // Guard::lost's bound for a closed connection is 20 ms; allow for a busy machine.
    eprintln!("the body heard of the loss {waited:?} after pg_terminate_backend");
    assert!(
        waited < Duration::from_millis(500),
        "the body heard of the loss {waited:?} after the termination"
    );
    // The lock is free for others (the server released it with the session).
    let other = pglock::advisory(name.as_str())
        .timeout(Duration::from_secs(2))
        .acquire(&pool)
        .await
        .unwrap();
    other.release().await.unwrap();
}

#[pglock::advisory(name, pool = pool, on_lost = cancel)]
async fn cancelled_on_loss(
    pool: &Pool,
    name: &str,
    entered: oneshot::Sender<()>,
    dropped: Arc<AtomicBool>,
) -> Result<(), pglock::Error> {
    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let _flag = SetOnDrop(dropped);
    let _ = entered.send(());
    tokio::time::sleep(Duration::from_secs(30)).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_lost_cancel_stops_the_body() {
    let pool = pool(2).await;
    let name = unique_name("attr-loss-cancel");
    let (entered_tx, entered_rx) = oneshot::channel();
    let (at_tx, at_rx) = oneshot::channel();
    let dropped = Arc::new(AtomicBool::new(false));
    let killer = tokio::spawn(terminate_holder(name.clone(), entered_rx, at_tx));
    let err = tokio::time::timeout(
        Duration::from_secs(10),
        cancelled_on_loss(&pool, &name, entered_tx, dropped.clone()),
    )
    .await
    .expect("the body was stopped, not waited for")
    .unwrap_err();
    let waited = at_rx.await.unwrap().elapsed();
    killer.await.unwrap();
    assert!(err.is_lost(), "{err}");
    eprintln!("on_lost = cancel returned {waited:?} after pg_terminate_backend");
    assert!(
        dropped.load(Ordering::SeqCst),
        "the body's future was dropped"
    );
    assert!(
        waited < Duration::from_millis(500),
        "stopped {waited:?} after the termination"
    );
}

#[pglock::advisory(name, pool = pool)]
async fn hands_out_its_lock(pool: &Pool, name: &str) -> Result<pglock::HeldLock, pglock::Error> {
    Ok(pglock::held().expect("inside the body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_outliving_its_call_is_no_longer_held() {
    let pool = pool(1).await;
    let observer = connect().await;
    let name = unique_name("attr-loss-after");
    let lock = hands_out_its_lock(&pool, &name).await.unwrap();
    assert!(lock.is_lost(), "the call returned: the lock was released");
    let err = tokio::time::timeout(Duration::from_secs(2), lock.lost())
        .await
        .expect("completes at once after the call");
    assert!(err.is_lost(), "{err}");
    assert!(
        eventually(Duration::from_secs(1), || async {
            holders(&observer, &name).await.is_empty()
        })
        .await
    );
}
