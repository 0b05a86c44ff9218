//! Benchmark of the multiplexing source (`pglock::Locker`), printing each of the
//! multiplexing targets with its figure:
//!
//! 1. many distinct locks held at once on 4 server connections (counted in
//!    `pg_stat_activity`);
//! 2. many tasks, each locking its own entity name for ~1 ms and releasing:
//!    acquisitions/s through a `Locker` of 4 connections against a deadpool pool
//!    of 4 (a connection per held lock);
//! 3. a single uncontended acquire + release on one connection against raw
//!    `tokio-postgres` prepared `pg_try_advisory_lock` + `pg_advisory_unlock` and
//!    sqlx's `PgAdvisoryLock` (try + `release_now`), timed interleaved cycle by
//!    cycle and in blocks of consecutive cycles;
//! 4. 16 tasks contending for one name: handoffs/s against raw, in alternating
//!    one-second rounds.
//!
//! Targets 3 and 4 run on the multi-thread runtime and again on a current-thread
//! one (tokio-postgres drives each connection from a task of its own, so the
//! runtime decides how many cross-thread wake-ups a round trip costs).
//!
//! `cargo run --release -p pglock-examples --example bench_locker [-- LOCKS TASKS SECONDS]`
//! (defaults 5000 1000 5). No assertions: the figures go to BENCHMARKS.md.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::main]
async fn main() -> Result {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let locks = *args.first().unwrap_or(&5000) as usize;
    let tasks = *args.get(1).unwrap_or(&1000) as usize;
    let seconds = *args.get(2).unwrap_or(&5);
    let app = format!("pglock-bench-locker-{}", std::process::id());
    let pool = pglock_examples::pool(&app, 8);
    pglock_examples::check_server(&pool).await;
    let observer = connect().await?;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at start: {}", load.trim());

    // 1. Many locks on 4 connections.
    let locker = pglock::Locker::new(&pool, 4).await?;
    let started = Instant::now();
    let mut guards = Vec::with_capacity(locks);
    for i in 0..locks {
        let name = format!("bench-locker:{}:{i}", std::process::id());
        match pglock::advisory(name.as_str()).try_acquire(&locker).await {
            Ok(Some(g)) => guards.push(g),
            Ok(None) => {}
            Err(e) => {
                println!("target 1: stopped at {} locks: {e}", guards.len());
                break;
            }
        }
    }
    let connections: i64 = observer
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .await?
        .get(0);
    println!(
        "target 1: {} distinct locks held at once by this process on {connections} server \
         connections of its pool (4 shared by the locker; acquired in {:?})",
        guards.len(),
        started.elapsed()
    );
    let started = Instant::now();
    futures_util::future::join_all(guards.into_iter().map(|g| g.release())).await;
    println!("          released in {:?} (pipelined)", started.elapsed());

    // 2. Many tasks, each on its own entity, through a locker and through a pool.
    let per_lock_pool = pglock_examples::pool(&format!("{app}-pool"), 4);
    let via_locker = throughput(Via::Locker(locker.clone()), tasks, seconds).await;
    let via_pool = throughput(Via::Pool(per_lock_pool), tasks, seconds).await;
    println!(
        "target 2: {tasks} tasks, own entity each, ~1 ms held, {seconds} s: locker(4) {via_locker:.0} \
         acquisitions/s, deadpool(4) {via_pool:.0}/s: ratio {:.2} (target ≥ 5)",
        via_locker / via_pool.max(1.0)
    );

    // 3. One uncontended cycle, one connection, on this multi-thread runtime and
    // on a current-thread one.
    single_cycle(&app).await?.print("multi-thread runtime");
    on_current_thread({
        let app = app.clone();
        move || async move { single_cycle(&app).await }
    })?
    .print("current-thread runtime");

    // 4. 16 tasks on one name, on this multi-thread runtime and on a
    // current-thread one.
    let rounds = 2 * seconds.clamp(2, 10);
    contention(&app, rounds)
        .await?
        .print("multi-thread runtime", rounds);
    on_current_thread({
        let app = app.clone();
        move || async move { contention(&app, rounds).await }
    })?
    .print("current-thread runtime", rounds);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at end: {}", load.trim());
    Ok(())
}

/// One sqlx cycle: `try_acquire` on the connection, then `release_now`.
async fn sqlx_cycle(
    lock: &sqlx::postgres::PgAdvisoryLock,
    conn: &mut sqlx::PgConnection,
) -> Result {
    match lock.try_acquire(conn).await? {
        sqlx::Either::Left(guard) => {
            guard.release_now().await?;
        }
        sqlx::Either::Right(_) => return Err("sqlx: the lock was busy".into()),
    }
    Ok(())
}

