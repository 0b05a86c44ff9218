//! `#[pglock::advisory]` through every source it accepts, against the real server:
//! a shared `Session` excludes like a pool; the same id nested or recursive in
//! one task fails fast (self-wait) instead of hanging, or times out; `client = …`
//! queries through the lock's own connection (a pool of one suffices); settings a
//! shared session refuses, leases under the floor and a missing default pool are
//! errors, never a busy lock. This binary never installs a default pool.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use pglock::Session;
use pglock_tests::{connect, holders, lock_rows, pid_of, pool, session, unique_name};

/// Counts the bodies running at once and the most ever seen.
#[derive(Default)]
struct Overlap {
    running: AtomicUsize,
    most: AtomicUsize,
}

impl Overlap {
    async fn body(&self) {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(150)).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
    }
}

#[pglock::advisory(name, pool = session)]
async fn through_session(
    session: &Session,
    name: &str,
    overlap: &Overlap,
) -> Result<(), pglock::Error> {
    overlap.body().await;
    Ok(())
}

#[pglock::advisory(name, pool = session, timeout = "0s")]
async fn through_session_now(
    session: &Session,
    name: &str,
    ran: &AtomicBool,
) -> Result<(), pglock::Error> {
    ran.store(true, Ordering::SeqCst);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_session_gives_exclusion() {
    let session = Arc::new(session().await);
    let observer = connect().await;
    let name = unique_name("attr-session-exclusion");
    let overlap = Arc::new(Overlap::default());
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let (session, name, overlap) = (session.clone(), name.clone(), overlap.clone());
            tokio::spawn(async move { through_session(&session, &name, &overlap).await })
        })
        .collect();
    // While the calls run, a fourth that will not wait is refused: the lock is
    // held (through the same session) by another call.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let ran = AtomicBool::new(false);
    let err = through_session_now(&session, &name, &ran)
        .await
        .unwrap_err();
    assert!(err.is_not_acquired(), "{err}");
    assert!(!ran.load(Ordering::SeqCst));
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(
        overlap.most.load(Ordering::SeqCst),
        1,
        "the bodies ran one at a time"
    );
    assert!(lock_rows(&observer, &name).await.is_empty());
}

#[pglock::advisory(name, pool = pool)]
async fn outer_then_inner(pool: &Pool, name: &str) -> Result<(), pglock::Error> {
    inner(pool, name).await
}

#[pglock::advisory(name, pool = pool)]
async fn inner(pool: &Pool, name: &str) -> Result<(), pglock::Error> {
    Ok(())
}

#[pglock::advisory(name, pool = pool)]
async fn recursive(pool: &Pool, name: &str, depth: u32) -> Result<u32, pglock::Error> {
    if depth == 0 {
        return Ok(0);
    }
    Ok(Box::pin(recursive(pool, name, depth - 1)).await? + 1)
}

#[pglock::advisory(name, pool = session)]
async fn outer_on_session(session: &Session, name: &str) -> Result<(), pglock::Error> {
    inner_on_session(session, name).await
}

#[pglock::advisory(name, pool = session)]
async fn inner_on_session(session: &Session, name: &str) -> Result<(), pglock::Error> {
    Ok(())
}

#[pglock::advisory(name, pool = pool)]
async fn outer_with_timed_inner(pool: &Pool, name: &str) -> Result<(), pglock::Error> {
    inner_within(pool, name).await
}

#[pglock::advisory(name, pool = pool, timeout = "200ms")]
async fn inner_within(pool: &Pool, name: &str) -> Result<(), pglock::Error> {
    Ok(())
}

