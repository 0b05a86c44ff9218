//! A `Locker` as the attribute's default source (`set_default_locker`): the
//! attributed functions' locks share its few connections. (A test binary of its
//! own: the default source is process-wide.)

use std::time::Duration;

use pglock_tests::{connect, holders, pool, unique_name};

#[pglock::advisory(name, timeout = "0s", side_effect = Skip)]
async fn report(name: &str, observer: &tokio_postgres::Client) -> Option<Vec<i32>> {
    Some(holders(observer, name).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attributed_functions_lock_through_the_default_locker() {
    let observer = connect().await;
    let pool = pool(3).await;
    let locker = pglock::Locker::new(&pool, 1).await.unwrap();
    let shared_pid: i32 = {
        // The locker's one shared connection: whatever holds a free lock.
        let probe = unique_name("default-locker-probe");
        let guard = pglock::advisory(probe.as_str())
            .try_acquire(&locker)
            .await
            .unwrap()
            .unwrap();
        let pid = guard.backend_pid().unwrap();
        guard.release().await.unwrap();
        pid
    };
    pglock::set_default_locker(locker.clone()).unwrap();
    assert!(pglock::default_pool().is_none());
    assert!(pglock::set_default_pool(pool.clone())
        .unwrap_err()
        .is_misuse());

    let name = unique_name("default-locker");
    let seen = report(&name, &observer).await.expect("ran");
    assert_eq!(seen, vec![shared_pid], "held on the locker's connection");
    // Busy while another guard of the locker holds it: skipped.
    let guard = pglock::advisory(name.as_str())
        .timeout(Duration::from_secs(1))
        .acquire(&locker)
        .await
        .unwrap();
    assert!(report(&name, &observer).await.is_none());
    guard.release().await.unwrap();
    assert!(holders(&observer, &name).await.is_empty());
}
