//! Timeouts: none waits until granted whatever the session's `lock_timeout`; zero
//! tries once and names the holder; a finite timeout gives up with a not-acquired
//! error carrying the timeout, or succeeds when the lock frees in time; no
//! attempt changes a setting; out-of-range timeouts are invalid; after a timeout
//! the lock is never silently held.

use std::time::Duration;

use pglock_tests::{
    advisory_locks_of, connect, holders, pid_of, session, unique_name, wait_until_waiting,
};
use tokio_postgres::error::SqlState;

async fn show_lock_timeout(client: &tokio_postgres::Client) -> String {
    client
        .query_one("SHOW lock_timeout", &[])
        .await
        .unwrap()
        .get(0)
}

/// A session with `lock_timeout = 50ms` still waits without limit when no
/// timeout is given: it is still waiting long after 50 ms and gets the lock once
/// the holder lets go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_timeout_waits_whatever_the_session_lock_timeout() {
    let observer = connect().await;
    let holder = session().await;
    let waiter = session().await;
    waiter
        .client()
        .batch_execute("SET lock_timeout = '50ms'")
        .await
        .unwrap();
    let waiter_pid = pid_of(waiter.client()).await;
    let name = unique_name("timeouts-forever");
    let held = pglock::advisory(name.as_str())
        .acquire(&holder)
        .await
        .unwrap();

    let (w, n) = (waiter.clone(), name.clone());
    let task = tokio::spawn(async move { pglock::advisory(n.as_str()).acquire(&w).await });
    wait_until_waiting(&observer, &name, Some(waiter_pid)).await;
    // Six times the session's lock_timeout: a wait under it would have failed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!task.is_finished(), "the wait ended: {:?}", task.await);
    let rows = pglock_tests::lock_rows(&observer, &name).await;
    assert!(
        rows.iter().any(|r| r.pid == waiter_pid && !r.granted),
        "{rows:?}"
    );

    held.release().await.unwrap();
    let guard = task.await.unwrap().expect("granted once the holder let go");
    assert_eq!(holders(&observer, &name).await, vec![waiter_pid]);
    guard.release().await.unwrap();
    assert_eq!(show_lock_timeout(waiter.client()).await, "50ms");
}