/// Runs `call` with a bound that a hang would exceed.
async fn fast<T>(call: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("the nested call failed fast instead of hanging")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_or_recursive_use_of_one_id_fails_fast() {
    let pool = pool(4).await;
    let session = session().await;
    let observer = connect().await;
    let name = unique_name("attr-self-wait");

    let err = fast(outer_then_inner(&pool, &name)).await.unwrap_err();
    assert!(err.is_deadlock(), "{err}");
    assert!(err.to_string().contains("already holds the lock"), "{err}");
    assert!(lock_rows(&observer, &name).await.is_empty());

    let err = fast(recursive(&pool, &name, 3)).await.unwrap_err();
    assert!(err.is_deadlock(), "{err}");
    assert!(lock_rows(&observer, &name).await.is_empty());

    let err = fast(outer_on_session(&session, &name)).await.unwrap_err();
    assert!(err.is_deadlock(), "{err}");
    assert!(lock_rows(&observer, &name).await.is_empty());

    // With a timeout, the inner call waits it out and says so.
    let started = Instant::now();
    let err = fast(outer_with_timed_inner(&pool, &name))
        .await
        .unwrap_err();
    assert!(err.is_not_acquired(), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(lock_rows(&observer, &name).await.is_empty());

    // Each works on its own.
    assert_eq!(recursive(&pool, &name, 0).await.unwrap(), 0);
    inner_on_session(&session, &name).await.unwrap();
}

#[pglock::advisory(name, pool = session, lease = "30s")]
async fn leased_on_session(session: &Session, name: &str) -> Result<(), pglock::Error> {
    Ok(())
}

#[pglock::advisory(name, pool = session, label = "worker", side_effect = Skip)]
async fn labelled_on_session(session: &Session, name: &str, ran: &AtomicBool) -> Option<()> {
    ran.store(true, Ordering::SeqCst);
    Some(())
}

#[pglock::advisory(name, pool = pool, lease = ttl)]
async fn leased_for(pool: &Pool, name: &str, ttl: Duration) -> Result<(), pglock::Error> {
    Ok(())
}

#[pglock::advisory(name, side_effect = Skip)]
async fn skip_on_default_pool(name: &str, ran: &AtomicBool) -> Option<()> {
    ran.store(true, Ordering::SeqCst);
    Some(())
}

const NO_NAME: &str = "";

#[pglock::advisory(NO_NAME, pool = pool, side_effect = Skip)]
async fn skip_with_empty_id(pool: &Pool) {}

#[pglock::advisory(name, side_effect = Skip)]
async fn skip_result_on_default_pool(name: &str) -> Result<(), pglock::Error> {
    Ok(())
}

/// The panic message of `call`, run in a task of its own.
async fn panic_of<F>(call: F) -> String
where
    F: std::future::Future + Send + 'static,
    F::Output: Send,
{
    let panic = tokio::spawn(call).await.err().expect("the call panicked");
    let payload = panic.into_panic();
    payload
        .downcast_ref::<String>()
        .cloned()
        .expect("a formatted panic message")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn programming_errors_are_errors_never_a_busy_lock() {
    let session = Arc::new(session().await);
    let pool = pool(2).await;
    let observer = connect().await;
    let name = unique_name("attr-misuse");

    // A lease or label is a setting of the server session: a shared session
    // refuses it.
    let err = leased_on_session(&session, &name).await.unwrap_err();
    assert!(err.is_misuse(), "{err}");
    let (s, n) = (session.clone(), name.clone());
    let message = panic_of(async move {
        let ran = AtomicBool::new(false);
        labelled_on_session(&s, &n, &ran).await
    })
    .await;
    assert!(message.contains("not a busy lock"), "{message}");

    // A lease under the floor, given at run time.
    let err = leased_for(&pool, &name, Duration::from_millis(2))
        .await
        .unwrap_err();
    assert!(err.is_invalid_argument(), "{err}");
    assert!(err.to_string().contains("floor"), "{err}");
    leased_for(&pool, &name, Duration::from_secs(1))
        .await
        .unwrap();

    // No default pool (this binary installs none).
    let n = name.clone();
    let message = panic_of(async move {
        let ran = AtomicBool::new(false);
        let out = skip_on_default_pool(&n, &ran).await;
        assert!(!ran.load(Ordering::SeqCst));
        out
    })
    .await;
    assert!(message.contains("set_default_pool"), "{message}");
    // An id constant that is empty.
    let p = pool.clone();
    let message = panic_of(async move { skip_with_empty_id(&p).await }).await;
    assert!(message.contains("not a busy lock"), "{message}");

    let err = skip_result_on_default_pool(&name).await.unwrap_err();
    assert!(err.is_misuse(), "{err}");
    assert!(lock_rows(&observer, &name).await.is_empty());
}

/// Queries through the lock's own connection: the function needs one connection.
#[pglock::advisory(name, pool = pool, client = db)]
async fn query_under_lock(pool: &Pool, name: &str) -> Result<(i32, Vec<i32>), pglock::Error> {
    let me: i32 = db.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let key = pglock::key_for(name)?;
    let holding: Vec<i32> = db
        .query(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND classid::int8 = (($1::int8 >> 32) & 4294967295) \
             AND objid::int8 = ($1::int8 & 4294967295)",
            &[&key],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok((me, holding))
}

#[pglock::advisory(name, pool = session, client = db, side_effect = Skip)]
async fn query_on_session(session: &Session, name: &str) -> Option<i32> {
    db.query_one("SELECT pg_backend_pid()", &[])
        .await
        .ok()
        .map(|r| r.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_body_queries_through_the_locks_own_connection() {
    let pool = pool(1).await;
    let observer = connect().await;
    let name = unique_name("attr-client");
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let (pool, name) = (pool.clone(), name.clone());
            tokio::spawn(async move { query_under_lock(&pool, &name).await })
        })
        .collect();
    let mut pids = Vec::new();
    for call in calls {
        let (me, holding) = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .expect("a pool of one is enough: the second call waits for the first")
            .unwrap()
            .unwrap();
        assert_eq!(holding, vec![me], "the body's connection holds the lock");
        pids.push(me);
    }
    assert_eq!(pids[0], pids[1], "one pooled connection served both calls");
    assert!(lock_rows(&observer, &name).await.is_empty());

    let session = session().await;
    let pid = query_on_session(&session, &name).await.unwrap();
    assert_eq!(pid, pid_of(session.client()).await);
    assert!(holders(&observer, &name).await.is_empty());
}

#[async_trait::async_trait]
trait Job: Send + Sync {
    async fn run(&self, overlap: &Overlap) -> Result<pglock::HeldLock, pglock::Error>;
}

struct Nightly {
    pool: Pool,
    name: String,
}

#[async_trait::async_trait]
impl Job for Nightly {
    #[pglock::advisory(self.name.as_str(), pool = &self.pool)]
    async fn run(&self, overlap: &Overlap) -> Result<pglock::HeldLock, pglock::Error> {
        overlap.body().await;
        Ok(pglock::held().expect("inside the body"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_trait_methods_take_the_lock() {
    let job: Arc<dyn Job> = Arc::new(Nightly {
        pool: pool(3).await,
        name: unique_name("attr-async-trait"),
    });
    let overlap = Arc::new(Overlap::default());
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let (job, overlap) = (job.clone(), overlap.clone());
            tokio::spawn(async move { job.run(&overlap).await })
        })
        .collect();
    for call in calls {
        let lock = call.await.unwrap().unwrap();
        assert!(lock
            .name()
            .unwrap()
            .starts_with("pglock-test:attr-async-trait"));
    }
    assert_eq!(overlap.most.load(Ordering::SeqCst), 1, "one call at a time");
}

#[pglock::advisory(id = shared, shared, pool = pool)]
async fn named_shared(
    pool: &Pool,
    shared: &str,
    observer: &tokio_postgres::Client,
) -> Result<Vec<String>, pglock::Error> {
    Ok(lock_rows(observer, shared)
        .await
        .into_iter()
        .map(|r| r.mode)
        .collect())
}

#[pglock::advisory(name, pool = pool, timeout = wait)]
async fn optional_wait(
    pool: &Pool,
    name: &str,
    wait: Option<Duration>,
) -> Result<(), pglock::Error> {
    Ok(())
}

struct Work {
    name: String,
    attempts: u32,
}

#[pglock::advisory(name.as_str(), pool = pool)]
async fn destructured(
    pool: &Pool,
    Work { name, attempts }: Work,
    observer: &tokio_postgres::Client,
) -> Result<(usize, u32), pglock::Error> {
    Ok((holders(observer, &name).await.len(), attempts))
}

struct InTx<'t> {
    tx: tokio_postgres::Transaction<'t>,
}

impl InTx<'_> {
    #[pglock::advisory(name, xact = self.tx)]
    async fn step(
        &self,
        name: &str,
        observer: &tokio_postgres::Client,
    ) -> Result<usize, pglock::Error> {
        Ok(holders(observer, name).await.len())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_ids_optional_timeouts_destructured_bindings_and_self_transactions() {
    let pool = pool(2).await;
    let observer = connect().await;
    let name = unique_name("attr-forms");

    // `id = shared, shared`: the parameter is the id, the flag is the mode.
    let modes = named_shared(&pool, &name, &observer).await.unwrap();
    assert_eq!(modes, vec!["ShareLock".to_string()]);

    // `timeout = Option<Duration>`: Some waits that long, None waits until granted.
    let other = connect().await;
    let key = pglock::key_for(&name).unwrap();
    other
        .execute("SELECT pg_advisory_lock($1)", &[&key])
        .await
        .unwrap();
    let started = Instant::now();
    let err = optional_wait(&pool, &name, Some(Duration::from_millis(150)))
        .await
        .unwrap_err();
    assert!(err.is_not_acquired(), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(150));
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        other
            .execute("SELECT pg_advisory_unlock($1)", &[&key])
            .await
            .unwrap();
        other
    });
    let started = Instant::now();
    optional_wait(&pool, &name, None).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(250));
    drop(release.await.unwrap());

    // A binding of a destructured parameter as the id.
    let work = Work {
        name: name.clone(),
        attempts: 3,
    };
    assert_eq!(destructured(&pool, work, &observer).await.unwrap(), (1, 3));

    // `xact = self.tx`: held in the transaction until it ends.
    let mut client = connect().await;
    let in_tx = InTx {
        tx: client.transaction().await.unwrap(),
    };
    assert_eq!(in_tx.step(&name, &observer).await.unwrap(), 1);
    assert_eq!(
        holders(&observer, &name).await.len(),
        1,
        "until the transaction ends"
    );
    in_tx.tx.commit().await.unwrap();
    assert!(lock_rows(&observer, &name).await.is_empty());
}
