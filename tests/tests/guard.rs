//! Guards: `release()` frees the lock; dropping frees it promptly on every exit
//! path (plain drop, early return, `?`, panic in a task); the guard is
//! `Send + 'static`, `Debug`, and knows its name, key, mode and acquisition time;
//! releasing a lock that was taken away (`pg_advisory_unlock_all()`, terminated
//! backend) reports it lost.

use std::time::{Duration, Instant};

use pglock::{LockKey, Mode};
use pglock_tests::{connect, eventually, holders, lock_rows, pid_of, pool, session, unique_name};

const LIMIT: Duration = Duration::from_secs(10);

async fn freed(observer: &tokio_postgres::Client, name: &str) -> bool {
    eventually(LIMIT, || async { holders(observer, name).await.is_empty() }).await
}

#[tokio::test]
async fn release_frees_the_lock() {
    let observer = connect().await;
    let pool = pool(2).await;
    let name = unique_name("guard-release");
    let guard = pglock::advisory(name.as_str())
        .acquire(&pool)
        .await
        .unwrap();
    let pid = pid_of(guard.client()).await;
    assert_eq!(holders(&observer, &name).await, vec![pid]);
    guard.release().await.unwrap();
    // `release` answers after the server unlocked: no waiting needed.
    assert!(lock_rows(&observer, &name).await.is_empty());
    // And it can be taken again at once.
    let again = pglock::advisory(name.as_str())
        .timeout(Duration::ZERO)
        .try_acquire(&pool)
        .await
        .unwrap();
    assert!(again.is_some());
}

#[tokio::test]
async fn drop_frees_the_lock_through_a_pool_and_a_session() {
    let observer = connect().await;
    let pool = pool(2).await;
    let name = unique_name("guard-drop-pool");
    let guard = pglock::advisory(name.as_str())
        .acquire(&pool)
        .await
        .unwrap();
    assert_eq!(holders(&observer, &name).await.len(), 1);
    drop(guard);
    assert!(
        freed(&observer, &name).await,
        "dropped pooled guard kept its lock"
    );

    let s = session().await;
    let name = unique_name("guard-drop-session");
    let guard = pglock::advisory(name.as_str()).acquire(&s).await.unwrap();
    drop(guard);
    assert!(
        freed(&observer, &name).await,
        "dropped session guard kept its lock"
    );
    // The session is still usable and holds nothing.
    let pid = pid_of(s.client()).await;
    assert_eq!(pglock_tests::advisory_locks_of(&observer, pid).await, 0);
}

/// The last handle to a session dropped together with the guard: the unlock still
/// reaches the server (or the session ends), so the lock is gone either way.
#[tokio::test]
async fn drop_of_guard_and_last_session_handle_frees_the_lock() {
    let observer = connect().await;
    let name = unique_name("guard-drop-last-session");
    let s = session().await;
    let guard = pglock::advisory(name.as_str()).acquire(&s).await.unwrap();
    drop(s);
    assert_eq!(holders(&observer, &name).await.len(), 1);
    drop(guard);
    assert!(freed(&observer, &name).await);
}

async fn work_with_early_return(
    pool: &deadpool_postgres::Pool,
    name: &str,
    observer: &tokio_postgres::Client,
) -> Option<i32> {
    let guard = pglock::advisory(name).acquire(pool).await.ok()?;
    let pid = pid_of(guard.client()).await;
    assert_eq!(holders(observer, name).await, vec![pid]);
    if pid > 0 {
        return Some(pid); // early return: the guard is dropped here
    }
    guard.release().await.ok()?;
    None
}

async fn work_with_question_mark(
    pool: &deadpool_postgres::Pool,
    name: &str,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let _guard = pglock::advisory(name).acquire(pool).await?;
    let n: i32 = "not a number".parse()?; // fails: `?` returns, the guard drops
    unreachable!("parsed {n}");
}

