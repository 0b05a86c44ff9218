//! Introspection: `pglock::status` reports holders (pid, mode, application_name,
//! client_addr, backend_start) and waiters in queue order, agrees with the
//! harness's own `pg_locks` rows for negative and pair keys, and says free when
//! free; `pglock::release_all` frees everything a session holds.

use std::time::{Duration, SystemTime};

use pglock::Mode;
use pglock_tests::{
    advisory_locks_of, bigint_lock_rows, connect, holders, lock_rows, pair_lock_rows, pid_of,
    session, unique_name, wait_until_waiting,
};
use tokio_postgres::Client;

/// What the server says about a session, read by the harness's own SQL.
async fn activity(observer: &Client, pid: i32) -> (String, Option<String>, SystemTime) {
    let row = observer
        .query_one(
            "SELECT application_name, host(client_addr), backend_start \
             FROM pg_stat_activity WHERE pid = $1",
            &[&pid],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

#[tokio::test]
async fn status_describes_the_holder() {
    let observer = connect().await;
    let holder = session().await;
    holder
        .client()
        .batch_execute("SET application_name = 'inspect-holder'")
        .await
        .unwrap();
    let pid = pid_of(holder.client()).await;
    let name = unique_name("inspect-holder");
    let guard = pglock::advisory(name.as_str())
        .acquire(&holder)
        .await
        .unwrap();

    let status = pglock::status(&observer, name.as_str()).await.unwrap();
    assert!(!status.is_free());
    assert_eq!(
        status.key,
        pglock::LockKey::Big(pglock::key_for(&name).unwrap())
    );
    assert_eq!(status.holders.len(), 1, "{status:?}");
    assert!(status.waiters.is_empty());
    let h = &status.holders[0];
    let (app, addr, started) = activity(&observer, pid).await;
    assert_eq!(h.pid, pid);
    assert_eq!(h.mode, Mode::Exclusive);
    assert!(h.granted);
    assert_eq!(h.application_name.as_deref(), Some("inspect-holder"));
    assert_eq!(h.application_name.as_deref(), Some(app.as_str()));
    assert_eq!(h.client_addr.map(|a| a.to_string()), addr);
    assert_eq!(h.backend_start, Some(started));
    assert!(h.wait_start.is_none());

    guard.release().await.unwrap();
    let status = pglock::status(&observer, name.as_str()).await.unwrap();
    assert!(status.is_free(), "{status:?}");
    assert!(status.holders.is_empty() && status.waiters.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_waiters_in_queue_order() {
    let observer = connect().await;
    let holder = session().await;
    let name = unique_name("inspect-waiters");
    let guard = pglock::advisory(name.as_str())
        .acquire(&holder)
        .await
        .unwrap();

    let mut waiters = Vec::new();
    let mut tasks = Vec::new();
    for shared in [false, true, false] {
        let s = session().await;
        let pid = pid_of(s.client()).await;
        let n = name.clone();
        tasks.push(tokio::spawn(async move {
            let mut lock = pglock::advisory(n.as_str()).timeout(Duration::from_secs(30));
            if shared {
                lock = lock.shared();
            }
            lock.acquire(&s).await?.release().await
        }));
        // Queue them one after the other.
        wait_until_waiting(&observer, &name, Some(pid)).await;
        waiters.push((
            pid,
            if shared {
                Mode::Shared
            } else {
                Mode::Exclusive
            },
        ));
    }

    let status = pglock::status(&observer, name.as_str()).await.unwrap();
    assert_eq!(
        status.holders.iter().map(|h| h.pid).collect::<Vec<_>>(),
        vec![pid_of(holder.client()).await]
    );
    assert_eq!(
        status
            .waiters
            .iter()
            .map(|w| (w.pid, w.mode))
            .collect::<Vec<_>>(),
        waiters,
        "{status:?}"
    );
    assert!(status.waiters.iter().all(|w| !w.granted));
    // PostgreSQL 14+ reports when each started waiting, in order.
    let starts: Vec<_> = status.waiters.iter().map(|w| w.wait_start).collect();
    if starts.iter().all(Option::is_some) {
        assert!(starts.windows(2).all(|w| w[0] <= w[1]), "{starts:?}");
    }
    // The harness sees the same waiters.
    let mut seen: Vec<i32> = lock_rows(&observer, &name)
        .await
        .iter()
        .filter(|r| !r.granted)
        .map(|r| r.pid)
        .collect();
    seen.sort();
    let mut expected: Vec<i32> = waiters.iter().map(|w| w.0).collect();
    expected.sort();
    assert_eq!(seen, expected);

    guard.release().await.unwrap();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert!(pglock::status(&observer, name.as_str())
        .await
        .unwrap()
        .is_free());
}

#[tokio::test]
async fn status_shows_shared_holders() {
    let observer = connect().await;
    let (a, b) = (session().await, session().await);
    let name = unique_name("inspect-shared");
    let ga = pglock::advisory(name.as_str())
        .shared()
        .acquire(&a)
        .await
        .unwrap();
    let gb = pglock::advisory(name.as_str())
        .shared()
        .acquire(&b)
        .await
        .unwrap();
    let status = pglock::status(&observer, name.as_str()).await.unwrap();
    let mut pids: Vec<i32> = status.holders.iter().map(|h| h.pid).collect();
    pids.sort();
    let mut expected = holders(&observer, &name).await;
    expected.sort();
    assert_eq!(pids, expected);
    assert_eq!(pids.len(), 2);
    assert!(status.holders.iter().all(|h| h.mode == Mode::Shared));
    ga.release().await.unwrap();
    gb.release().await.unwrap();
}

/// Negative keys and pairs: `status` finds exactly what the harness's
/// independent split finds.
#[tokio::test]
async fn status_agrees_with_pg_locks_for_negative_and_pair_keys() {
    let observer = connect().await;
    let s = session().await;
    let pid = pid_of(s.client()).await;
    let salt = i64::from(std::process::id()) << 12;
    for key in [
        -1 - salt,
        i64::MIN + salt,
        -(1 << 33) - salt,
        -4_294_967_296 - salt,
    ] {
        let guard = pglock::advisory(key).acquire(&s).await.unwrap();
        let rows = bigint_lock_rows(&observer, key).await;
        let status = pglock::status(&observer, key).await.unwrap();
        assert_eq!(rows.iter().map(|r| r.pid).collect::<Vec<_>>(), vec![pid]);
        assert_eq!(
            status.holders.iter().map(|h| h.pid).collect::<Vec<_>>(),
            vec![pid],
            "key {key}"
        );
        guard.release().await.unwrap();
        assert!(pglock::status(&observer, key).await.unwrap().is_free());
    }
    let (a, b) = (-(std::process::id() as i32), -1);
    let guard = pglock::advisory((a, b)).acquire(&s).await.unwrap();
    let rows = pair_lock_rows(&observer, a, b).await;
    assert_eq!(rows.iter().map(|r| r.pid).collect::<Vec<_>>(), vec![pid]);
    let status = pglock::status(&observer, (a, b)).await.unwrap();
    assert_eq!(
        status.holders.iter().map(|h| h.pid).collect::<Vec<_>>(),
        vec![pid]
    );
    // The bigint key of the same bits is another lock: free.
    let same_bits = (i64::from(a) << 32) | i64::from(b as u32);
    assert!(pglock::status(&observer, same_bits)
        .await
        .unwrap()
        .is_free());
    guard.release().await.unwrap();
}

#[tokio::test]
async fn release_all_frees_everything_of_a_session() {
    let observer = connect().await;
    let s = session().await;
    let pid = pid_of(s.client()).await;
    let names: Vec<String> = (0..3)
        .map(|i| unique_name(&format!("inspect-all-{i}")))
        .collect();
    let mut guards = Vec::new();
    for name in &names {
        guards.push(pglock::advisory(name.as_str()).acquire(&s).await.unwrap());
    }
    // Stacked shared holds too.
    let stacked = unique_name("inspect-all-stacked");
    guards.push(
        pglock::advisory(stacked.as_str())
            .shared()
            .acquire(&s)
            .await
            .unwrap(),
    );
    guards.push(
        pglock::advisory(stacked.as_str())
            .shared()
            .acquire(&s)
            .await
            .unwrap(),
    );
    let shared = unique_name("inspect-all-shared");
    guards.push(
        pglock::advisory(shared.as_str())
            .shared()
            .acquire(&s)
            .await
            .unwrap(),
    );
    // Another session's lock is not touched.
    let other = session().await;
    let others = unique_name("inspect-all-other");
    let kept = pglock::advisory(others.as_str())
        .acquire(&other)
        .await
        .unwrap();

    assert_eq!(advisory_locks_of(&observer, pid).await, 5);
    pglock::release_all(s.client()).await.unwrap();
    assert_eq!(advisory_locks_of(&observer, pid).await, 0);
    for name in names.iter().chain([&shared, &stacked]) {
        assert!(lock_rows(&observer, name).await.is_empty(), "{name}");
    }
    assert_eq!(
        holders(&observer, &others).await,
        vec![pid_of(other.client()).await]
    );
    // The guards find their locks gone.
    for g in guards {
        assert!(g.release().await.unwrap_err().is_lost());
    }
    kept.release().await.unwrap();
}
