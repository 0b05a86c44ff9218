//! Errors: a deadlock between two sessions fails exactly one of
//! them with `is_deadlock()`; a full lock table (throwaway cluster with
//! `max_locks_per_transaction = 10`) is `is_lock_table_full()` naming the setting
//! and leaves the session usable; a terminated session is `is_connection_lost()`;
//! SQLSTATEs are reachable through `code()` and `source()`; messages name the lock.

use std::error::Error as _;
use std::time::Duration;

use pglock_tests::{
    advisory_locks_of, connect, connect_to, eventually, lock_rows, pid_of, session, unique_name,
    wait_until_waiting, Cluster,
};
use tokio_postgres::error::SqlState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlock_between_two_sessions_fails_exactly_one() {
    let observer = connect().await;
    let a = session().await;
    let b = session().await;
    let (a_pid, b_pid) = (pid_of(a.client()).await, pid_of(b.client()).await);
    let k1 = unique_name("errors-deadlock-1");
    let k2 = unique_name("errors-deadlock-2");
    let a1 = pglock::advisory(k1.as_str()).acquire(&a).await.unwrap();
    let b2 = pglock::advisory(k2.as_str()).acquire(&b).await.unwrap();

    // A waits for k2 (held by B) ...
    let (a_clone, k2_clone) = (a.clone(), k2.clone());
    let a_waits =
        tokio::spawn(async move { pglock::advisory(k2_clone.as_str()).acquire(&a_clone).await });
    wait_until_waiting(&observer, &k2, Some(a_pid)).await;
    // ... and B for k1 (held by A): a cycle the server breaks.
    let (b_clone, k1_clone) = (b.clone(), k1.clone());
    let b_waits =
        tokio::spawn(async move { pglock::advisory(k1_clone.as_str()).acquire(&b_clone).await });

    // The server fails one wait (after deadlock_timeout); the other keeps waiting
    // for the victim's lock.
    let (mut a_waits, mut b_waits) = (a_waits, b_waits);
    let (victim, survivor, victim_lock, survivor_lock, survivor_pid) = tokio::select! {
        r = &mut a_waits => (r.unwrap(), b_waits, a1, b2, b_pid),
        r = &mut b_waits => (r.unwrap(), a_waits, b2, a1, a_pid),
    };
    let err = victim.expect_err("the server breaks the cycle by failing one wait");
    assert!(err.is_deadlock(), "{err:?}");
    assert_eq!(err.code(), Some(&SqlState::T_R_DEADLOCK_DETECTED));
    assert!(err.to_string().contains("deadlock"), "{err}");
    let waited_for = victim_lock.name().unwrap().to_string();
    let rows = lock_rows(&observer, &waited_for).await;
    assert!(
        rows.iter().any(|r| r.pid == survivor_pid && !r.granted),
        "the survivor should still be waiting: {rows:?}"
    );
    // The victim gives up what it holds: the survivor proceeds.
    victim_lock.release().await.unwrap();
    let got = survivor.await.unwrap().expect("the survivor proceeds");
    assert_eq!(
        pglock_tests::holders(&observer, &waited_for).await,
        vec![survivor_pid]
    );
    got.release().await.unwrap();
    survivor_lock.release().await.unwrap();
    assert!(lock_rows(&observer, &k1).await.is_empty());
    assert!(lock_rows(&observer, &k2).await.is_empty());
}

/// The lock table of a throwaway server is filled by one session: the error says
/// so and names the setting to raise, the session stays usable, and releasing
/// everything leaves no rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_lock_table_is_its_own_error() {
    let cluster = Cluster::start(&[("max_locks_per_transaction", "10")])
        .expect("a throwaway cluster (PostgreSQL server binaries)");
    let url = cluster.url();
    let observer = connect_to(&url).await;
    let s = pglock::Session::new(connect_to(&url).await);
    let pid = pid_of(s.client()).await;
    // Connected up front: with the table full, even logging in fails.
    let other = pglock::Session::new(connect_to(&url).await);

    let mut guards = Vec::new();
    let err = loop {
        // The table holds roughly 10 × (40 connections + workers): far below this.
        assert!(guards.len() < 20_000, "the lock table never filled up");
        match pglock::advisory(guards.len() as i64 + 1)
            .timeout(Duration::from_secs(5))
            .acquire(&s)
            .await
        {
            Ok(g) => guards.push(g),
            Err(e) => break e,
        }
    };
    assert!(err.is_lock_table_full(), "{err:?}");
    assert_eq!(err.code(), Some(&SqlState::OUT_OF_MEMORY), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("max_locks_per_transaction"), "{text}");
    assert!(
        text.contains(&format!("key {}", guards.len() + 1)),
        "{text}"
    );
    assert!(guards.len() > 100, "full after only {} locks", guards.len());

    // The session still works, and still holds what it got.
    s.client().query_one("SELECT 1", &[]).await.unwrap();
    assert_eq!(advisory_locks_of(&observer, pid).await, guards.len() as i64);
    // Other sessions are refused too, with the same error, while it is full.
    let err = pglock::advisory(unique_name("errors-full-other").as_str())
        .acquire(&other)
        .await
        .unwrap_err();
    assert!(err.is_lock_table_full(), "{err:?}");

    // Release half explicitly, drop the rest.
    let rest = guards.split_off(guards.len() / 2);
    for g in guards {
        g.release().await.unwrap();
    }
    drop(rest);
    assert!(
        eventually(Duration::from_secs(20), || async {
            advisory_locks_of(&observer, pid).await == 0
        })
        .await,
        "locks left after releasing everything"
    );
    assert_eq!(pglock_tests::advisory_lock_count(&observer).await, 0);
    // And there is room again.
    pglock::advisory(unique_name("errors-full-after").as_str())
        .acquire(&s)
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
}

