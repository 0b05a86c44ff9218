//! Cancel safety: dropping an acquire future while it waits — or at
//! any moment around the holder's release — leaves no lock held, no waiter in
//! `pg_locks`, and a clean pooled connection; the same for a `Session`; `run`
//! skips its future when busy and releases when it finishes or is dropped; a
//! cancelled `acquire_in` leaves the transaction usable and without the lock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pglock_tests::{
    advisory_locks_of, connect, eventually, lock_rows, pid_of, pool, session, unique_name,
    wait_until_waiting,
};
use tokio_postgres::Client;

const LIMIT: Duration = Duration::from_secs(10);

/// A small deterministic generator, so that a failing iteration can be replayed.
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

async fn nobody_holds_or_waits(observer: &Client, name: &str) -> bool {
    eventually(LIMIT, || async {
        lock_rows(observer, name).await.is_empty()
    })
    .await
}

/// Takes the only connection of `pool` and checks it: idle, holding nothing, with
/// the server's `lock_timeout`. A connection that was closed instead of returned
/// (pglock's fallback) is accepted if the old session is gone and held nothing.
async fn assert_pool_clean(observer: &Client, pool: &deadpool_postgres::Pool, old_pid: i32) {
    let conn = pool.get().await.unwrap();
    let pid = pid_of(&conn).await;
    assert_eq!(
        advisory_locks_of(observer, pid).await,
        0,
        "the pool handed out a connection holding or awaiting a lock"
    );
    let row = conn
        .query_one(
            "SELECT setting = reset_val FROM pg_settings WHERE name = 'lock_timeout'",
            &[],
        )
        .await
        .unwrap();
    assert!(
        row.get::<_, bool>(0),
        "lock_timeout changed on a pooled connection"
    );
    if pid != old_pid {
        assert!(
            eventually(LIMIT, || async {
                advisory_locks_of(observer, old_pid).await == 0
            })
            .await
        );
    }
}

/// Cancelled while the server has it queued: the wait disappears from `pg_locks`,
/// the holder's release hands the lock to nobody, and the pooled connection comes
/// back clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_while_waiting_through_a_pool() {
    let observer = connect().await;
    let holder = session().await;
    let pool = pool(1).await;
    for i in 0..10 {
        let name = unique_name("cancel-pool-waiting");
        let held = pglock::advisory(name.as_str())
            .acquire(&holder)
            .await
            .unwrap();
        let (p, n) = (pool.clone(), name.clone());
        let task = tokio::spawn(async move {
            let lock = pglock::advisory(n.as_str());
            match i % 2 {
                0 => lock.acquire(&p).await.map(drop),
                _ => lock
                    .timeout(Duration::from_secs(60))
                    .acquire(&p)
                    .await
                    .map(drop),
            }
        });
        wait_until_waiting(&observer, &name, None).await;
        let waiter_pid = lock_rows(&observer, &name)
            .await
            .iter()
            .find(|r| !r.granted)
            .map(|r| r.pid)
            .unwrap();
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        assert!(
            eventually(LIMIT, || async {
                lock_rows(&observer, &name).await.iter().all(|r| r.granted)
            })
            .await,
            "iteration {i}: a cancelled wait stayed queued"
        );
        held.release().await.unwrap();
        assert!(
            nobody_holds_or_waits(&observer, &name).await,
            "iteration {i}: the lock went to a cancelled waiter"
        );
        assert_pool_clean(&observer, &pool, waiter_pid).await;
    }
}

