//! `#[pglock::advisory]` against the real server: contention (raise, skip, wait,
//! time out), shared mode, ids, methods, generics, release on return / `?` / panic /
//! cancellation, transaction locks, the default pool and `Send` futures; `fencing`,
//! `lease` and `label`, and `pglock::held()` in the body. Lock state is asserted
//! through a second connection and `pg_locks`.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use pglock_tests::{
    connect, eventually, holders, lock_rows, pool, unique_name, wait_until_waiting,
};
use tokio::sync::{oneshot, Barrier, Notify};

/// The body of a contended call: says it holds the lock, then waits to be let go.
struct Hold {
    entered: Option<oneshot::Sender<()>>,
    leave: Arc<Notify>,
}

impl Hold {
    fn new() -> (Hold, oneshot::Receiver<()>, Arc<Notify>) {
        let (tx, rx) = oneshot::channel();
        let leave = Arc::new(Notify::new());
        let hold = Hold {
            entered: Some(tx),
            leave: leave.clone(),
        };
        (hold, rx, leave)
    }

    async fn run(mut self) {
        let _ = self.entered.take().expect("run once").send(());
        self.leave.notified().await;
    }
}

#[pglock::advisory(name, pool = pool)]
async fn raise_wait(pool: &Pool, name: &str, hold: Option<Hold>) -> Result<u32, pglock::Error> {
    if let Some(hold) = hold {
        hold.run().await;
    }
    Ok(1)
}

/// Says whether another call's body had finished before this body began.
#[pglock::advisory(name, pool = pool)]
async fn in_turn(
    pool: &Pool,
    name: &str,
    hold: Option<Hold>,
    finished: &AtomicBool,
) -> Result<bool, pglock::Error> {
    let other_finished = finished.load(Ordering::SeqCst);
    if let Some(hold) = hold {
        hold.run().await;
    }
    finished.store(true, Ordering::SeqCst);
    Ok(other_finished)
}

#[pglock::advisory(name, pool = pool, timeout = "0s")]
async fn raise_now(pool: &Pool, name: &str, ran: &AtomicBool) -> Result<(), pglock::Error> {
    ran.store(true, Ordering::SeqCst);
    Ok(())
}

#[pglock::advisory(name, pool = pool, timeout = "150ms")]
async fn raise_within(pool: &Pool, name: &str, ran: &AtomicBool) -> Result<(), pglock::Error> {
    ran.store(true, Ordering::SeqCst);
    Ok(())
}

#[pglock::advisory(name, pool = pool, side_effect = Skip)]
async fn skip_unit(pool: &Pool, name: &str, runs: &AtomicUsize) {
    runs.fetch_add(1, Ordering::SeqCst);
}

#[pglock::advisory(name, pool = pool, side_effect = Skip)]
async fn skip_option(pool: &Pool, name: &str) -> Option<&'static str> {
    Some("ran")
}

#[pglock::advisory(name, pool = pool, side_effect = Skip, timeout = Duration::from_millis(100))]
async fn skip_result(pool: &Pool, name: &str) -> Result<Option<u8>, pglock::Error> {
    Ok(Some(7))
}

#[pglock::advisory(name, pool = pool, side_effect = Skip)]
async fn skip_hold(pool: &Pool, name: &str, hold: Hold) -> Result<(), pglock::Error> {
    hold.run().await;
    Ok(())
}

