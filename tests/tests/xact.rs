//! Transaction-level locks: held until commit and until rollback; `try_acquire_in`
//! answers `false` when busy; a timed-out or refused attempt leaves the
//! transaction usable with its `lock_timeout` as it was; no timeout waits
//! whatever the transaction's `lock_timeout`; the same through a deadpool
//! transaction.

use std::time::Duration;

use pglock_tests::{connect, holders, lock_rows, pid_of, pool, session, unique_name};

async fn show_lock_timeout(tx: &tokio_postgres::Transaction<'_>) -> String {
    tx.query_one("SHOW lock_timeout", &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn held_until_commit_and_until_rollback() {
    let observer = connect().await;
    let mut client = connect().await;
    let pid = pid_of(&client).await;
    for commit in [true, false] {
        let name = unique_name("xact-held");
        let tx = client.transaction().await.unwrap();
        pglock::advisory(name.as_str())
            .xact()
            .acquire_in(&tx)
            .await
            .unwrap();
        assert_eq!(holders(&observer, &name).await, vec![pid]);
        // Other statements in the transaction do not end it.
        tx.query_one("SELECT 1", &[]).await.unwrap();
        assert_eq!(holders(&observer, &name).await, vec![pid]);
        if commit {
            tx.commit().await.unwrap();
        } else {
            tx.rollback().await.unwrap();
        }
        assert!(
            lock_rows(&observer, &name).await.is_empty(),
            "held after {}",
            if commit { "commit" } else { "rollback" }
        );
    }
}

/// The transaction lock excludes session locks of others while it lasts.
#[tokio::test]
async fn excludes_session_locks_and_shared_xact_locks_coexist() {
    let observer = connect().await;
    let pool = pool(1).await;
    let mut client = connect().await;
    let mut client2 = connect().await;
    let name = unique_name("xact-excludes");
    let tx = client.transaction().await.unwrap();
    pglock::advisory(name.as_str())
        .xact()
        .acquire_in(&tx)
        .await
        .unwrap();
    assert!(pglock::advisory(name.as_str())
        .try_acquire(&pool)
        .await
        .unwrap()
        .is_none());
    tx.commit().await.unwrap();
    let guard = pglock::advisory(name.as_str())
        .try_acquire(&pool)
        .await
        .unwrap()
        .expect("free after commit");
    guard.release().await.unwrap();

    let shared = unique_name("xact-shared");
    let tx1 = client.transaction().await.unwrap();
    let tx2 = client2.transaction().await.unwrap();
    let lock = pglock::advisory(shared.as_str()).shared().xact();
    lock.acquire_in(&tx1).await.unwrap();
    assert!(lock.try_acquire_in(&tx2).await.unwrap());
    let rows = lock_rows(&observer, &shared).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r.granted && r.mode == "ShareLock"));
    tx1.rollback().await.unwrap();
    tx2.commit().await.unwrap();
    assert!(lock_rows(&observer, &shared).await.is_empty());
}

#[tokio::test]
async fn try_acquire_in_answers_false_when_busy_and_tx_stays_usable() {
    let holder = session().await;
    let mut client = connect().await;
    let name = unique_name("xact-try-busy");
    let held = pglock::advisory(name.as_str())
        .acquire(&holder)
        .await
        .unwrap();
    let tx = client.transaction().await.unwrap();
    let lock = pglock::advisory(name.as_str()).xact();
    assert!(!lock.try_acquire_in(&tx).await.unwrap());
    let err = lock
        .clone()
        .timeout(Duration::ZERO)
        .acquire_in(&tx)
        .await
        .unwrap_err();
    assert!(err.is_not_acquired(), "{err:?}");
    assert_eq!(
        err.holder().map(|h| h.pid),
        Some(pid_of(holder.client()).await)
    );
    tx.query_one("SELECT 1", &[]).await.unwrap();
    held.release().await.unwrap();
    assert!(lock.try_acquire_in(&tx).await.unwrap());
    tx.commit().await.unwrap();
}