#[tokio::test]
async fn terminated_session_is_connection_lost() {
    let observer = connect().await;
    let s = session().await;
    let pid = pid_of(s.client()).await;
    let name = unique_name("errors-terminated");
    let terminated: bool = observer
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(terminated);
    // Whether or not the client has noticed yet, acquiring says the connection is
    // gone.
    for timeout in [None, Some(Duration::ZERO), Some(Duration::from_secs(1))] {
        let mut lock = pglock::advisory(name.as_str());
        if let Some(t) = timeout {
            lock = lock.timeout(t);
        }
        let err = lock.acquire(&s).await.unwrap_err();
        assert!(err.is_connection_lost(), "{timeout:?}: {err:?}");
        assert!(!err.is_not_acquired());
    }
    assert!(eventually(Duration::from_secs(5), || async { s.is_closed() }).await);
    let err = pglock::advisory(name.as_str())
        .try_acquire(&s)
        .await
        .unwrap_err();
    assert!(err.is_connection_lost(), "{err:?}");
    assert!(lock_rows(&observer, &name).await.is_empty());
}

/// Not-acquired errors: SQLSTATE 55P03 (or none, for a refused try) through
/// `code()`, the driver error through `source()`, and a message naming the lock
/// and the timeout.
#[tokio::test]
async fn codes_sources_and_messages() {
    let holder = session().await;
    let s = session().await;
    let name = unique_name("errors-messages");
    let held = pglock::advisory(name.as_str())
        .acquire(&holder)
        .await
        .unwrap();

    let err = pglock::advisory(name.as_str())
        .timeout(Duration::from_millis(30))
        .acquire(&s)
        .await
        .unwrap_err();
    assert!(err.is_not_acquired());
    assert_eq!(err.kind(), pglock::ErrorKind::NotAcquired);
    if let Some(code) = err.code() {
        assert_eq!(code, &SqlState::LOCK_NOT_AVAILABLE);
        assert!(err.source().is_some());
    }
    let text = err.to_string();
    assert!(text.contains(&name), "{text}");
    assert!(text.contains("30ms"), "{text}");
    assert!(
        text.contains(&pid_of(holder.client()).await.to_string()),
        "{text}"
    );
    assert_eq!(
        err.lock().map(|l| l.lock_key()),
        Some(pglock::LockKey::Big(pglock::key_for(&name).unwrap()))
    );

    // A raw key is named by its number.
    let raw = -(i64::from(std::process::id()) << 20) - 42;
    let g = pglock::advisory(raw).acquire(&s).await.unwrap();
    let other = session().await;
    let err = pglock::advisory(raw)
        .timeout(Duration::ZERO)
        .acquire(&other)
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&format!("key {raw}")), "{err}");
    g.release().await.unwrap();

    // The driver error behind a connection failure is reachable too.
    held.release().await.unwrap();
    drop(holder);
    let closed = session().await;
    let pid = pid_of(closed.client()).await;
    let observer = connect().await;
    observer
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    let err = pglock::advisory(name.as_str())
        .acquire(&closed)
        .await
        .unwrap_err();
    assert!(err.is_connection_lost());
    assert!(err.source().is_some(), "{err:?}");
    assert!(err.to_string().contains(&name), "{err}");
}

/// A pool that cannot connect says what the server said, with its SQLSTATE.
#[tokio::test]
async fn pool_errors_carry_the_servers_reason() {
    let url = pglock_tests::database_url().await;
    let mut config: tokio_postgres::Config = url.parse().unwrap();
    config.dbname("pglock_no_such_database");
    let manager = deadpool_postgres::Manager::new(config, tokio_postgres::NoTls);
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(1)
        .build()
        .unwrap();
    let err = pglock::advisory("x").acquire(&pool).await.unwrap_err();
    assert!(err.is_pool(), "{err:?}");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_CATALOG_NAME),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("database \"pglock_no_such_database\" does not exist")
            && text.contains("3D000"),
        "{text}"
    );
}

/// A backend terminated while it waits is named as such, not as "db error".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_backend_is_named() {
    let fx = pglock_tests::Fixture::new("errors-terminated").await;
    let holder = fx.hold_elsewhere().await;
    let pool = pglock_tests::pool(1).await;
    let waiter = tokio::spawn({
        let (pool, name) = (pool.clone(), fx.name.clone());
        async move { pglock::advisory(name.as_str()).acquire(&pool).await }
    });
    pglock_tests::wait_until_waiting(&fx.observer, &fx.name, None).await;
    let waiting = fx
        .rows()
        .await
        .into_iter()
        .find(|r| !r.granted)
        .unwrap()
        .pid;
    fx.observer
        .execute("SELECT pg_terminate_backend($1)", &[&waiting])
        .await
        .unwrap();
    let err = waiter.await.unwrap().unwrap_err();
    let text = err.to_string();
    assert!(err.is_connection_lost(), "{err:?}");
    assert!(
        text.contains("terminated") && text.contains("57P01"),
        "{text}"
    );
    assert!(!text.contains(": db error"), "{text}");
    drop(holder);
}