/// Zero is one try: not acquired at once, with the holder's pid and
/// application_name.
#[tokio::test]
async fn zero_timeout_tries_once_and_names_the_holder() {
    let pool = pglock_tests::pool(2).await;
    let name = unique_name("timeouts-zero");
    let held = pglock::advisory(name.as_str())
        .acquire(&pool)
        .await
        .unwrap();
    let holder_pid = pid_of(held.client()).await;
    let app: String = held
        .client()
        .query_one("SHOW application_name", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(app, "pglock-tests");

    // Another process (a pool of its own) is told who holds it.
    let other = pglock_tests::pool(1).await;
    let err = pglock::advisory(name.as_str())
        .timeout(Duration::ZERO)
        .acquire(&other)
        .await
        .unwrap_err();
    assert!(err.is_not_acquired(), "{err:?}");
    assert_eq!(err.timeout(), Some(Duration::ZERO));
    let holder = err.holder().expect("the holder is known");
    assert_eq!(holder.pid, holder_pid);
    assert_eq!(holder.application_name, app);
    assert_eq!(err.lock().and_then(|l| l.lock_name()), Some(name.as_str()));
    let text = err.to_string();
    assert!(
        text.contains(&name) && text.contains(&holder_pid.to_string()),
        "{text}"
    );

    assert!(pglock::advisory(name.as_str())
        .timeout(Duration::ZERO)
        .try_acquire(&pool)
        .await
        .unwrap()
        .is_none());
    // `try_acquire` without a timeout is one try as well.
    assert!(pglock::advisory(name.as_str())
        .try_acquire(&pool)
        .await
        .unwrap()
        .is_none());
    held.release().await.unwrap();
}

#[tokio::test]
async fn finite_timeout_gives_up_with_not_acquired() {
    let holder = session().await;
    let waiter = session().await;
    let waiter_pid = pid_of(waiter.client()).await;
    let observer = connect().await;
    let name = unique_name("timeouts-finite");
    let held = pglock::advisory(name.as_str())
        .acquire(&holder)
        .await
        .unwrap();
    let holder_pid = pid_of(holder.client()).await;

    let timeout = Duration::from_millis(120);
    let err = pglock::advisory(name.as_str())
        .timeout(timeout)
        .acquire(&waiter)
        .await
        .unwrap_err();
    assert!(err.is_not_acquired(), "{err:?}");
    assert_eq!(err.timeout(), Some(timeout));
    assert!(
        err.code().is_none() || err.code() == Some(&SqlState::LOCK_NOT_AVAILABLE),
        "{err:?}"
    );
    assert_eq!(err.holder().map(|h| h.pid), Some(holder_pid));
    assert!(err.to_string().contains(&name), "{err}");
    // Not waiting, not holding.
    assert_eq!(advisory_locks_of(&observer, waiter_pid).await, 0);

    // A sub-millisecond timeout is a (rounded up) timeout, not "try once" or
    // "forever".
    let err = pglock::advisory(name.as_str())
        .timeout(Duration::from_nanos(1))
        .acquire(&waiter)
        .await
        .unwrap_err();
    assert!(err.is_not_acquired(), "{err:?}");
    assert_eq!(err.timeout(), Some(Duration::from_nanos(1)));

    assert!(pglock::advisory(name.as_str())
        .timeout(timeout)
        .try_acquire(&waiter)
        .await
        .unwrap()
        .is_none());
    held.release().await.unwrap();
}

/// Freed within the timeout: acquired, by the waiter that was queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finite_timeout_succeeds_when_freed_in_time() {
    let observer = connect().await;
    let holder = session().await;
    let waiter = session().await;
    let waiter_pid = pid_of(waiter.client()).await;
    for use_try in [false, true] {
        let name = unique_name("timeouts-in-time");
        let held = pglock::advisory(name.as_str())
            .acquire(&holder)
            .await
            .unwrap();
        let (w, n) = (waiter.clone(), name.clone());
        let task = tokio::spawn(async move {
            let lock = pglock::advisory(n.as_str()).timeout(Duration::from_secs(30));
            match use_try {
                false => lock.acquire(&w).await.map(Some),
                true => lock.try_acquire(&w).await,
            }
        });
        wait_until_waiting(&observer, &name, Some(waiter_pid)).await;
        held.release().await.unwrap();
        let guard = task.await.unwrap().unwrap().expect("acquired in time");
        assert_eq!(holders(&observer, &name).await, vec![waiter_pid]);
        guard.release().await.unwrap();
    }
}

/// Whatever the outcome, the session's `lock_timeout` is what its user set.
#[tokio::test]
async fn attempts_change_no_setting() {
    let holder = session().await;
    let s = session().await;
    s.client()
        .batch_execute("SET lock_timeout = '1234ms'")
        .await
        .unwrap();
    let name = unique_name("timeouts-settings");
    let free = unique_name("timeouts-settings-free");
    let held = pglock::advisory(name.as_str())
        .acquire(&holder)
        .await
        .unwrap();
    for timeout in [
        Some(Duration::ZERO),
        Some(Duration::from_millis(30)),
        Some(Duration::from_secs(5)),
        None,
    ] {
        let busy = pglock::advisory(name.as_str());
        let busy = match timeout {
            Some(t) => busy.timeout(t),
            None => busy,
        };
        if timeout.is_some_and(|t| t < Duration::from_secs(1)) {
            assert!(busy.acquire(&s).await.unwrap_err().is_not_acquired());
            assert_eq!(show_lock_timeout(s.client()).await, "1234ms", "{timeout:?}");
            assert!(busy.try_acquire(&s).await.unwrap().is_none());
            assert_eq!(show_lock_timeout(s.client()).await, "1234ms", "{timeout:?}");
        }
        let mut ok = pglock::advisory(free.as_str());
        if let Some(t) = timeout {
            ok = ok.timeout(t);
        }
        let guard = ok.acquire(&s).await.unwrap();
        assert_eq!(show_lock_timeout(s.client()).await, "1234ms", "{timeout:?}");
        guard.release().await.unwrap();
        assert_eq!(show_lock_timeout(s.client()).await, "1234ms", "{timeout:?}");
    }
    // Also inside a transaction block the user opened on the session.
    s.client().batch_execute("BEGIN").await.unwrap();
    s.client()
        .batch_execute("SET LOCAL lock_timeout = '4321ms'")
        .await
        .unwrap();
    let guard = pglock::advisory(free.as_str())
        .timeout(Duration::from_secs(3))
        .acquire(&s)
        .await
        .unwrap();
    assert_eq!(show_lock_timeout(s.client()).await, "4321ms");
    guard.release().await.unwrap();
    s.client().batch_execute("COMMIT").await.unwrap();
    assert_eq!(show_lock_timeout(s.client()).await, "1234ms");
    held.release().await.unwrap();
}

