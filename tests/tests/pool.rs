//! Pools: a guard's pooled connection goes back only after its lock is released
//! and with no setting changed; an exhausted, closed or unreachable pool is a pool
//! error; two pooled guards on one key in one task exclude each other (as the
//! crate docs say).

use std::time::Duration;

use pglock_tests::{advisory_locks_of, connect, holders, pid_of, pool, unique_name};

/// `lock_timeout` as the connection has it now, and the server's default for it
/// (both in the setting's unit, from `pg_settings`).
async fn lock_timeout_and_default(client: &tokio_postgres::Client) -> (String, String) {
    let row = client
        .query_one(
            "SELECT setting, reset_val FROM pg_settings WHERE name = 'lock_timeout'",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// The connection that comes out of a one-connection pool right after a guard was
/// dropped holds no advisory lock — not eventually, at once — and has the server's
/// `lock_timeout`. Repeated, since the drop's unlock runs in the background.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_returns_to_the_pool_only_after_unlock() {
    let observer = connect().await;
    let pool = pool(1).await;
    for i in 0..25 {
        let name = unique_name("pool-return");
        let guard = match i % 3 {
            0 => pglock::advisory(name.as_str())
                .acquire(&pool)
                .await
                .unwrap(),
            1 => pglock::advisory(name.as_str())
                .timeout(Duration::from_secs(5))
                .acquire(&pool)
                .await
                .unwrap(),
            _ => pglock::advisory(name.as_str())
                .shared()
                .timeout(Duration::ZERO)
                .acquire(&pool)
                .await
                .unwrap(),
        };
        let pid = pid_of(guard.client()).await;
        assert_eq!(holders(&observer, &name).await, vec![pid]);
        if i % 2 == 0 {
            drop(guard);
        } else {
            guard.release().await.unwrap();
        }
        let conn = pool.get().await.unwrap();
        assert_eq!(pid_of(&conn).await, pid, "one-connection pool");
        // Observed by another session while we hold the connection: it is idle,
        // so anything it holds now it would have held when handed out.
        assert_eq!(
            advisory_locks_of(&observer, pid).await,
            0,
            "iteration {i}: the pool handed out a connection that still held a lock"
        );
        let (now, default) = lock_timeout_and_default(&conn).await;
        assert_eq!(now, default, "iteration {i}: lock_timeout changed");
    }
}

/// A timed-out attempt also gives the connection back clean.
#[tokio::test]
async fn failed_attempts_give_the_connection_back_clean() {
    let observer = connect().await;
    let holder_pool = pool(1).await;
    let pool = pool(1).await;
    let name = unique_name("pool-failed-attempt");
    let held = pglock::advisory(name.as_str())
        .acquire(&holder_pool)
        .await
        .unwrap();
    for timeout in [Duration::ZERO, Duration::from_millis(50)] {
        let err = pglock::advisory(name.as_str())
            .timeout(timeout)
            .acquire(&pool)
            .await
            .unwrap_err();
        assert!(err.is_not_acquired(), "{err:?}");
        assert!(pglock::advisory(name.as_str())
            .timeout(timeout)
            .try_acquire(&pool)
            .await
            .unwrap()
            .is_none());
        let conn = pool.get().await.unwrap();
        let pid = pid_of(&conn).await;
        assert_eq!(advisory_locks_of(&observer, pid).await, 0);
        let (now, default) = lock_timeout_and_default(&conn).await;
        assert_eq!(
            now, default,
            "lock_timeout changed after timeout {timeout:?}"
        );
    }
    held.release().await.unwrap();
}

#[tokio::test]
async fn exhausted_pool_is_a_pool_error() {
    let url = pglock_tests::database_url().await;
    let config: tokio_postgres::Config = url.parse().unwrap();
    let manager = deadpool_postgres::Manager::new(config, tokio_postgres::NoTls);
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(1)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_millis(100)))
        .build()
        .unwrap();
    let name = unique_name("pool-exhausted");
    let only = pglock::advisory(name.as_str())
        .acquire(&pool)
        .await
        .unwrap();
    let other = unique_name("pool-exhausted-other");
    let err = pglock::advisory(other.as_str())
        .acquire(&pool)
        .await
        .unwrap_err();
    assert!(err.is_pool(), "{err:?}");
    assert!(!err.is_not_acquired());
    assert!(pglock::advisory(other.as_str())
        .try_acquire(&pool)
        .await
        .unwrap_err()
        .is_pool());
    only.release().await.unwrap();
    // With the connection back, the same call works.
    pglock::advisory(other.as_str())
        .acquire(&pool)
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
}

#[tokio::test]
async fn closed_or_unreachable_pool_is_a_pool_error() {
    let pool = pool(1).await;
    pool.close();
    let err = pglock::advisory(unique_name("pool-closed").as_str())
        .acquire(&pool)
        .await
        .unwrap_err();
    assert!(err.is_pool(), "{err:?}");

    // Nothing listens on port 1.
    let unreachable = pglock_tests::pool_for("postgres://postgres@127.0.0.1:1/postgres", 1);
    let err = pglock::advisory(unique_name("pool-unreachable").as_str())
        .acquire(&unreachable)
        .await
        .unwrap_err();
    assert!(err.is_pool(), "{err:?}");
    assert!(!err.to_string().is_empty());
}

/// Two guards of one pool on one name exclude each other: the second waits for
/// the first in the process (here: times out, or is refused by `try_acquire`),
/// and gets it once the first is released.
#[tokio::test]
async fn two_pooled_guards_on_one_key_exclude_each_other() {
    let observer = connect().await;
    let pool = pool(2).await;
    let name = unique_name("pool-reentrancy");
    let first = pglock::advisory(name.as_str())
        .acquire(&pool)
        .await
        .unwrap();
    let err = pglock::advisory(name.as_str())
        .timeout(Duration::from_millis(100))
        .acquire(&pool)
        .await
        .unwrap_err();
    assert!(err.is_not_acquired(), "{err:?}");
    // It waited in the process, not on a second connection, and does not blame
    // the process's own connection as if it were someone else.
    assert!(err.holder().is_none(), "{err:?}");
    assert!(err.to_string().contains("this process"), "{err}");
    let holder_pid = pid_of(first.client()).await;
    assert!(pglock::advisory(name.as_str())
        .try_acquire(&pool)
        .await
        .unwrap()
        .is_none());
    assert_eq!(holders(&observer, &name).await, vec![holder_pid]);

    first.release().await.unwrap();
    let second = pglock::advisory(name.as_str())
        .timeout(Duration::ZERO)
        .acquire(&pool)
        .await
        .unwrap();
    assert_eq!(
        holders(&observer, &name).await,
        vec![pid_of(second.client()).await]
    );
    second.release().await.unwrap();
}