/// Waits until nobody holds or waits for `name` (a dropped guard's unlock runs on
/// a background task, so it is observed, not assumed).
async fn until_free(observer: &tokio_postgres::Client, name: &str) {
    let free = eventually(Duration::from_secs(10), || async {
        lock_rows(observer, name).await.is_empty()
    })
    .await;
    assert!(free, "{name} was not released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_call_raises_when_busy() {
    let pool = pool(4).await;
    let observer = connect().await;
    let name = unique_name("attr-raise");
    let (hold, entered, leave) = Hold::new();
    let first = tokio::spawn({
        let (pool, name) = (pool.clone(), name.clone());
        async move { raise_wait(&pool, &name, Some(hold)).await }
    });
    entered.await.unwrap();
    assert_eq!(holders(&observer, &name).await.len(), 1);

    let ran = AtomicBool::new(false);
    // Another process (a pool of its own) finds it busy and is told by whom.
    let other = pglock_tests::pool(1).await;
    let err = raise_now(&other, &name, &ran).await.unwrap_err();
    assert!(err.is_not_acquired(), "{err}");
    assert!(err.holder().is_some(), "the error names the holder: {err}");
    assert!(!ran.load(Ordering::SeqCst), "the body must not run");

    leave.notify_one();
    assert_eq!(first.await.unwrap().unwrap(), 1);
    // The call returned only after its release: the lock is already free.
    assert!(lock_rows(&observer, &name).await.is_empty());
    raise_now(&pool, &name, &ran).await.unwrap();
    assert!(ran.load(Ordering::SeqCst));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_call_times_out() {
    let pool = pool(4).await;
    let observer = connect().await;
    let name = unique_name("attr-timeout");
    let (hold, entered, leave) = Hold::new();
    let first = tokio::spawn({
        let (pool, name) = (pool.clone(), name.clone());
        async move { raise_wait(&pool, &name, Some(hold)).await }
    });
    entered.await.unwrap();

    let ran = AtomicBool::new(false);
    let err = raise_within(&pool, &name, &ran).await.unwrap_err();
    assert!(err.is_not_acquired(), "{err}");
    assert_eq!(err.timeout(), Some(Duration::from_millis(150)));
    assert!(!ran.load(Ordering::SeqCst));
    // The timed-out waiter left nothing behind: one holder, no waiter.
    let rows = lock_rows(&observer, &name).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].granted);

    leave.notify_one();
    first.await.unwrap().unwrap();
    assert!(lock_rows(&observer, &name).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_call_waits_until_the_first_returns() {
    let pool = pool(4).await;
    let observer = connect().await;
    let name = unique_name("attr-wait");
    let (hold, entered, leave) = Hold::new();
    let finished = Arc::new(AtomicBool::new(false));
    let first = tokio::spawn({
        let (pool, name, finished) = (pool.clone(), name.clone(), finished.clone());
        async move { in_turn(&pool, &name, Some(hold), &finished).await }
    });
    entered.await.unwrap();

    // From another process (a pool of its own), so that it waits on the server.
    let other = pglock_tests::pool(1).await;
    let second = tokio::spawn({
        let (pool, name, finished) = (other.clone(), name.clone(), finished.clone());
        async move { in_turn(&pool, &name, None, &finished).await }
    });
    wait_until_waiting(&observer, &name, None).await;
    assert!(!second.is_finished());

    leave.notify_one();
    assert!(!first.await.unwrap().unwrap());
    assert!(
        second.await.unwrap().unwrap(),
        "the second body began only after the first had finished"
    );
    assert!(lock_rows(&observer, &name).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_call_skips_when_busy() {
    let pool = pool(4).await;
    let observer = connect().await;
    let name = unique_name("attr-skip");
    let (hold, entered, leave) = Hold::new();
    let first = tokio::spawn({
        let (pool, name) = (pool.clone(), name.clone());
        async move { skip_hold(&pool, &name, hold).await }
    });
    entered.await.unwrap();

    let runs = AtomicUsize::new(0);
    skip_unit(&pool, &name, &runs).await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        0,
        "skipped: the body did not run"
    );
    assert_eq!(skip_option(&pool, &name).await, None);
    // With a timeout, Skip waits that long before skipping.
    assert_eq!(skip_result(&pool, &name).await.unwrap(), None);
    assert_eq!(holders(&observer, &name).await.len(), 1);

    leave.notify_one();
    first.await.unwrap().unwrap();
    // Sequential calls all run: each call releases before it returns.
    skip_unit(&pool, &name, &runs).await;
    skip_unit(&pool, &name, &runs).await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(skip_option(&pool, &name).await, Some("ran"));
    assert_eq!(skip_result(&pool, &name).await.unwrap(), Some(7));
    assert!(lock_rows(&observer, &name).await.is_empty());
}

#[pglock::advisory(name, pool = pool, shared)]
async fn read_shared(
    pool: &Pool,
    name: &str,
    both_in: &Barrier,
    leave: &Notify,
    finished: &AtomicUsize,
) -> Result<(), pglock::Error> {
    // Both readers are inside at the same time, or this never returns.
    both_in.wait().await;
    leave.notified().await;
    finished.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[pglock::advisory(name, pool = pool)]
async fn write_exclusive(
    pool: &Pool,
    name: &str,
    readers_left: &AtomicUsize,
) -> Result<usize, pglock::Error> {
    Ok(readers_left.load(Ordering::SeqCst))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_calls_run_together_while_an_exclusive_one_waits() {
    let pool = pool(6).await;
    let observer = connect().await;
    let name = unique_name("attr-shared");
    let barrier = Arc::new(Barrier::new(3));
    let leave = Arc::new(Notify::new());
    let done = Arc::new(AtomicUsize::new(0));
    let mut readers = Vec::new();
    for _ in 0..2 {
        let (pool, name, barrier, leave, done) = (
            pool.clone(),
            name.clone(),
            barrier.clone(),
            leave.clone(),
            done.clone(),
        );
        readers.push(tokio::spawn(async move {
            read_shared(&pool, &name, &barrier, &leave, &done).await
        }));
    }
    barrier.wait().await; // both readers are in their bodies
    let rows = lock_rows(&observer, &name).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r.granted && r.mode == "ShareLock"));

    let other = pglock_tests::pool(1).await;
    let writer = tokio::spawn({
        let (pool, name, done) = (other.clone(), name.clone(), done.clone());
        async move { write_exclusive(&pool, &name, &done).await }
    });
    wait_until_waiting(&observer, &name, None).await;
    assert!(!writer.is_finished());

    leave.notify_waiters();
    for r in readers {
        r.await.unwrap().unwrap();
    }
    assert_eq!(
        writer.await.unwrap().unwrap(),
        2,
        "the writer ran after both readers"
    );
    assert!(lock_rows(&observer, &name).await.is_empty());
}

/// The default id: `concat!(module_path!(), "::", <fn name>)`.
mod my_app {
    pub mod jobs {
        use deadpool_postgres::Pool;

        /// The id this function's lock must have, as the contract spells it.
        pub const PINNED: &str = "attribute::my_app::jobs::send_invoices";

        #[pglock::advisory(pool = pool)]
        pub async fn send_invoices(
            pool: &Pool,
            observer: &tokio_postgres::Client,
        ) -> Result<usize, pglock::Error> {
            assert_eq!(concat!(module_path!(), "::send_invoices"), PINNED);
            Ok(pglock_tests::holders(observer, PINNED).await.len())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_id_is_module_path_and_function_name() {
    // The key contract: the same derivation in a crate `my_app` gives this pinned key.
    assert_eq!(
        pglock::key_for("my_app::jobs::send_invoices").unwrap(),
        5126864360601373363
    );
    let pool = pool(2).await;
    let observer = connect().await;
    // Inside the body the lock on the pinned name is held (by this call: another
    // run of this test would be waiting, not holding, meanwhile).
    let held = my_app::jobs::send_invoices(&pool, &observer).await.unwrap();
    assert_eq!(held, 1);
}

/// A literal id: fixed, so unique to this test in the code base.
#[pglock::advisory("pglock-tests/attribute/explicit-id", pool = pool)]
async fn explicit_id(
    pool: &Pool,
    observer: &tokio_postgres::Client,
) -> Result<Vec<i32>, pglock::Error> {
    Ok(holders(observer, "pglock-tests/attribute/explicit-id").await)
}

/// A raw `i64` key as the id.
#[pglock::advisory(key, pool = pool)]
async fn raw_key(
    pool: &Pool,
    key: i64,
    observer: &tokio_postgres::Client,
) -> Result<usize, pglock::Error> {
    Ok(pglock_tests::bigint_lock_rows(observer, key).await.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_ids() {
    let pool = pool(2).await;
    let observer = connect().await;
    assert_eq!(explicit_id(&pool, &observer).await.unwrap().len(), 1);
    let key = pglock::key_for(&unique_name("attr-raw-key")).unwrap();
    assert_eq!(raw_key(&pool, key, &observer).await.unwrap(), 1);
    assert!(pglock_tests::bigint_lock_rows(&observer, key)
        .await
        .is_empty());
}

struct Worker {
    pool: Pool,
    name: String,
    runs: usize,
}

impl Worker {
    #[pglock::advisory(self.name.as_str(), pool = &self.pool)]
    async fn observe(&self, observer: &tokio_postgres::Client) -> Result<usize, pglock::Error> {
        Ok(holders(observer, &self.name).await.len())
    }

    #[pglock::advisory(self.name.as_str(), pool = &self.pool, timeout = "0s")]
    async fn bump(&mut self) -> Result<usize, pglock::Error> {
        self.runs += 1;
        Ok(self.runs)
    }

    #[pglock::advisory(self.name.clone(), pool = self.pool.clone(), side_effect = Skip)]
    async fn into_runs(self) -> Option<usize> {
        Some(self.runs)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_with_self_and_pool_from_self() {
    let observer = connect().await;
    let mut worker = Worker {
        pool: pool(2).await,
        name: unique_name("attr-method"),
        runs: 0,
    };
    assert_eq!(worker.observe(&observer).await.unwrap(), 1);
    assert_eq!(worker.bump().await.unwrap(), 1);
    assert_eq!(worker.bump().await.unwrap(), 2);

    // While someone else holds it, `&mut self` raises without running.
    let other = pglock::advisory(worker.name.as_str())
        .acquire(&worker.pool)
        .await
        .unwrap();
    assert!(worker.bump().await.unwrap_err().is_not_acquired());
    assert_eq!(worker.runs, 2);
    other.release().await.unwrap();

    let name = worker.name.clone();
    assert_eq!(worker.into_runs().await, Some(2));
    assert!(lock_rows(&observer, &name).await.is_empty());
}

#[pglock::advisory(name.as_ref(), pool = pool)]
async fn generic<N, T>(pool: &Pool, name: N, items: Vec<T>) -> Result<String, pglock::Error>
where
    N: AsRef<str>,
    T: std::fmt::Display + Send,
{
    let parts: Vec<String> = items.iter().map(|i| i.to_string()).collect();
    Ok(parts.join(","))
}

#[pglock::advisory(name, pool = pool)]
async fn impl_trait_args(
    pool: &Pool,
    name: &str,
    items: impl IntoIterator<Item = u32> + Send,
    observer: &tokio_postgres::Client,
) -> Result<(u32, usize), pglock::Error> {
    let held = holders(observer, name).await.len();
    Ok((items.into_iter().sum(), held))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_functions_and_impl_trait_arguments() {
    let pool = pool(2).await;
    let observer = connect().await;
    let name = unique_name("attr-generic");
    assert_eq!(
        generic(&pool, name.clone(), vec![1, 2, 3]).await.unwrap(),
        "1,2,3"
    );
    assert_eq!(generic(&pool, &name, vec!["a"]).await.unwrap(), "a");
    assert_eq!(
        impl_trait_args(&pool, &name, [1, 2, 3], &observer)
            .await
            .unwrap(),
        (6, 1)
    );
    assert!(lock_rows(&observer, &name).await.is_empty());
}

#[derive(Debug)]
enum AppError {
    Lock(pglock::Error),
    Failed(&'static str),
}

impl From<pglock::Error> for AppError {
    fn from(e: pglock::Error) -> Self {
        AppError::Lock(e)
    }
}

fn fails() -> Result<(), AppError> {
    Err(AppError::Failed("step two"))
}

#[pglock::advisory(name, pool = pool)]
async fn early_return(pool: &Pool, name: &str, how: u8) -> Result<u8, AppError> {
    if how == 0 {
        return Ok(0);
    }
    fails()?;
    Ok(2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_on_early_return_and_question_mark() {
    let pool = pool(2).await;
    let observer = connect().await;
    let name = unique_name("attr-early");
    assert_eq!(early_return(&pool, &name, 0).await.unwrap(), 0);
    assert!(lock_rows(&observer, &name).await.is_empty());
    assert!(matches!(
        early_return(&pool, &name, 1).await,
        Err(AppError::Failed("step two"))
    ));
    assert!(lock_rows(&observer, &name).await.is_empty());

    // A busy lock arrives as the function's own error type, through From.
    let guard = pglock::advisory(name.as_str())
        .acquire(&pool)
        .await
        .unwrap();
    #[pglock::advisory(name, pool = pool, timeout = "0s")]
    async fn busy(pool: &Pool, name: &str) -> Result<(), AppError> {
        Err(AppError::Failed("never runs"))
    }
    match busy(&pool, &name).await {
        Err(AppError::Lock(e)) => assert!(e.is_not_acquired()),
        other => panic!("expected a lock error, got {other:?}"),
    }
    guard.release().await.unwrap();
}

#[pglock::advisory(name, pool = pool)]
async fn hold_forever(
    pool: &Pool,
    name: &str,
    entered: oneshot::Sender<()>,
) -> Result<(), pglock::Error> {
    let _ = entered.send(());
    std::future::pending::<()>().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_when_the_future_is_dropped_mid_body() {
    let pool = pool(2).await;
    let observer = connect().await;
    let name = unique_name("attr-cancel");
    let (tx, rx) = oneshot::channel();
    let call = hold_forever(&pool, &name, tx);
    tokio::select! {
        _ = call => unreachable!("the body never finishes"),
        _ = rx => {}
    }
    // The select dropped the call mid-body, with the lock held.
    until_free(&observer, &name).await;

    // Also through a timeout, and with a second caller waiting: it gets the lock.
    let (tx, rx) = oneshot::channel();
    let first = tokio::spawn({
        let (pool, name) = (pool.clone(), name.clone());
        async move {
            tokio::time::timeout(Duration::from_secs(3600), hold_forever(&pool, &name, tx)).await
        }
    });
    rx.await.unwrap();
    let other = pglock_tests::pool(1).await;
    let second = tokio::spawn({
        let (pool, name) = (other.clone(), name.clone());
        async move { raise_wait(&pool, &name, None).await }
    });
    wait_until_waiting(&observer, &name, None).await;
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    assert_eq!(second.await.unwrap().unwrap(), 1);
    until_free(&observer, &name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_waiting_call_leaves_no_waiter() {
    let pool = pool(3).await;
    let observer = connect().await;
    let name = unique_name("attr-cancel-wait");
    let other = pglock_tests::pool(1).await;
    let guard = pglock::advisory(name.as_str())
        .acquire(&other)
        .await
        .unwrap();
    let waiting = tokio::spawn({
        let (pool, name) = (pool.clone(), name.clone());
        async move { raise_wait(&pool, &name, None).await }
    });
    wait_until_waiting(&observer, &name, None).await;
    waiting.abort();
    let _ = waiting.await;
    let gone = eventually(Duration::from_secs(10), || async {
        lock_rows(&observer, &name).await.iter().all(|r| r.granted)
    })
    .await;
    assert!(gone, "the dropped call still waits");
    guard.release().await.unwrap();
    until_free(&observer, &name).await;
}

#[pglock::advisory(name, pool = pool)]
async fn panics(
    pool: &Pool,
    name: &str,
    observer: &tokio_postgres::Client,
) -> Result<(), pglock::Error> {
    assert_eq!(holders(observer, name).await.len(), 1);
    panic!("the job failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_on_panic() {
    let pool = pool(2).await;
    let name = unique_name("attr-panic");
    let task = tokio::spawn({
        let (pool, name) = (pool.clone(), name.clone());
        async move {
            let observer = connect().await;
            panics(&pool, &name, &observer).await
        }
    });
    let err = task.await.unwrap_err();
    assert!(err.is_panic());
    let observer = connect().await;
    until_free(&observer, &name).await;
    // And the lock is usable again.
    assert_eq!(raise_wait(&pool, &name, None).await.unwrap(), 1);
}

#[pglock::advisory(name, pool = pool)]
async fn loses_its_lock(
    pool: &Pool,
    name: &str,
    observer: &tokio_postgres::Client,
) -> Result<u32, pglock::Error> {
    let pid = holders(observer, name).await[0];
    observer
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    Ok(42)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_lost_while_the_body_ran_is_an_error() {
    let pool = pool(2).await;
    let observer = connect().await;
    let name = unique_name("attr-lost");
    let err = loses_its_lock(&pool, &name, &observer).await.unwrap_err();
    assert!(err.is_lost(), "{err}");
    until_free(&observer, &name).await;
}

#[pglock::advisory(name, xact = tx)]
async fn in_transaction(
    tx: &tokio_postgres::Transaction<'_>,
    name: &str,
) -> Result<i32, pglock::Error> {
    let row = tx
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("the transaction is usable");
    Ok(row.get(0))
}

#[pglock::advisory(name, xact = tx, timeout = "100ms")]
async fn in_transaction_within(
    tx: &deadpool_postgres::Transaction<'_>,
    name: &str,
) -> Result<(), pglock::Error> {
    Ok(())
}

#[pglock::advisory(name, xact = tx, side_effect = Skip, shared)]
async fn in_transaction_skip(name: &str, tx: deadpool_postgres::Transaction<'_>) -> Option<()> {
    tx.commit().await.unwrap();
    Some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xact_locks_last_until_the_transaction_ends() {
    let pool = pool(4).await;
    let observer = connect().await;
    let name = unique_name("attr-xact");
    let mut client = connect().await;
    let tx = client.transaction().await.unwrap();
    let pid = in_transaction(&tx, &name).await.unwrap();
    // The function returned; its lock lives on with the transaction.
    assert_eq!(holders(&observer, &name).await, vec![pid]);

    // Busy: a finite timeout raises and leaves the other transaction usable.
    let mut conn = pool.get().await.unwrap();
    let other = conn.transaction().await.unwrap();
    let err = in_transaction_within(&other, &name).await.unwrap_err();
    assert!(err.is_not_acquired(), "{err}");
    other.query_one("SELECT 1", &[]).await.unwrap();
    other.rollback().await.unwrap();

    // Skip, taking the transaction by value.
    let mut conn2 = pool.get().await.unwrap();
    let by_value = conn2.transaction().await.unwrap();
    assert_eq!(in_transaction_skip(&name, by_value).await, None);

    tx.commit().await.unwrap();
    assert!(lock_rows(&observer, &name).await.is_empty());
    let by_value = conn2.transaction().await.unwrap();
    assert_eq!(in_transaction_skip(&name, by_value).await, Some(()));
    assert!(lock_rows(&observer, &name).await.is_empty());
}

fn assert_send<F: Future + Send + 'static>(f: F) -> F {
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn futures_are_send_and_spawnable() {
    let pool = pool(4).await;
    let observer = connect().await;
    let name = unique_name("attr-send");
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (pool, name) = (pool.clone(), name.clone());
        tasks.push(tokio::spawn(assert_send(async move {
            raise_wait(&pool, &name, None).await
        })));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 1);
    }
    assert!(lock_rows(&observer, &name).await.is_empty());
}

#[pglock::advisory(name)]
async fn on_default_pool(
    name: &str,
    observer: &tokio_postgres::Client,
) -> Result<usize, pglock::Error> {
    Ok(holders(observer, name).await.len())
}

#[pglock::advisory(name, side_effect = Skip)]
async fn on_default_pool_skip(name: &str, ran: &AtomicBool) {
    ran.store(true, Ordering::SeqCst);
}

/// The only test that touches the process-wide default pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_pool_missing_then_installed() {
    let observer = connect().await;
    let name = unique_name("attr-default-pool");
    let err = on_default_pool(&name, &observer).await.unwrap_err();
    assert!(err.is_misuse(), "{err}");
    assert!(err.to_string().contains("set_default_pool"), "{err}");
    // Skip with `()`: a missing source is a programming error, never "busy": the
    // call panics and says what to do.
    let ran = Arc::new(AtomicBool::new(false));
    let (task_name, task_ran) = (name.clone(), ran.clone());
    let panicked = tokio::spawn(async move { on_default_pool_skip(&task_name, &task_ran).await })
        .await
        .unwrap_err();
    let message = panicked.into_panic();
    let message = message
        .downcast_ref::<String>()
        .expect("a formatted panic message");
    assert!(message.contains("set_default_pool"), "{message}");
    assert!(message.contains("not a busy lock"), "{message}");
    assert!(!ran.load(Ordering::SeqCst));

    pglock::set_default_pool(pool(2).await).unwrap();
    assert_eq!(on_default_pool(&name, &observer).await.unwrap(), 1);
    on_default_pool_skip(&name, &ran).await;
    assert!(ran.load(Ordering::SeqCst));
    assert!(lock_rows(&observer, &name).await.is_empty());
}

#[pglock::advisory(name, pool = pool, fencing)]
async fn fenced(pool: &Pool, name: &str) -> Result<pglock::HeldLock, pglock::Error> {
    let lock = pglock::held().expect("held() inside the body");
    // A task-local: the same value after an await, still in the body.
    tokio::task::yield_now().await;
    assert_eq!(
        pglock::held().map(|l| l.acquisition_id()),
        Some(lock.acquisition_id())
    );
    Ok(lock)
}

#[pglock::advisory(name, pool = pool, fencing, side_effect = Skip)]
async fn fenced_skip(pool: &Pool, name: &str) -> Option<i64> {
    pglock::held()?.fencing_token()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_tokens_strictly_increase_and_show_in_the_body() {
    let pool = pool(2).await;
    let observer = connect().await;
    pglock::install_fencing(&observer).await.unwrap();
    let name = unique_name("attr-fencing");
    assert!(
        pglock::held().is_none(),
        "no lock outside an attributed body"
    );
    let mut last = i64::MIN;
    let mut ids = Vec::new();
    for i in 0..6 {
        let token = if i % 2 == 0 {
            let lock = fenced(&pool, &name).await.unwrap();
            assert_eq!(lock.name(), Some(name.as_str()));
            assert_eq!(lock.key(), pglock::advisory(name.as_str()).key());
            assert_eq!(lock.mode(), pglock::Mode::Exclusive);
            assert!(!ids.contains(&lock.acquisition_id()));
            ids.push(lock.acquisition_id());
            lock.fencing_token().expect("taken with `fencing`")
        } else {
            fenced_skip(&pool, &name).await.expect("free, so it ran")
        };
        assert!(token > last, "token {token} after {last}");
        last = token;
    }
    assert!(
        pglock::held().is_none(),
        "nothing left behind after the calls"
    );
    assert!(lock_rows(&observer, &name).await.is_empty());
}

#[pglock::advisory(outer, pool = pool)]
async fn outer_lock(
    pool: &Pool,
    outer: &str,
    inner: &str,
) -> Result<[Option<String>; 4], pglock::Error> {
    let name_of = |lock: Option<pglock::HeldLock>| lock.and_then(|l| l.name().map(String::from));
    let before = name_of(pglock::held());
    assert_eq!(
        pglock::held().unwrap().fencing_token(),
        None,
        "no token without `fencing`"
    );
    let during = inner_lock(pool, inner).await?;
    let after = name_of(pglock::held());
    // A spawned task is not the body: it does not inherit the task-local.
    let spawned = tokio::spawn(async { pglock::held() }).await.unwrap();
    assert!(spawned.is_none());
    let passed = {
        let lock = pglock::held();
        tokio::spawn(async move { lock }).await.unwrap()
    };
    Ok([before, during, after, name_of(passed)])
}

#[pglock::advisory(inner, pool = pool, shared)]
async fn inner_lock(pool: &Pool, inner: &str) -> Result<Option<String>, pglock::Error> {
    let lock = pglock::held().expect("the inner lock");
    assert_eq!(lock.mode(), pglock::Mode::Shared);
    Ok(lock.name().map(String::from))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_bodies_see_the_innermost_lock() {
    let pool = pool(4).await;
    let (outer, inner) = (unique_name("attr-outer"), unique_name("attr-inner"));
    assert!(pglock::held().is_none());
    let seen = outer_lock(&pool, &outer, &inner).await.unwrap();
    assert_eq!(
        seen,
        [
            Some(outer.clone()),
            Some(inner.clone()),
            Some(outer.clone()),
            Some(outer.clone())
        ]
    );
    assert!(pglock::held().is_none());
}

/// Reports the pid holding `name` every 500 ms while the body sleeps 4 s,
/// four times the lease (1 s, the attribute's floor).
#[pglock::advisory(name, pool = pool, lease = "1s")]
async fn leased(
    pool: &Pool,
    name: &str,
    observer: &tokio_postgres::Client,
) -> Result<Vec<Vec<i32>>, pglock::Error> {
    assert_eq!(
        pglock::held().unwrap().lease_ttl(),
        Some(Duration::from_secs(1))
    );
    let mut seen = Vec::new();
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        seen.push(holders(observer, name).await);
    }
    Ok(seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_renews_itself_while_the_body_runs() {
    let pool = pool(2).await;
    let observer = connect().await;
    let name = unique_name("attr-lease");
    let seen = leased(&pool, &name, &observer).await.unwrap();
    let pid = seen[0].clone();
    assert_eq!(pid.len(), 1, "held by one session: {seen:?}");
    assert!(
        seen.iter().all(|s| *s == pid),
        "the same session held the lock for 4 s under a 1 s lease: {seen:?}"
    );
    // Released on return (`Ok`: the release found the lock still held).
    assert!(lock_rows(&observer, &name).await.is_empty());
}

#[pglock::advisory(name, pool = pool, lease = ttl)]
async fn leased_and_frozen(pool: &Pool, name: &str, ttl: Duration) -> Result<(), pglock::Error> {
    // Blocks the (single-threaded) runtime: the renewal task cannot run, as in a
    // hung process.
    std::thread::sleep(ttl + Duration::from_millis(1800));
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn a_lease_expires_on_the_server_when_the_process_freezes() {
    let pool = pool(2).await;
    let observer = connect().await;
    let name = unique_name("attr-lease-frozen");
    let err = leased_and_frozen(&pool, &name, Duration::from_secs(1))
        .await
        .unwrap_err();
    // The body's `Ok` became an error: the server ended the lock's session (its
    // goodbye, 57P05 idle_session_timeout, reads as the lock being lost).
    assert!(err.is_lost(), "the server ended the lease: {err:?}");
    until_free(&observer, &name).await;
}

#[pglock::advisory(name, pool = pool, label = format!("attr-worker-{worker}"))]
async fn labelled(
    pool: &Pool,
    name: &str,
    worker: u32,
    observer: &tokio_postgres::Client,
) -> Result<Vec<Option<String>>, pglock::Error> {
    assert_eq!(
        pglock::held().unwrap().label(),
        Some(format!("attr-worker-{worker}").as_str())
    );
    let status = pglock::status(observer, name).await?;
    Ok(status
        .holders
        .into_iter()
        .map(|h| h.application_name)
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_names_the_holder_during_the_body() {
    let pool = pool(2).await;
    let observer = connect().await;
    let name = unique_name("attr-label");
    // Evaluated at each call.
    for worker in [1, 2] {
        let names = labelled(&pool, &name, worker, &observer).await.unwrap();
        assert_eq!(names, vec![Some(format!("attr-worker-{worker}"))]);
    }
    assert!(lock_rows(&observer, &name).await.is_empty());
}
