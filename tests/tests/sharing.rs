//! Guards that share a connection or a source: never two holders, never a
//! released hold that was someone else's. Each scenario is checked through a
//! second connection and `pg_locks`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pglock_tests::{connect, eventually, pid_of, pool, Fixture};

/// Another process holds X. B on session S asks with a 300 ms timeout; 50 ms
/// later A on the same S asks with 5 s; the holder lets go at 1 s. A's guard must
/// hold the lock (B's cleanup must not release A's grant), and nobody else may
/// get it while A's guard lives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_wait_never_releases_another_guards_grant() {
    for cancel_b in [false, true] {
        let fx = Fixture::new("share-timeout").await;
        let holder = fx.hold_elsewhere().await;
        let session = pglock_tests::session().await;
        let pid = pid_of(session.client()).await;

        let b = tokio::spawn({
            let (session, name) = (session.clone(), fx.name.clone());
            async move {
                let lock = pglock::advisory(name.as_str()).timeout(Duration::from_millis(300));
                let acquire = lock.acquire(&session);
                if cancel_b {
                    // Dropped at 100 ms, mid-wait.
                    tokio::time::timeout(Duration::from_millis(100), acquire)
                        .await
                        .map(|r| r.map(drop))
                        .unwrap_or(Ok(()))
                } else {
                    acquire.await.map(drop)
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let a = tokio::spawn({
            let (session, name) = (session.clone(), fx.name.clone());
            async move {
                pglock::advisory(name.as_str())
                    .timeout(Duration::from_secs(5))
                    .acquire(&session)
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(950)).await;
        holder
            .execute("SELECT pg_advisory_unlock_all()", &[])
            .await
            .unwrap();

        let b = b.await.unwrap();
        if !cancel_b {
            assert!(b.unwrap_err().is_not_acquired());
        }
        let a = a.await.unwrap().expect("A gets the lock once it is free");
        // Let any queued cleanup run, then look.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(a.is_held().await.unwrap(), "A's guard lost its grant");
        assert_eq!(fx.holders().await, vec![pid], "cancel_b={cancel_b}");
        let other = pglock_tests::session().await;
        assert!(
            pglock::advisory(fx.name.as_str())
                .try_acquire(&other)
                .await
                .unwrap()
                .is_none(),
            "a second process acquired the lock while A's guard lives"
        );
        a.release().await.unwrap();
        assert!(fx.until_free().await);
    }
}

/// Two guards of one session exclude each other as two processes would; shared
/// guards share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guards_on_one_session_exclude_each_other() {
    let fx = Fixture::new("share-exclude").await;
    let session = pglock_tests::session().await;
    let first = pglock::advisory(fx.name.as_str())
        .acquire(&session)
        .await
        .unwrap();
    // Busy for a try from another task of the same process.
    let again = tokio::spawn({
        let (session, name) = (session.clone(), fx.name.clone());
        async move {
            pglock::advisory(name.as_str())
                .try_acquire(&session)
                .await
                .map(|g| g.is_some())
        }
    });
    assert!(!again.await.unwrap().unwrap(), "two holders on one session");
    // A waiter from another task waits in the process, then gets it.
    waits_in_turn(&fx, &session, first, Duration::from_millis(100), || {}).await;

    // Shared guards of one session share.
    let a = pglock::advisory(fx.name.as_str())
        .shared()
        .acquire(&session)
        .await
        .unwrap();
    let b = pglock::advisory(fx.name.as_str())
        .shared()
        .try_acquire(&session)
        .await
        .unwrap()
        .expect("shared guards share");
    a.release().await.unwrap();
    assert_eq!(fx.holders().await.len(), 1, "one release of two freed it");
    b.release().await.unwrap();
    assert!(fx.until_free().await);
}

/// A task that waits for a lock it holds itself would wait forever: it is told
/// at once, through a session and through a pool.
#[tokio::test]
async fn waiting_for_yourself_fails_at_once() {
    let fx = Fixture::new("share-self").await;
    let pool = pool(2).await;
    let session = pglock_tests::session().await;
    for through_pool in [true, false] {
        let lock = pglock::advisory(fx.name.as_str());
        let first = match through_pool {
            true => lock.acquire(&pool).await.unwrap(),
            false => lock.acquire(&session).await.unwrap(),
        };
        let second = tokio::time::timeout(Duration::from_secs(5), async {
            match through_pool {
                true => lock.acquire(&pool).await,
                false => lock.acquire(&session).await,
            }
        })
        .await
        .expect("a self-wait must not hang");
        let err = second.unwrap_err();
        assert!(err.is_deadlock(), "{err}");
        assert!(err.to_string().contains("this task already holds"), "{err}");
        // With a timeout it ends anyway, without blaming a pid.
        let err = lock
            .clone()
            .timeout(Duration::from_secs(1))
            .acquire(&pool)
            .await;
        if through_pool {
            // It waits out its timeout in the process, and says so.
            let err = err.unwrap_err();
            assert!(err.is_not_acquired() && err.holder().is_none(), "{err}");
            assert!(err.to_string().contains("this process"), "{err}");
            // A single try refused in the process names the guard, not a session.
            let err = lock
                .clone()
                .timeout(Duration::ZERO)
                .acquire(&pool)
                .await
                .unwrap_err();
            assert!(err.is_not_acquired(), "{err}");
            let message = err.to_string();
            assert!(
                message.contains("another guard of this process")
                    && !message.contains("another session"),
                "{message}"
            );
        } else {
            // Through the pool, the session's hold is another process's.
            assert!(err.unwrap_err().is_not_acquired());
        }
        first.release().await.unwrap();
        assert!(fx.until_free().await);
    }
}

/// Same name, same process, one pooled connection: the second acquisition waits
/// in the process instead of taking a second connection to wait on itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_name_twice_through_a_pool_of_one() {
    let fx = Fixture::new("share-pool1").await;
    let pool = pool(1).await;
    let first = pglock::advisory(fx.name.as_str())
        .acquire(&pool)
        .await
        .unwrap();
    waits_in_turn(&fx, &pool, first, Duration::from_millis(200), || {
        assert_eq!(pool.status().size, 1, "one connection only");
    })
    .await;
}

/// While `first` holds the fixture's lock, a second acquisition through
/// `source`, from another task, waits in the process (still waiting after
/// `patience`, when `while_waiting` checks what it likes); once `first` is
/// released it gets the lock, alone.
async fn waits_in_turn<S>(
    fx: &Fixture,
    source: &S,
    first: pglock::Guard,
    patience: Duration,
    while_waiting: impl FnOnce(),
) where
    S: pglock::Source + Clone + Send + Sync + 'static,
{
    let second = tokio::spawn({
        let (source, name) = (source.clone(), fx.name.clone());
        async move {
            pglock::advisory(name.as_str())
                .timeout(Duration::from_secs(5))
                .acquire(&source)
                .await
        }
    });
    tokio::time::sleep(patience).await;
    assert!(!second.is_finished());
    while_waiting();
    first.release().await.unwrap();
    let second = second.await.unwrap().expect("the second gets it in turn");
    assert_eq!(fx.holders().await.len(), 1);
    second.release().await.unwrap();
    assert!(fx.until_free().await);
}

/// Lease and label belong to the server session: refused per guard on a shared
/// session, and nothing is left changed.
#[tokio::test]
async fn session_settings_are_refused_per_guard() {
    let fx = Fixture::new("share-settings").await;
    let session = pglock_tests::session().await;
    let before: String = session
        .client()
        .query_one("SHOW application_name", &[])
        .await
        .unwrap()
        .get(0);
    for lock in [
        pglock::advisory(fx.name.as_str()).lease(Duration::from_secs(1)),
        pglock::advisory(fx.name.as_str()).label("worker-1"),
    ] {
        let err = lock.acquire(&session).await.unwrap_err();
        assert!(err.is_misuse(), "{err}");
        assert!(fx.rows().await.is_empty(), "nothing is left held");
    }
    let after: String = session
        .client()
        .query_one("SHOW application_name", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(before, after);
}

/// An unlock that cannot run (the caller left an aborted transaction on the
/// connection) is reported, and retried once the transaction ends.
#[tokio::test]
async fn a_failed_unlock_on_a_session_is_retried_after_the_transaction() {
    let fx = Fixture::new("share-abort").await;
    let session = pglock_tests::session().await;
    let guard = pglock::advisory(fx.name.as_str())
        .acquire(&session)
        .await
        .unwrap();
    session.client().batch_execute("BEGIN").await.unwrap();
    assert!(session.client().batch_execute("SELECT 1/0").await.is_err());
    let err = guard.release().await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION),
        "{err}"
    );
    assert!(err.to_string().contains("retries"), "{err}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        fx.holders().await.len(),
        1,
        "still held inside the transaction"
    );
    session.client().batch_execute("ROLLBACK").await.unwrap();
    assert!(fx.until_free().await, "the unlock was never retried");
}

/// A session that drives its own connection closes it when the unlock keeps
/// failing, rather than hold the lock for nobody.
#[tokio::test]
async fn a_session_that_cannot_unlock_is_closed() {
    let fx = Fixture::new("share-close").await;
    let session = pglock::Session::connect(&pglock_tests::database_url().await)
        .await
        .unwrap();
    let guard = pglock::advisory(fx.name.as_str())
        .acquire(&session)
        .await
        .unwrap();
    session.client().batch_execute("BEGIN").await.unwrap();
    assert!(session.client().batch_execute("SELECT 1/0").await.is_err());
    assert!(guard.release().await.is_err());
    let closed = eventually(Duration::from_secs(15), || async { session.is_closed() }).await;
    assert!(closed, "the session was not closed");
    assert!(
        fx.until_free().await,
        "the lock outlived the closed session"
    );
}

/// Through a pool, a failed unlock closes the connection, which frees the lock.
#[tokio::test]
async fn a_failed_unlock_on_a_pooled_connection_closes_it() {
    let fx = Fixture::new("share-pool-abort").await;
    let pool = pool(1).await;
    let guard = pglock::advisory(fx.name.as_str())
        .acquire(&pool)
        .await
        .unwrap();
    guard.client().batch_execute("BEGIN").await.unwrap();
    assert!(guard.client().batch_execute("SELECT 1/0").await.is_err());
    let err = guard.release().await.unwrap_err();
    assert!(err.to_string().contains("closed"), "{err}");
    assert!(fx.until_free().await);
    // The pool hands out a clean connection.
    let client = pool.get().await.unwrap();
    client.query_one("SELECT 1", &[]).await.unwrap();
}

/// Lock on the connection you already hold, and use it through the guard —
/// transactions included.
#[tokio::test]
async fn locking_on_a_borrowed_connection() {
    let fx = Fixture::new("share-borrow").await;
    let pool = pool(1).await;
    let mut object = pool.get().await.unwrap();
    let pid = pid_of(&object).await;
    {
        let mut guard = pglock::advisory(fx.name.as_str())
            .timeout(Duration::from_secs(2))
            .acquire_on(&mut object)
            .await
            .unwrap();
        assert_eq!(fx.holders().await, vec![pid]);
        let tx = guard.transaction().await.unwrap();
        let one: i32 = tx.query_one("SELECT 1", &[]).await.unwrap().get(0);
        assert_eq!(one, 1);
        tx.commit().await.unwrap();
        guard.release().await.unwrap();
    }
    assert!(fx.rows().await.is_empty());

    // A plain client by mutable borrow; dropping the guard releases.
    let mut client = connect().await;
    let pid = pid_of(&client).await;
    {
        let _guard = pglock::advisory(fx.name.as_str())
            .acquire_on(&mut client)
            .await
            .unwrap();
        assert_eq!(fx.holders().await, vec![pid]);
        // Busy for anyone else, the pooled connection above included.
        assert!(pglock::advisory(fx.name.as_str())
            .try_acquire_on(&mut object)
            .await
            .unwrap()
            .is_none());
    }
    assert!(fx.until_free().await);
    client.query_one("SELECT 1", &[]).await.unwrap();
}

/// A pooled guard lends its connection mutably, for a transaction on it.
#[tokio::test]
async fn a_pooled_guard_runs_a_transaction_on_its_connection() {
    let fx = Fixture::new("share-client-mut").await;
    let pool = pool(1).await;
    let mut guard = pglock::advisory(fx.name.as_str())
        .acquire(&pool)
        .await
        .unwrap();
    let client = guard.client_mut().expect("a pooled guard's own connection");
    let tx = client.transaction().await.unwrap();
    tx.query_one("SELECT 1", &[]).await.unwrap();
    tx.commit().await.unwrap();
    guard.release().await.unwrap();
    assert!(fx.until_free().await);
    let session = pglock_tests::session().await;
    let mut guard = pglock::advisory(fx.name.as_str())
        .acquire(&session)
        .await
        .unwrap();
    assert!(guard.client_mut().is_none(), "a shared session is not lent");
    guard.release().await.unwrap();
}

/// Many tasks on one session and on one pool, random timeouts and cancellations:
/// a witness counts holders inside the critical section; at the end nothing is
/// left held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_sharing_never_gives_two_holders() {
    let fx = Fixture::new("share-random").await;
    let session = pglock_tests::session().await;
    let pool = pool(3).await;
    let inside = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let acquired = Arc::new(AtomicUsize::new(0));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    let mut tasks = Vec::new();
    for t in 0..9u64 {
        let (session, pool, name) = (session.clone(), pool.clone(), fx.name.clone());
        let (inside, overlaps, acquired) = (inside.clone(), overlaps.clone(), acquired.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut next = move |n: u64| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng % n
            };
            while tokio::time::Instant::now() < deadline {
                let lock =
                    pglock::advisory(name.as_str()).timeout(Duration::from_millis(1 + next(40)));
                let cancel_after = Duration::from_millis(1 + next(60));
                let attempt = async {
                    if t % 3 == 2 {
                        lock.acquire(&pool).await
                    } else {
                        lock.acquire(&session).await
                    }
                };
                let guard = match next(3) {
                    0 => match tokio::time::timeout(cancel_after, attempt).await {
                        Ok(r) => r,
                        Err(_) => continue, // cancelled mid-attempt
                    },
                    _ => attempt.await,
                };
                let Ok(guard) = guard else { continue };
                acquired.fetch_add(1, Ordering::SeqCst);
                if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(next(5))).await;
                inside.fetch_sub(1, Ordering::SeqCst);
                if next(2) == 0 {
                    drop(guard);
                } else {
                    let _ = guard.release().await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    println!(
        "FIGURE sharing: {} acquisitions, {} overlaps",
        acquired.load(Ordering::SeqCst),
        overlaps.load(Ordering::SeqCst)
    );
    assert!(acquired.load(Ordering::SeqCst) > 10);
    assert_eq!(overlaps.load(Ordering::SeqCst), 0);
    assert!(
        fx.until_free().await,
        "a lock was leaked: {:?}",
        fx.rows().await
    );
}

/// A dropped guard queues its unlock before the drop returns, as the statement
/// prepared on the lock's connection when the lock was taken (a wrong match of
/// statement and lock would leave holds behind). Exclusive and shared, name and
/// pair keys, on a session and on a pool of one: after many drops nothing of the
/// connection's is left in `pg_locks`, another session takes every lock, and the
/// unlocks are prepared statements of that connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_guards_unlock_with_the_matching_prepared_statement() {
    let f = Fixture::new("drop-prepared").await;
    let session = pglock_tests::session().await;
    let pid = pid_of(session.client()).await;
    drop_cycles(&f, &session, (0x5eed_i32, pid), 2).await;
    assert_unlocks_prepared(session.client()).await;
    all_released(&f, pid, (0x5eed_i32, pid)).await;

    let one = pool(1).await;
    let pid = pid_of(&one.get().await.unwrap()).await;
    // Each pooled guard has a connection of its own: one at a time here.
    drop_cycles(&f, &one, (0x5eed_i32, pid), 1).await;
    // The connection is back in the pool once its unlocks are through.
    let client = one.get().await.unwrap();
    assert_eq!(pid_of(&client).await, pid, "the pool's one connection");
    assert_unlocks_prepared(&client).await;
    drop(client);
    all_released(&f, pid, (0x5eed_i32, pid)).await;
}

/// Forty rounds of: an exclusive guard dropped, `shared` shared guards held
/// together then dropped, a pair-key guard dropped.
async fn drop_cycles<S: pglock::Source>(f: &Fixture, source: &S, pair: (i32, i32), shared: usize) {
    for _ in 0..40 {
        let exclusive = pglock::advisory(f.name.as_str())
            .timeout(Duration::from_secs(5))
            .acquire(source)
            .await
            .unwrap();
        drop(exclusive);
        let lock = pglock::advisory(f.name.as_str())
            .shared()
            .timeout(Duration::from_secs(5));
        let mut guards = Vec::new();
        for _ in 0..shared {
            guards.push(lock.clone().acquire(source).await.unwrap());
        }
        drop(guards);
        let pair = pglock::advisory(pair).timeout(Duration::from_secs(5));
        drop(pair.acquire(source).await.unwrap());
    }
}

async fn assert_unlocks_prepared(client: &tokio_postgres::Client) {
    let unlocks: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_prepared_statements \
             WHERE statement LIKE '%pg_advisory_unlock%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(unlocks >= 3, "the unlocks are prepared on the connection");
}

/// Nothing of `pid`'s is left in `pg_locks`, and another session takes both
/// locks (then lets them go).
async fn all_released(f: &Fixture, pid: i32, pair: (i32, i32)) {
    let left = eventually(Duration::from_secs(5), || async {
        pglock_tests::advisory_locks_of(&f.observer, pid).await == 0
    })
    .await;
    assert!(left, "every dropped guard's hold is released on the server");
    let other = connect().await;
    let key = pglock::key_for(&f.name).unwrap();
    let name_taken: bool = other
        .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
        .await
        .unwrap()
        .get(0);
    assert!(name_taken, "another session takes the name");
    let pair_taken: bool = other
        .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&pair.0, &pair.1])
        .await
        .unwrap()
        .get(0);
    assert!(pair_taken, "another session takes the pair");
}