enum Via {
    Locker(pglock::Locker),
    Pool(deadpool_postgres::Pool),
}

async fn throughput(via: Via, tasks: usize, seconds: u64) -> f64 {
    let via = Arc::new(via);
    let count = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let (via, count) = (via.clone(), count.clone());
        set.spawn(async move {
            let name = format!("bench-locker-entity:{}:{t}", std::process::id());
            let lock = pglock::advisory(name.as_str()).timeout(Duration::from_secs(30));
            while Instant::now() < deadline {
                let guard = match &*via {
                    Via::Locker(l) => lock.acquire(l).await,
                    Via::Pool(p) => lock.acquire(p).await,
                };
                let Ok(guard) = guard else { continue };
                tokio::time::sleep(Duration::from_millis(1)).await;
                let _ = guard.release().await;
                count.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    set.join_all().await;
    count.load(Ordering::Relaxed) as f64 / seconds as f64
}

/// Runs `work` on a current-thread runtime of its own, in a thread of its own.
fn on_current_thread<F, Fut, T>(work: F) -> Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T>>,
    T: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime")
            .block_on(work())
    })
    .join()
    .expect("the current-thread run")
}

/// Mean µs per uncontended cycle of each variant, interleaved and in blocks.
struct SingleCycle {
    /// raw tokio-postgres, locker with `release().await`, locker with the guard
    /// dropped, sqlx: interleaved cycle by cycle.
    interleaved: [f64; 4],
    /// The same in blocks of 1,000 consecutive cycles.
    blocks: [f64; 4],
}

impl SingleCycle {
    fn print(&self, runtime: &str) {
        for (how, [raw, pg, dropped, sqlx]) in [
            ("interleaved, 2000 cycles", self.interleaved),
            ("blocks of 1000, 3 each", self.blocks),
        ] {
            println!(
                "target 3 ({runtime}, {how}): raw {raw:.1} µs, sqlx {sqlx:.1} µs; locker, guard \
                 dropped {dropped:.1} µs: ratio {:.2} to raw (target ≤ 0.9), {:.2} to sqlx \
                 (target < 1); locker with release().await {pg:.1} µs: {:.2} to raw, {:.2} to sqlx",
                dropped / raw,
                dropped / sqlx,
                pg / raw,
                pg / sqlx
            );
        }
    }
}

/// One uncontended acquire + release on one connection: raw tokio-postgres
/// prepared try + unlock, the locker (guard released or dropped), and sqlx's
/// `PgAdvisoryLock` (try + `release_now`) on a connection of its own.
async fn single_cycle(app: &str) -> Result<SingleCycle> {
    let pool = pglock_examples::pool(&format!("{app}-single"), 2);
    let one = pglock::Locker::new(&pool, 1).await?;
    let raw = connect().await?;
    let try_lock = raw.prepare("SELECT pg_try_advisory_lock($1)").await?;
    let unlock = raw.prepare("SELECT pg_advisory_unlock($1)").await?;
    let key = 0x5eed_0000_0000_0000_i64 ^ i64::from(std::process::id());
    let name = format!("bench-locker-single:{}", std::process::id());
    let lock = pglock::advisory(name.as_str());
    let mut sq =
        <sqlx::PgConnection as sqlx::Connection>::connect(&pglock_examples::database_url()).await?;
    let sqlx_lock =
        sqlx::postgres::PgAdvisoryLock::new(format!("bench-locker-sqlx:{}", std::process::id()));
    // One cycle of variant `v`.
    let mut cycle = async |v: usize| -> Result {
        match v {
            0 => {
                raw.query_one(&try_lock, &[&key]).await?;
                raw.query_one(&unlock, &[&key]).await?;
            }
            // `release().await` confirms the unlock (and reports a lost lock): two
            // waited round trips, as raw.
            1 => {
                lock.try_acquire(&one)
                    .await?
                    .expect("free")
                    .release()
                    .await?
            }
            // Dropping the guard queues the unlock without waiting for it, ahead
            // of the next statement on the connection: where the caller does not
            // need the answer, a cycle costs one waited round trip.
            2 => drop(lock.try_acquire(&one).await?.expect("free")),
            _ => sqlx_cycle(&sqlx_lock, &mut sq).await?,
        }
        Ok(())
    };
    for _ in 0..200 {
        for v in 0..4 {
            cycle(v).await?;
        }
    }
    let mut interleaved = [Duration::ZERO; 4];
    for _ in 0..2000 {
        for (v, total) in interleaved.iter_mut().enumerate() {
            let t = Instant::now();
            cycle(v).await?;
            *total += t.elapsed();
        }
    }
    let mut blocks = [Duration::ZERO; 4];
    for _ in 0..3 {
        for (v, total) in blocks.iter_mut().enumerate() {
            let t = Instant::now();
            for _ in 0..1000 {
                cycle(v).await?;
            }
            *total += t.elapsed();
        }
    }
    let us = |d: Duration, n: f64| d.as_secs_f64() / n * 1e6;
    Ok(SingleCycle {
        interleaved: interleaved.map(|d| us(d, 2000.0)),
        blocks: blocks.map(|d| us(d, 3000.0)),
    })
}