#[tokio::test]
async fn early_return_and_question_mark_free_the_lock() {
    let observer = connect().await;
    let pool = pool(2).await;

    let name = unique_name("guard-early-return");
    assert!(work_with_early_return(&pool, &name, &observer)
        .await
        .is_some());
    assert!(freed(&observer, &name).await);

    let name = unique_name("guard-question-mark");
    assert!(work_with_question_mark(&pool, &name).await.is_err());
    assert!(freed(&observer, &name).await);
    // The lock is really free, not just invisible: someone else can take it.
    assert!(pglock::advisory(name.as_str())
        .try_acquire(&pool)
        .await
        .unwrap()
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_in_a_task_frees_the_lock() {
    let observer = connect().await;
    let pool = pool(2).await;
    let s = session().await;
    for source in ["pool", "session"] {
        let name = unique_name(&format!("guard-panic-{source}"));
        let (held_tx, held_rx) = tokio::sync::oneshot::channel::<()>();
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let (p, s2, n) = (pool.clone(), s.clone(), name.clone());
        let task = tokio::spawn(async move {
            let _guard = match source {
                "pool" => pglock::advisory(n.as_str()).acquire(&p).await.unwrap(),
                _ => pglock::advisory(n.as_str()).acquire(&s2).await.unwrap(),
            };
            held_tx.send(()).unwrap();
            go_rx.await.unwrap();
            panic!("boom while holding {n}");
        });
        held_rx.await.unwrap();
        assert_eq!(holders(&observer, &name).await.len(), 1);
        go_tx.send(()).unwrap();
        let err = task.await.unwrap_err();
        assert!(err.is_panic());
        assert!(
            freed(&observer, &name).await,
            "{source}: lock survived a panic"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guard_moves_into_a_spawned_task() {
    fn assert_send_static<T: Send + 'static>(_: &T) {}
    let observer = connect().await;
    let pool = pool(2).await;
    let name = unique_name("guard-spawn");
    let guard = pglock::advisory(name.as_str())
        .acquire(&pool)
        .await
        .unwrap();
    assert_send_static(&guard);
    let pid = pid_of(guard.client()).await;
    let task = tokio::spawn(async move {
        // The lock is still held by the same session inside the task.
        let inside = pid_of(guard.client()).await;
        guard.release().await.map(|()| inside)
    });
    assert_eq!(task.await.unwrap().unwrap(), pid);
    assert!(lock_rows(&observer, &name).await.is_empty());
}

#[tokio::test]
async fn guard_knows_its_lock_and_shows_it() {
    let pool = pool(2).await;
    let name = unique_name("guard-debug");
    let before = Instant::now();
    let guard = pglock::advisory(name.as_str())
        .shared()
        .acquire(&pool)
        .await
        .unwrap();
    let after = Instant::now();
    let key = pglock::key_for(&name).unwrap();
    assert_eq!(guard.name(), Some(name.as_str()));
    assert_eq!(guard.key(), LockKey::Big(key));
    assert_eq!(guard.mode(), Mode::Shared);
    assert!(before <= guard.acquired_at() && guard.acquired_at() <= after);
    let debug = format!("{guard:?}");
    assert!(debug.contains(&name), "{debug}");
    assert!(debug.contains(&key.to_string()), "{debug}");
    assert!(debug.contains("Shared"), "{debug}");
    guard.release().await.unwrap();

    let raw = pglock::advisory((3, -4)).acquire(&pool).await.unwrap();
    assert_eq!(raw.name(), None);
    assert_eq!(raw.key(), LockKey::Pair(3, -4));
    assert_eq!(raw.mode(), Mode::Exclusive);
    let debug = format!("{raw:?}");
    assert!(
        debug.contains("(3, -4)") && debug.contains("Exclusive"),
        "{debug}"
    );
    raw.release().await.unwrap();
}

#[tokio::test]
async fn release_after_unlock_all_is_lost() {
    let observer = connect().await;
    let pool = pool(2).await;
    let name = unique_name("guard-unlock-all");
    let guard = pglock::advisory(name.as_str())
        .acquire(&pool)
        .await
        .unwrap();
    pglock::release_all(guard.client()).await.unwrap();
    assert!(lock_rows(&observer, &name).await.is_empty());
    let err = guard.release().await.unwrap_err();
    assert!(err.is_lost(), "{err:?}");
    assert!(err.to_string().contains(&name), "{err}");

    // Same through a session, whose guards share the connection.
    let s = session().await;
    let guard = pglock::advisory(name.as_str()).acquire(&s).await.unwrap();
    s.client()
        .batch_execute("SELECT pg_advisory_unlock_all()")
        .await
        .unwrap();
    assert!(guard.release().await.unwrap_err().is_lost());
}

#[tokio::test]
async fn release_after_the_backend_is_terminated_is_lost() {
    let observer = connect().await;
    for source in ["pool", "session"] {
        let pool = pool(1).await;
        let s = session().await;
        let name = unique_name(&format!("guard-terminated-{source}"));
        let guard = match source {
            "pool" => pglock::advisory(name.as_str())
                .acquire(&pool)
                .await
                .unwrap(),
            _ => pglock::advisory(name.as_str()).acquire(&s).await.unwrap(),
        };
        let pid = pid_of(guard.client()).await;
        let terminated: bool = observer
            .query_one("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .unwrap()
            .get(0);
        assert!(terminated);
        assert!(freed(&observer, &name).await);
        let err = guard.release().await.unwrap_err();
        assert!(err.is_lost(), "{source}: {err:?}");
        assert!(err.to_string().contains(&name), "{err}");
        if source == "pool" {
            // The dead connection does not come back out of the pool.
            let conn = pool.get().await.unwrap();
            assert_ne!(pid_of(&conn).await, pid);
        }
    }
}

/// A guard dropped on a thread without a tokio runtime still frees its lock: the
/// unlock is queued on the connection during the drop itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_outside_the_runtime_frees_the_lock() {
    let observer = connect().await;
    let pool = pool(1).await;
    let s = session().await;
    for source in ["pool", "session"] {
        let name = unique_name(&format!("guard-drop-thread-{source}"));
        let guard = match source {
            "pool" => pglock::advisory(name.as_str())
                .acquire(&pool)
                .await
                .unwrap(),
            _ => pglock::advisory(name.as_str()).acquire(&s).await.unwrap(),
        };
        assert_eq!(holders(&observer, &name).await.len(), 1);
        std::thread::spawn(move || drop(guard)).join().unwrap();
        assert!(freed(&observer, &name).await, "{source}");
    }
    // The pooled connection came back clean.
    let conn = pool.get().await.unwrap();
    let pid = pid_of(&conn).await;
    assert_eq!(pglock_tests::advisory_locks_of(&observer, pid).await, 0);
}