/// A timed-out `acquire_in` (and `try_acquire_in` with a timeout) leaves the
/// transaction usable — earlier work in it survives and it commits — and its
/// `lock_timeout` as it was; a successful one too.
#[tokio::test]
async fn timed_out_acquire_in_leaves_the_transaction_usable() {
    let observer = connect().await;
    let holder = session().await;
    let mut client = connect().await;
    let table = format!("pglock_xact_usable_{}", std::process::id());
    client
        .batch_execute(&format!(
            "CREATE TEMP TABLE {table} (v int); SET lock_timeout = '3s'"
        ))
        .await
        .unwrap();
    let pid = pid_of(&client).await;
    let name = unique_name("xact-timeout");
    let held = pglock::advisory(name.as_str())
        .acquire(&holder)
        .await
        .unwrap();

    let tx = client.transaction().await.unwrap();
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = '7s'; INSERT INTO {table} VALUES (1)"
    ))
    .await
    .unwrap();
    let lock = pglock::advisory(name.as_str())
        .xact()
        .timeout(Duration::from_millis(100));
    let err = lock.acquire_in(&tx).await.unwrap_err();
    assert!(err.is_not_acquired(), "{err:?}");
    assert_eq!(err.timeout(), Some(Duration::from_millis(100)));
    assert!(err.to_string().contains(&name), "{err}");
    tx.query_one("SELECT 1", &[])
        .await
        .expect("tx still usable");
    assert_eq!(show_lock_timeout(&tx).await, "7s");
    assert!(!lock.try_acquire_in(&tx).await.unwrap());
    assert_eq!(show_lock_timeout(&tx).await, "7s");
    tx.batch_execute(&format!("INSERT INTO {table} VALUES (2)"))
        .await
        .unwrap();

    // Freed: the same call succeeds, still leaving lock_timeout alone.
    held.release().await.unwrap();
    lock.acquire_in(&tx).await.unwrap();
    assert_eq!(show_lock_timeout(&tx).await, "7s");
    assert_eq!(holders(&observer, &name).await, vec![pid]);
    tx.commit().await.unwrap();

    let n: i64 = client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2, "work done before and after the timeout was committed");
    let after: String = client
        .query_one("SHOW lock_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(after, "3s");
    assert!(lock_rows(&observer, &name).await.is_empty());
}

/// Without a timeout, `acquire_in` waits until granted even when the
/// transaction's `lock_timeout` is short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_timeout_waits_whatever_the_transaction_lock_timeout() {
    let observer = connect().await;
    let holder = session().await;
    let name = unique_name("xact-forever");
    let held = pglock::advisory(name.as_str())
        .acquire(&holder)
        .await
        .unwrap();
    let mut client = connect().await;
    let pid = pid_of(&client).await;
    let n = name.clone();
    let task = tokio::spawn(async move {
        let tx = client.transaction().await.unwrap();
        tx.batch_execute("SET LOCAL lock_timeout = '50ms'")
            .await
            .unwrap();
        pglock::advisory(n.as_str()).xact().acquire_in(&tx).await?;
        let lt: String = tx.query_one("SHOW lock_timeout", &[]).await?.get(0);
        tx.commit().await?;
        Ok::<_, pglock::Error>(lt)
    });
    pglock_tests::wait_until_waiting(&observer, &name, Some(pid)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!task.is_finished(), "the wait ended: {:?}", task.await);
    held.release().await.unwrap();
    assert_eq!(task.await.unwrap().unwrap(), "50ms");
    assert!(lock_rows(&observer, &name).await.is_empty());
}

#[tokio::test]
async fn deadpool_transactions_work_too() {
    let observer = connect().await;
    let holder = session().await;
    let pool = pool(1).await;
    let name = unique_name("xact-deadpool");

    let mut conn = pool.get().await.unwrap();
    let pid = pid_of(&conn).await;
    let tx = conn.transaction().await.unwrap();
    pglock::advisory(name.as_str())
        .xact()
        .acquire_in(&tx)
        .await
        .unwrap();
    assert_eq!(holders(&observer, &name).await, vec![pid]);
    tx.commit().await.unwrap();
    assert!(lock_rows(&observer, &name).await.is_empty());

    let held = pglock::advisory(name.as_str())
        .acquire(&holder)
        .await
        .unwrap();
    let tx = conn.transaction().await.unwrap();
    tx.batch_execute("SET LOCAL lock_timeout = '7s'")
        .await
        .unwrap();
    let lock = pglock::advisory(name.as_str())
        .xact()
        .timeout(Duration::from_millis(50));
    assert!(lock.acquire_in(&tx).await.unwrap_err().is_not_acquired());
    assert!(!lock.try_acquire_in(&tx).await.unwrap());
    let lt: String = tx.query_one("SHOW lock_timeout", &[]).await.unwrap().get(0);
    assert_eq!(lt, "7s");
    held.release().await.unwrap();
    assert!(lock.try_acquire_in(&tx).await.unwrap());
    assert_eq!(holders(&observer, &name).await, vec![pid]);
    tx.rollback().await.unwrap();
    assert!(lock_rows(&observer, &name).await.is_empty());
    drop(conn);

    // The connection went back to the pool holding nothing.
    let conn = pool.get().await.unwrap();
    assert_eq!(
        pglock_tests::advisory_locks_of(&observer, pid_of(&conn).await).await,
        0
    );
}

#[tokio::test]
async fn pair_keys_in_transactions() {
    let observer = connect().await;
    let mut client = connect().await;
    let pid = pid_of(&client).await;
    let (a, b) = (-(std::process::id() as i32), 77);
    let tx = client.transaction().await.unwrap();
    pglock::advisory((a, b))
        .xact()
        .acquire_in(&tx)
        .await
        .unwrap();
    let rows = pglock_tests::pair_lock_rows(&observer, a, b).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].pid, pid);
    tx.commit().await.unwrap();
    assert!(pglock_tests::pair_lock_rows(&observer, a, b)
        .await
        .is_empty());
}