/// Through a `Session` no cancel request is sent (it could hit another task's
/// statement on the shared connection): the abandoned wait stays queued until the
/// holder releases, and the release-if-granted queued behind it then frees the
/// lock at once. The session ends up usable and holding nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_while_waiting_through_a_session() {
    let observer = connect().await;
    let holder = session().await;
    let waiter = session().await;
    let waiter_pid = pid_of(waiter.client()).await;
    for i in 0..10 {
        let name = unique_name("cancel-session-waiting");
        let held = pglock::advisory(name.as_str())
            .acquire(&holder)
            .await
            .unwrap();
        let lock = pglock::advisory(name.as_str());
        let lock = if i % 2 == 0 {
            lock.shared()
        } else {
            lock.timeout(Duration::from_secs(60))
        };
        tokio::select! {
            r = lock.acquire(&waiter) => panic!("acquired a held lock: {r:?}"),
            () = wait_until_waiting(&observer, &name, Some(waiter_pid)) => {}
        }
        // The acquire future is gone; its wait is still queued on the server.
        held.release().await.unwrap();
        assert!(
            eventually(LIMIT, || async {
                advisory_locks_of(&observer, waiter_pid).await == 0
            })
            .await,
            "iteration {i}: the abandoned wait's grant was not released"
        );
        assert!(
            nobody_holds_or_waits(&observer, &name).await,
            "iteration {i}"
        );
        waiter.client().query_one("SELECT 1", &[]).await.unwrap();
        assert_eq!(advisory_locks_of(&observer, waiter_pid).await, 0);
        // And the session can take the lock normally afterwards.
        let guard = pglock::advisory(name.as_str())
            .timeout(Duration::ZERO)
            .acquire(&waiter)
            .await
            .unwrap();
        guard.release().await.unwrap();
    }
}

/// Cancelled at varying moments around the holder's release: before the request
/// is sent, while it waits, as the grant happens, after it. Whatever the moment,
/// afterwards nobody holds or waits for the lock and the source is clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_at_random_moments_around_the_release() {
    let observer = connect().await;
    let holder = session().await;
    let pool = pool(1).await;
    let waiter = session().await;
    let pool_pid = pid_of(&pool.get().await.unwrap()).await;
    let session_pid = pid_of(waiter.client()).await;
    let mut rng = Lcg(0x5eed);
    let (mut acquired, mut cancelled) = (0, 0);
    for i in 0..60 {
        let via_pool = i % 2 == 0;
        let name = unique_name("cancel-random");
        let held = pglock::advisory(name.as_str())
            .acquire(&holder)
            .await
            .unwrap();
        let release_after = Duration::from_micros(rng.below(8_000));
        let cancel_after = Duration::from_micros(rng.below(10_000));
        let release = tokio::spawn(async move {
            tokio::time::sleep(release_after).await;
            held.release().await
        });
        let lock = pglock::advisory(name.as_str());
        let lock = if i % 3 == 0 {
            lock.timeout(Duration::from_secs(30))
        } else {
            lock
        };
        let attempt = async {
            if via_pool {
                lock.acquire(&pool).await
            } else {
                lock.acquire(&waiter).await
            }
        };
        match tokio::time::timeout(cancel_after, attempt).await {
            Ok(result) => {
                acquired += 1;
                let guard = result.unwrap();
                drop(guard);
            }
            Err(_) => cancelled += 1,
        }
        release.await.unwrap().unwrap();
        assert!(
            nobody_holds_or_waits(&observer, &name).await,
            "iteration {i} (pool {via_pool}, release {release_after:?}, cancel {cancel_after:?}): \
             {:?}",
            lock_rows(&observer, &name).await
        );
        if via_pool {
            assert_pool_clean(&observer, &pool, pool_pid).await;
        } else {
            waiter.client().query_one("SELECT 1", &[]).await.unwrap();
            assert!(
                eventually(LIMIT, || async {
                    advisory_locks_of(&observer, session_pid).await == 0
                })
                .await,
                "iteration {i}: the session kept a lock"
            );
        }
    }
    eprintln!("acquired {acquired}, cancelled {cancelled}");
}

/// A cancelled `try_acquire` with a timeout is as safe as `acquire`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_try_acquire_with_a_timeout() {
    let observer = connect().await;
    let holder = session().await;
    let pool = pool(1).await;
    let pid = pid_of(&pool.get().await.unwrap()).await;
    let name = unique_name("cancel-try");
    let held = pglock::advisory(name.as_str())
        .acquire(&holder)
        .await
        .unwrap();
    let lock = pglock::advisory(name.as_str()).timeout(Duration::from_secs(60));
    tokio::select! {
        r = lock.try_acquire(&pool) => {
            panic!("answered while held: {r:?}")
        }
        () = wait_until_waiting(&observer, &name, None) => {}
    }
    held.release().await.unwrap();
    assert!(nobody_holds_or_waits(&observer, &name).await);
    assert_pool_clean(&observer, &pool, pid).await;
}