/// `lock_timeout` takes at most i32::MAX milliseconds (about 24.8 days).
#[tokio::test]
async fn timeouts_beyond_the_server_limit_are_invalid() {
    let observer = connect().await;
    let s = session().await;
    let pid = pid_of(s.client()).await;
    let name = unique_name("timeouts-range");
    for too_long in [
        Duration::from_millis(i32::MAX as u64 + 1),
        Duration::from_secs(25 * 24 * 3600),
        Duration::MAX,
    ] {
        let err = pglock::advisory(name.as_str())
            .timeout(too_long)
            .acquire(&s)
            .await
            .unwrap_err();
        assert!(err.is_invalid_argument(), "{too_long:?}: {err:?}");
        assert!(err.to_string().contains("24.8 days"), "{err}");
        assert!(pglock::advisory(name.as_str())
            .timeout(too_long)
            .try_acquire(&s)
            .await
            .unwrap_err()
            .is_invalid_argument());
    }
    assert_eq!(advisory_locks_of(&observer, pid).await, 0);
    // The largest allowed value works (the lock is free, so nothing waits).
    let guard = pglock::advisory(name.as_str())
        .timeout(Duration::from_millis(i32::MAX as u64))
        .acquire(&s)
        .await
        .unwrap();
    assert_eq!(holders(&observer, &name).await, vec![pid]);
    guard.release().await.unwrap();
}

/// The timeout can fire as the lock is granted (a known server race). Whatever an attempt
/// answers, the session holds the lock exactly when it got a guard. The holder
/// lets go at varying moments around the waiter's timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_timeout_the_lock_is_never_silently_held() {
    let observer = connect().await;
    let holder = session().await;
    let waiter = session().await;
    let waiter_pid = pid_of(waiter.client()).await;
    let name = unique_name("timeouts-race");
    let (mut granted, mut refused) = (0, 0);
    for i in 0..40u64 {
        let held = pglock::advisory(name.as_str())
            .acquire(&holder)
            .await
            .unwrap();
        let release_after = Duration::from_micros(15_000 + (i * 7919) % 10_000);
        let release = tokio::spawn(async move {
            tokio::time::sleep(release_after).await;
            held.release().await
        });
        let result = pglock::advisory(name.as_str())
            .timeout(Duration::from_millis(20))
            .acquire(&waiter)
            .await;
        release.await.unwrap().unwrap();
        let held_by_waiter = advisory_locks_of(&observer, waiter_pid).await;
        match result {
            Ok(guard) => {
                granted += 1;
                assert_eq!(held_by_waiter, 1, "iteration {i}");
                guard.release().await.unwrap();
            }
            Err(e) => {
                refused += 1;
                assert!(e.is_not_acquired(), "iteration {i}: {e:?}");
                assert_eq!(
                    held_by_waiter, 0,
                    "iteration {i}: timed out but the lock is held"
                );
            }
        }
        assert_eq!(advisory_locks_of(&observer, waiter_pid).await, 0);
    }
    eprintln!("granted {granted}, refused {refused}");
}