/// Handoffs/s of 16 tasks contending for one name, locker against raw.
struct Contention {
    locker: f64,
    raw: f64,
    /// Per round, locker / raw, sorted.
    ratios: Vec<f64>,
}

impl Contention {
    fn print(&self, runtime: &str, rounds: u64) {
        let r = &self.ratios;
        println!(
            "target 4 ({runtime}): 16 tasks on one name, {rounds} alternating rounds of 1 s: \
             locker {:.0} handoffs/s, raw {:.0}/s; ratio of totals {:.2}, median round {:.2} \
             (rounds {:.2}–{:.2}) (target ≥ 1)",
            self.locker,
            self.raw,
            self.locker / self.raw.max(1.0),
            r[r.len() / 2],
            r[0],
            r[r.len() - 1]
        );
    }
}

/// The locker (one shared connection, waits on a pool) and raw tokio-postgres
/// (16 connections, `pg_advisory_lock`) take turns in rounds of one second, the
/// order alternating round by round, so that the VM's changing wake-up latency
/// lands on both alike.
async fn contention(app: &str, rounds: u64) -> Result<Contention> {
    let name = format!("bench-locker-contended:{}", std::process::id());
    let pool = pglock_examples::pool(&format!("{app}-contend"), 20);
    let locker = pglock::Locker::new(&pool, 1).await?;
    let raw = RawContenders::new(0x0c0f_fee0_i64 ^ i64::from(std::process::id())).await?;
    let (mut ratios, mut pg_total, mut raw_total) = (Vec::new(), 0.0, 0.0);
    for round in 0..rounds {
        let (pg_rate, raw_rate) = match round % 2 {
            0 => {
                let pg = locker_contention(&locker, &name).await;
                (pg, raw.run().await)
            }
            _ => {
                let r = raw.run().await;
                (locker_contention(&locker, &name).await, r)
            }
        };
        pg_total += pg_rate;
        raw_total += raw_rate;
        ratios.push(pg_rate / raw_rate.max(1.0));
    }
    ratios.sort_by(f64::total_cmp);
    Ok(Contention {
        locker: pg_total / rounds as f64,
        raw: raw_total / rounds as f64,
        ratios,
    })
}

/// One second of 16 tasks locking and unlocking `name` through `locker`:
/// handoffs/s.
async fn locker_contention(locker: &pglock::Locker, name: &str) -> f64 {
    let handoffs = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (locker, name, handoffs) = (locker.clone(), name.to_string(), handoffs.clone());
        set.spawn(async move {
            while Instant::now() < deadline {
                let g = pglock::advisory(name.as_str())
                    .timeout(Duration::from_secs(5))
                    .acquire(&locker)
                    .await
                    .unwrap();
                g.release().await.unwrap();
                handoffs.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    set.join_all().await;
    handoffs.load(Ordering::Relaxed) as f64
}

/// Sixteen raw connections contending for one key with `pg_advisory_lock`.
struct RawContenders {
    clients: Vec<Arc<(Client, tokio_postgres::Statement, tokio_postgres::Statement)>>,
    key: i64,
}

impl RawContenders {
    async fn new(key: i64) -> Result<RawContenders> {
        let mut clients = Vec::new();
        for _ in 0..16 {
            let client = connect().await?;
            let lock = client.prepare("SELECT pg_advisory_lock($1)").await?;
            let unlock = client.prepare("SELECT pg_advisory_unlock($1)").await?;
            clients.push(Arc::new((client, lock, unlock)));
        }
        Ok(RawContenders { clients, key })
    }

    /// One second of contention: handoffs/s.
    async fn run(&self) -> f64 {
        let handoffs = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut set = tokio::task::JoinSet::new();
        for c in &self.clients {
            let (c, handoffs, key) = (c.clone(), handoffs.clone(), self.key);
            set.spawn(async move {
                let (client, lock, unlock) = &*c;
                while Instant::now() < deadline {
                    client.query_one(lock, &[&key]).await.unwrap();
                    client.query_one(unlock, &[&key]).await.unwrap();
                    handoffs.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        set.join_all().await;
        handoffs.load(Ordering::Relaxed) as f64
    }
}

async fn connect() -> Result<Client> {
    let (client, connection) =
        tokio_postgres::connect(&pglock_examples::database_url(), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}