#[tokio::test]
async fn run_skips_when_busy_and_releases_after() {
    let observer = connect().await;
    let holder = session().await;
    let pool = pool(1).await;
    let name = unique_name("cancel-run");
    let held = pglock::advisory(name.as_str())
        .acquire(&holder)
        .await
        .unwrap();

    let polled = AtomicBool::new(false);
    let out = pglock::advisory(name.as_str())
        .run(&pool, async {
            polled.store(true, Ordering::SeqCst);
            1
        })
        .await
        .unwrap();
    assert_eq!(out, None);
    assert!(
        !polled.load(Ordering::SeqCst),
        "the future ran although busy"
    );
    held.release().await.unwrap();

    let out = pglock::advisory(name.as_str())
        .run(&pool, async {
            // Inside the work, the lock is held by exactly one session.
            let rows = lock_rows(&observer, &name).await;
            assert_eq!(rows.len(), 1, "{rows:?}");
            assert!(rows[0].granted);
            rows[0].pid
        })
        .await
        .unwrap();
    let runner = out.expect("ran when free");
    assert_ne!(runner, pid_of(holder.client()).await);
    // `run` releases before it returns.
    assert!(lock_rows(&observer, &name).await.is_empty());
}

/// Dropping `run` while its work runs releases the lock, as a dropped guard does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_run_mid_work_releases() {
    let observer = connect().await;
    let pool = pool(1).await;
    let name = unique_name("cancel-run-mid-work");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let work = async move {
        tx.send(()).unwrap();
        std::future::pending::<()>().await
    };
    let lock = pglock::advisory(name.as_str());
    let run = lock.run(&pool, work);
    tokio::select! {
        r = run => panic!("pending work finished: {r:?}"),
        _ = rx => {}
    }
    assert!(nobody_holds_or_waits(&observer, &name).await);
    let conn = pool.get().await.unwrap();
    assert_eq!(advisory_locks_of(&observer, pid_of(&conn).await).await, 0);
}

/// `acquire_in` dropped while waiting: the wait is not interrupted, and once it
/// ends (here: the holder releases, so it is granted) the rollback to pglock's
/// savepoint queued behind it gives the lock back and leaves the transaction
/// usable and as it was — its own `lock_timeout` included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_acquire_in_leaves_the_transaction_usable_and_unlocked() {
    let observer = connect().await;
    let holder = session().await;
    let mut client = connect().await;
    let pid = pid_of(&client).await;
    for timeout in [None, Some(Duration::from_secs(60))] {
        let name = unique_name("cancel-xact");
        let held = pglock::advisory(name.as_str())
            .acquire(&holder)
            .await
            .unwrap();
        let tx = client.transaction().await.unwrap();
        tx.batch_execute("SET LOCAL lock_timeout = '7s'")
            .await
            .unwrap();
        let mut lock = pglock::advisory(name.as_str()).xact();
        if let Some(t) = timeout {
            lock = lock.timeout(t);
        }
        tokio::select! {
            r = lock.acquire_in(&tx) => panic!("acquired a held lock: {r:?}"),
            () = wait_until_waiting(&observer, &name, Some(pid)) => {}
        }
        held.release().await.unwrap();
        // The transaction's next statement runs once the abandoned wait is over.
        let setting: String = tx.query_one("SHOW lock_timeout", &[]).await.unwrap().get(0);
        assert_eq!(setting, "7s", "{timeout:?}");
        assert_eq!(
            advisory_locks_of(&observer, pid).await,
            0,
            "{timeout:?}: the abandoned grant was kept"
        );
        tx.commit().await.unwrap();
        assert!(nobody_holds_or_waits(&observer, &name).await);
    }
}
