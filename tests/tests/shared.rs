//! Shared and exclusive modes: shared holders coexist (two `ShareLock` rows),
//! an exclusive request waits for every shared holder, and a shared request waits
//! for an exclusive holder.

use std::time::Duration;

use pglock::Mode;
use pglock_tests::{connect, lock_rows, pid_of, session, unique_name, wait_until_waiting};

#[tokio::test]
async fn shared_holders_coexist() {
    let observer = connect().await;
    let a = session().await;
    let b = session().await;
    let name = unique_name("shared-coexist");
    let ga = pglock::advisory(name.as_str())
        .shared()
        .acquire(&a)
        .await
        .unwrap();
    let gb = pglock::advisory(name.as_str())
        .shared()
        .timeout(Duration::ZERO)
        .acquire(&b)
        .await
        .expect("a second shared holder is admitted at once");
    assert_eq!(ga.mode(), Mode::Shared);
    let mut expected = vec![pid_of(a.client()).await, pid_of(b.client()).await];
    expected.sort();
    let rows = lock_rows(&observer, &name).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows.iter().all(|r| r.granted && r.mode == "ShareLock"),
        "{rows:?}"
    );
    assert_eq!(rows.iter().map(|r| r.pid).collect::<Vec<_>>(), expected);

    // An exclusive request is refused while they hold it.
    let c = session().await;
    let err = pglock::advisory(name.as_str())
        .timeout(Duration::ZERO)
        .acquire(&c)
        .await
        .unwrap_err();
    assert!(err.is_not_acquired(), "{err:?}");
    assert!(expected.contains(&err.holder().expect("holder known").pid));

    ga.release().await.unwrap();
    gb.release().await.unwrap();
    assert!(lock_rows(&observer, &name).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_waits_for_every_shared_holder() {
    let observer = connect().await;
    let (a, b, c) = (session().await, session().await, session().await);
    let c_pid = pid_of(c.client()).await;
    let name = unique_name("shared-then-exclusive");
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

    let (c2, n) = (c.clone(), name.clone());
    let waiter = tokio::spawn(async move { pglock::advisory(n.as_str()).acquire(&c2).await });
    wait_until_waiting(&observer, &name, Some(c_pid)).await;
    let rows = lock_rows(&observer, &name).await;
    let waiting = rows.iter().find(|r| r.pid == c_pid).unwrap();
    assert!(
        !waiting.granted && waiting.mode == "ExclusiveLock",
        "{rows:?}"
    );

    ga.release().await.unwrap();
    // One shared holder left: still waiting.
    let rows = lock_rows(&observer, &name).await;
    assert!(
        rows.iter().any(|r| r.pid == c_pid && !r.granted),
        "granted while a shared holder remained: {rows:?}"
    );
    assert!(!waiter.is_finished());

    gb.release().await.unwrap();
    let gc = waiter.await.unwrap().unwrap();
    assert_eq!(gc.mode(), Mode::Exclusive);
    let rows = lock_rows(&observer, &name).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].pid == c_pid && rows[0].granted && rows[0].mode == "ExclusiveLock");
    gc.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_waits_for_an_exclusive_holder() {
    let observer = connect().await;
    let (a, b) = (session().await, session().await);
    let b_pid = pid_of(b.client()).await;
    let name = unique_name("exclusive-then-shared");
    let ga = pglock::advisory(name.as_str()).acquire(&a).await.unwrap();

    assert!(pglock::advisory(name.as_str())
        .shared()
        .try_acquire(&b)
        .await
        .unwrap()
        .is_none());
    let err = pglock::advisory(name.as_str())
        .shared()
        .timeout(Duration::from_millis(50))
        .acquire(&b)
        .await
        .unwrap_err();
    assert!(err.is_not_acquired(), "{err:?}");
    assert_eq!(err.holder().map(|h| h.pid), Some(pid_of(a.client()).await));

    let (b2, n) = (b.clone(), name.clone());
    let waiter =
        tokio::spawn(async move { pglock::advisory(n.as_str()).shared().acquire(&b2).await });
    wait_until_waiting(&observer, &name, Some(b_pid)).await;
    let rows = lock_rows(&observer, &name).await;
    assert!(
        rows.iter()
            .any(|r| r.pid == b_pid && !r.granted && r.mode == "ShareLock"),
        "{rows:?}"
    );
    ga.release().await.unwrap();
    let gb = waiter.await.unwrap().unwrap();
    let rows = lock_rows(&observer, &name).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].pid == b_pid && rows[0].granted && rows[0].mode == "ShareLock");
    gb.release().await.unwrap();
}

/// Releasing a shared guard releases the shared hold, not an exclusive one the
/// same session may also have (taken here outside pglock, with plain SQL: two
/// pglock guards of one session exclude each other).
#[tokio::test]
async fn release_matches_the_mode() {
    let observer = connect().await;
    let s = session().await;
    let name = unique_name("shared-release-mode");
    let key = pglock::key_for(&name).unwrap();
    s.client()
        .execute("SELECT pg_advisory_lock($1)", &[&key])
        .await
        .unwrap();
    let shared = pglock::advisory(name.as_str())
        .shared()
        .timeout(Duration::ZERO)
        .acquire(&s)
        .await
        .expect("a session may hold both modes of its own lock");
    // A second pglock guard in the other mode is kept out in the process.
    let err = pglock::advisory(name.as_str())
        .timeout(Duration::ZERO)
        .acquire(&s)
        .await
        .unwrap_err();
    assert!(err.is_not_acquired(), "{err}");
    let modes = |rows: Vec<pglock_tests::LockRow>| {
        let mut m: Vec<String> = rows.into_iter().map(|r| r.mode).collect();
        m.sort();
        m
    };
    assert_eq!(
        modes(lock_rows(&observer, &name).await),
        ["ExclusiveLock", "ShareLock"]
    );
    shared.release().await.unwrap();
    assert_eq!(modes(lock_rows(&observer, &name).await), ["ExclusiveLock"]);
    s.client()
        .execute("SELECT pg_advisory_unlock($1)", &[&key])
        .await
        .unwrap();
    assert!(lock_rows(&observer, &name).await.is_empty());
}
