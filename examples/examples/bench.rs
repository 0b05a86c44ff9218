//! Benchmark: pglock's acquire + release cycles against raw `tokio-postgres` prepared
//! statements doing the same lock SQL on the same connection, in one interleaved run.
//!
//! Run it with `cargo run --release -p pglock-examples --example bench [-- CYCLES [ROUNDS]]`
//! (or set `BENCH_CYCLES`, `BENCH_ROUNDS`, `BENCH_CONTENTION_MS`, and `BENCH_ONLY` to pick
//! scenarios: `try,blocking,shared,xact,pooled,contention`), against PostgreSQL at
//! `DATABASE_URL` or at `postgres://postgres:postgres@localhost:5432/postgres`.
//!
//! Each scenario runs one warm-up round, then `ROUNDS` (default 25) measured rounds.
//! In a round every variant runs `CYCLES` (default 500) cycles, interleaved cycle by
//! cycle in a rotating order, each cycle timed on its own, so that drift and noise from
//! other work on the machine hit every variant alike; the contention scenario runs its
//! variants one after the other (16 tasks for `BENCH_CONTENTION_MS`, default 500),
//! starting with a different one each round. The table reports medians over rounds
//! and, for each variant compared with a raw baseline, the median and range of its
//! per-round time ratio (above 1: slower than raw). Round trips per cycle are counted,
//! not assumed: before timing, each scenario runs once more through a loopback relay
//! that counts how often a client speaks after its server answered.
//! There are no assertions on speed; see BENCHMARKS.md for the figures.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{ClientWrapper, Manager, ManagerConfig, Pool, RecyclingMethod};
use futures_util::future::try_join_all;
use pglock::{Advisory, InTransaction, Session, Source, XactAdvisory};
use tokio::sync::Mutex;
use tokio::task::JoinSet;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Config, NoTls, Row, Statement};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Result<T = ()> = std::result::Result<T, BoxError>;

/// One acquire + release cycle, ready to run again and again.
type Cycle = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result> + Send>> + Send + Sync>;

// The raw side's SQL: what a hand-written advisory lock sends.
const TRY_LOCK: &str = "SELECT pg_try_advisory_lock($1)";
const LOCK: &str = "SELECT pg_advisory_lock($1)";
const UNLOCK: &str = "SELECT pg_advisory_unlock($1)";
const LOCK_SHARED: &str = "SELECT pg_advisory_lock_shared($1)";
const UNLOCK_SHARED: &str = "SELECT pg_advisory_unlock_shared($1)";
const XACT_LOCK: &str = "SELECT pg_advisory_xact_lock($1)";
const TRY_XACT_LOCK: &str = "SELECT pg_try_advisory_xact_lock($1)";
const SET_TIMEOUT: &str = "SET lock_timeout = '5s'";
const RESET_TIMEOUT: &str = "RESET lock_timeout";
const SAVEPOINT: &str = "SAVEPOINT bench";
const RELEASE_SAVEPOINT: &str = "RELEASE SAVEPOINT bench";

/// pglock's one-round-trip wait under a statement-local `lock_timeout` (`$2`), as
/// its `sql.rs` builds it: the raw side sends the same text to tell the server's
/// share of a cycle from pglock's own.
macro_rules! with_lock_timeout {
    ($lock:literal) => {
        concat!(
            "SELECT set_config('lock_timeout', s.saved, true) FROM (SELECT \
             current_setting('lock_timeout') AS saved, \
             set_config('lock_timeout', $2::text, true) AS applied, ",
            $lock,
            " AS locked) AS s"
        )
    };
}
const WAIT_LOCK: &str = with_lock_timeout!("pg_advisory_lock($1::int8)");
const WAIT_XACT_LOCK: &str = with_lock_timeout!("pg_advisory_xact_lock($1::int8)");
/// The `lock_timeout` the raw side gives pglock's statement (pglock's value for 5 s).
const LOCK_TIMEOUT_SETTING: &str = "5000ms";

/// The finite timeout of the timeout variants: long enough never to expire here.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Tasks (each with its own connection) contending for one lock.
const CONTENDERS: usize = 16;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result {
    let settings = Settings::from_args_and_env()?;
    pglock_examples::check_server(&pglock_examples::pool("pglock-bench", 1)).await;
    let env = Env::direct()?;
    let relay = Relay::start(&env.config).await?;
    eprintln!(
        "pglock bench: {} cycles x {} rounds per variant (+1 warm-up round), contention {:?} \
         per round; round trips {}",
        settings.cycles,
        settings.rounds,
        settings.contention,
        if relay.is_some() {
            "counted through a loopback relay"
        } else {
            "not counted (not TCP)"
        },
    );
    println!(
        "| scenario | variant | round trips | mean µs | median µs | cycles/s \
         | ratio of means | range over rounds | ratio of medians |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for scenario in Scenario::ALL.into_iter().filter(|s| settings.runs(*s)) {
        let round_trips = match &relay {
            Some(relay) => relay.count(scenario).await?,
            None => Vec::new(),
        };
        let variants = scenario.variants(&env).await?;
        let rounds = measure(scenario, &variants, &settings).await?;
        for (i, variant) in variants.iter().enumerate() {
            let ratio = variant.baseline.map(|b| ratios(&rounds[i], &rounds[b]));
            print_row(
                scenario,
                variant,
                round_trips.get(i).copied(),
                &rounds[i],
                ratio,
            );
        }
    }
    Ok(())
}

/// How much work one round does.
struct Settings {
    cycles: usize,
    rounds: usize,
    contention: Duration,
    /// `BENCH_ONLY`: the scenarios to run (e.g. `try,contention`); all when unset.
    only: Option<String>,
}

impl Settings {
    /// `bench [CYCLES [ROUNDS]]`, else `BENCH_CYCLES` / `BENCH_ROUNDS`, else defaults.
    fn from_args_and_env() -> Result<Settings> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let setting = |arg: Option<&String>, var: &str, default: u64| -> Result<u64> {
            match arg.cloned().or_else(|| std::env::var(var).ok()) {
                Some(value) => Ok(value.parse().map_err(|e| format!("{var} {value:?}: {e}"))?),
                None => Ok(default),
            }
        };
        Ok(Settings {
            cycles: setting(args.first(), "BENCH_CYCLES", 500)?.max(1) as usize,
            rounds: setting(args.get(1), "BENCH_ROUNDS", 25)?.max(1) as usize,
            contention: Duration::from_millis(setting(None, "BENCH_CONTENTION_MS", 500)?),
            only: std::env::var("BENCH_ONLY").ok().map(|s| s.to_lowercase()),
        })
    }

    fn runs(&self, scenario: Scenario) -> bool {
        let name = format!("{scenario:?}").to_lowercase();
        self.only
            .as_ref()
            .is_none_or(|only| only.split(',').any(|s| s.trim() == name))
    }

    fn budget(&self) -> Budget {
        Budget {
            cycles: self.cycles,
            contention: self.contention,
        }
    }

    fn warm_up(&self) -> Budget {
        Budget {
            cycles: (self.cycles / 4).max(100),
            contention: self.contention / 4,
        }
    }
}

#[derive(Clone, Copy)]
struct Budget {
    cycles: usize,
    contention: Duration,
}

/// The groups of variants timed against each other.
#[derive(Clone, Copy, Debug)]
enum Scenario {
    Try,
    Blocking,
    Shared,
    Xact,
    Pooled,
    Contention,
}

impl Scenario {
    const ALL: [Scenario; 6] = [
        Scenario::Try,
        Scenario::Blocking,
        Scenario::Shared,
        Scenario::Xact,
        Scenario::Pooled,
        Scenario::Contention,
    ];

    fn title(self) -> &'static str {
        match self {
            Scenario::Try => "try (zero timeout), Session",
            Scenario::Blocking => "blocking / finite timeout, Session",
            Scenario::Shared => "shared, Session",
            Scenario::Xact => "transaction-level: BEGIN; lock; COMMIT",
            Scenario::Pooled => "pooled (deadpool, size 1)",
            Scenario::Contention => "16 tasks contend for one lock",
        }
    }

    async fn variants(self, env: &Env) -> Result<Vec<Variant>> {
        let name = format!("pglock-bench.{}.{self:?}", std::process::id());
        let key = pglock::key_for(&name)?;
        let lock = pglock::advisory(name.as_str());
        match self {
            Scenario::Try => {
                let raw = ("raw try_lock + unlock", &[TRY_LOCK, UNLOCK][..]);
                let pglock = ("pglock try_acquire + release", lock, Take::Try);
                session_pair(env, key, raw, pglock).await
            }
            Scenario::Blocking => blocking_variants(env, lock, key).await,
            Scenario::Shared => {
                let raw = (
                    "raw lock_shared + unlock_shared",
                    &[LOCK_SHARED, UNLOCK_SHARED][..],
                );
                let pglock = ("pglock shared acquire + release", lock.shared(), Take::Wait);
                session_pair(env, key, raw, pglock).await
            }
            Scenario::Xact => xact_variants(env, lock.xact(), key).await,
            Scenario::Pooled => pooled_variants(env, lock, key),
            Scenario::Contention => contention_variants(env, lock, key).await,
        }
    }
}

// ---------------------------------------------------------------------------------
// The scenarios. Variant 0 of each is the raw baseline the others are compared with.

/// A raw baseline and one pglock variant, on the same new session.
async fn session_pair(
    env: &Env,
    key: i64,
    (raw_label, sqls): (&'static str, &[&str]),
    (pglock_label, lock, take): (&'static str, Advisory, Take),
) -> Result<Vec<Variant>> {
    let session = env.session().await?;
    Ok(vec![
        Variant::baseline(raw_label, raw(&session, sqls, key).await?),
        Variant::against(0, pglock_label, pglock(&session, lock, take)),
    ])
}

async fn blocking_variants(env: &Env, lock: Advisory, key: i64) -> Result<Vec<Variant>> {
    let session = env.session().await?;
    let set_lock_reset = [SET_TIMEOUT, LOCK, RESET_TIMEOUT, UNLOCK];
    Ok(vec![
        Variant::baseline(
            "raw lock + unlock",
            raw(&session, &[LOCK, UNLOCK], key).await?,
        ),
        Variant::against(
            0,
            "pglock acquire (no timeout) + release",
            pglock(&session, lock.clone(), Take::Wait),
        ),
        Variant::against(
            0,
            "pglock acquire (timeout 5 s) + release",
            pglock(&session, lock.timeout(TIMEOUT), Take::Wait),
        ),
        Variant::against(
            0,
            "raw SET lock_timeout; lock; RESET; unlock",
            raw(&session, &set_lock_reset, key).await?,
        ),
        Variant::against(
            0,
            "raw pglock's SQL (timeout 5 s) + unlock",
            raw(&session, &[WAIT_LOCK, UNLOCK], key).await?,
        ),
    ])
}

async fn xact_variants(env: &Env, lock: XactAdvisory, key: i64) -> Result<Vec<Variant>> {
    let conn = Arc::new(Mutex::new(env.connection().await?));
    let timed = lock.clone().timeout(TIMEOUT);
    Ok(vec![
        Variant::baseline("raw xact_lock", raw_xact(&conn, &[XACT_LOCK], key)),
        Variant::against(
            0,
            "pglock acquire_in (deadpool tx)",
            pglock_xact(&conn, lock.clone(), Take::Wait, Tx::Deadpool),
        ),
        Variant::against(
            0,
            "pglock acquire_in (tokio-postgres tx)",
            pglock_xact(&conn, lock.clone(), Take::Wait, Tx::TokioPostgres),
        ),
        Variant::against(
            0,
            "pglock acquire_in (timeout 5 s, deadpool tx)",
            pglock_xact(&conn, timed, Take::Wait, Tx::Deadpool),
        ),
        Variant::against(
            0,
            "raw pglock's SQL (timeout 5 s): SAVEPOINT, lock, RELEASE pipelined",
            raw_xact(&conn, &[SAVEPOINT, WAIT_XACT_LOCK, RELEASE_SAVEPOINT], key),
        ),
        Variant::baseline("raw try_xact_lock", raw_xact(&conn, &[TRY_XACT_LOCK], key)),
        Variant::against(
            5,
            "pglock try_acquire_in (deadpool tx)",
            pglock_xact(&conn, lock, Take::Try, Tx::Deadpool),
        ),
    ])
}

fn pooled_variants(env: &Env, lock: Advisory, key: i64) -> Result<Vec<Variant>> {
    let pool = env.pool(1)?;
    Ok(vec![
        Variant::baseline(
            "raw get + lock + unlock + drop",
            raw_pooled(&pool, [LOCK, UNLOCK], key),
        ),
        Variant::against(
            0,
            "pglock acquire(&pool) + release",
            pglock(&pool, lock, Take::Wait),
        ),
    ])
}

async fn contention_variants(env: &Env, lock: Advisory, key: i64) -> Result<Vec<Variant>> {
    let (mut raw_tasks, mut pglock_tasks, mut same_sql_tasks) =
        (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..CONTENDERS {
        let session = env.session().await?;
        raw_tasks.push(raw(&session, &[LOCK, UNLOCK], key).await?);
        pglock_tasks.push(pglock(&session, lock.clone(), Take::Wait));
        same_sql_tasks.push(raw(&session, &[WAIT_LOCK, UNLOCK], key).await?);
    }
    Ok(vec![
        Variant::contended_baseline("raw lock + unlock, 16 tasks (per handoff)", raw_tasks),
        Variant::contended_against(
            0,
            "pglock acquire + release, 16 tasks (per handoff)",
            pglock_tasks,
        ),
        Variant::contended_against(
            0,
            "raw pglock's SQL + unlock, 16 tasks (per handoff)",
            same_sql_tasks,
        ),
    ])
}

// ---------------------------------------------------------------------------------
// The cycles.

/// One try, or wait as the lock's timeout says.
#[derive(Clone, Copy)]
enum Take {
    Try,
    Wait,
}

/// Raw: the statements, prepared once on the session's connection, run in order.
async fn raw(session: &Session, sqls: &[&str], key: i64) -> Result<Cycle> {
    let mut statements = Vec::new();
    for sql in sqls {
        statements.push(session.client().prepare(sql).await?);
    }
    let (session, statements) = (session.clone(), Arc::new(statements));
    Ok(Arc::new(move || {
        let (session, statements) = (session.clone(), statements.clone());
        Box::pin(async move {
            for statement in statements.iter() {
                run_step(session.client(), statement, key).await?;
            }
            Ok(())
        })
    }))
}

/// pglock: acquire (or try) on `source`, then release.
fn pglock<S: Source + Clone + Send + 'static>(source: &S, lock: Advisory, take: Take) -> Cycle {
    let source = source.clone();
    Arc::new(move || {
        let (source, lock) = (source.clone(), lock.clone());
        Box::pin(async move {
            let guard = match take {
                Take::Try => lock
                    .try_acquire(&source)
                    .await?
                    .ok_or("pglock: lock busy")?,
                Take::Wait => lock.acquire(&source).await?,
            };
            guard.release().await?;
            Ok(())
        })
    })
}

/// Raw, pooled: check a connection out, run the statements from its statement
/// cache, give it back.
fn raw_pooled(pool: &Pool, sqls: [&'static str; 2], key: i64) -> Cycle {
    let pool = pool.clone();
    Arc::new(move || {
        let pool = pool.clone();
        Box::pin(async move {
            let conn = pool.get().await?;
            for sql in sqls {
                let statement = conn.prepare_cached(sql).await?;
                run_step(&conn, &statement, key).await?;
            }
            Ok(())
        })
    })
}

/// The kinds of transaction pglock takes transaction-level locks in.
#[derive(Clone, Copy)]
enum Tx {
    /// `deadpool_postgres::Transaction`: pglock uses its statement cache.
    Deadpool,
    /// `tokio_postgres::Transaction`: no cache, so pglock sends unnamed statements.
    TokioPostgres,
}

/// Raw: BEGIN; the statements (from the statement cache), pipelined in one round
/// trip; COMMIT.
fn raw_xact(conn: &Arc<Mutex<ClientWrapper>>, sqls: &'static [&'static str], key: i64) -> Cycle {
    let conn = conn.clone();
    Arc::new(move || {
        let conn = conn.clone();
        Box::pin(async move {
            let mut conn = conn.lock().await;
            let tx = conn.transaction().await?;
            let mut statements = Vec::with_capacity(sqls.len());
            for sql in sqls {
                statements.push(tx.prepare_cached(sql).await?);
            }
            try_join_all(statements.iter().map(|s| run_step(tx.client(), s, key))).await?;
            Ok(tx.commit().await?)
        })
    })
}

/// pglock: BEGIN; `acquire_in` (or `try_acquire_in`); COMMIT.
fn pglock_xact(conn: &Arc<Mutex<ClientWrapper>>, lock: XactAdvisory, take: Take, tx: Tx) -> Cycle {
    let conn = conn.clone();
    Arc::new(move || {
        let (conn, lock) = (conn.clone(), lock.clone());
        Box::pin(async move {
            let mut conn = conn.lock().await;
            match tx {
                Tx::Deadpool => {
                    let tx = conn.transaction().await?;
                    take_in(&tx, &lock, take).await?;
                    Ok(tx.commit().await?)
                }
                Tx::TokioPostgres => {
                    let client: &mut Client = &mut conn;
                    let tx = client.transaction().await?;
                    take_in(&tx, &lock, take).await?;
                    Ok(tx.commit().await?)
                }
            }
        })
    })
}

async fn take_in<T: InTransaction>(tx: &T, lock: &XactAdvisory, take: Take) -> Result {
    match take {
        Take::Wait => lock.acquire_in(tx).await?,
        Take::Try if lock.try_acquire_in(tx).await? => {}
        Take::Try => return Err("pglock: transaction lock busy".into()),
    }
    Ok(())
}

/// Runs one prepared statement with as many of (key, `lock_timeout`) as it takes.
/// A `false` answer (not granted, or not held) is an error, as it is for pglock.
async fn run_step(client: &Client, statement: &Statement, key: i64) -> Result {
    let params: [&(dyn ToSql + Sync); 2] = [&key, &LOCK_TIMEOUT_SETTING];
    let rows = client
        .query(statement, &params[..statement.params().len()])
        .await?;
    if answered_false(&rows) {
        return Err(format!("{statement:?} answered false").into());
    }
    Ok(())
}

fn answered_false(rows: &[Row]) -> bool {
    rows.first()
        .is_some_and(|row| row.columns()[0].type_() == &Type::BOOL && !row.get::<_, bool>(0))
}

// ---------------------------------------------------------------------------------
// Measuring.

/// A benchmark variant: a cycle timed alone, or cycles run by contending tasks.
struct Variant {
    label: &'static str,
    /// The variant whose time in the same round this one's is divided by.
    baseline: Option<usize>,
    work: Work,
}

enum Work {
    Timed(Cycle),
    Contended(Vec<Cycle>),
}

impl Variant {
    fn baseline(label: &'static str, cycle: Cycle) -> Variant {
        Variant {
            label,
            baseline: None,
            work: Work::Timed(cycle),
        }
    }

    fn against(baseline: usize, label: &'static str, cycle: Cycle) -> Variant {
        Variant {
            label,
            baseline: Some(baseline),
            work: Work::Timed(cycle),
        }
    }

    fn contended_baseline(label: &'static str, tasks: Vec<Cycle>) -> Variant {
        Variant {
            label,
            baseline: None,
            work: Work::Contended(tasks),
        }
    }

    fn contended_against(baseline: usize, label: &'static str, tasks: Vec<Cycle>) -> Variant {
        Variant {
            label,
            baseline: Some(baseline),
            work: Work::Contended(tasks),
        }
    }
}

/// What one round of one variant measured.
#[derive(Clone, Copy)]
struct Round {
    cycles: u64,
    elapsed: Duration,
    /// The median cycle (not kept for contention, where a cycle includes waiting).
    median: Option<Duration>,
}

impl Round {
    fn mean_us(&self) -> f64 {
        self.elapsed.as_secs_f64() * 1e6 / self.cycles as f64
    }
}

impl Round {
    fn from_laps(mut laps: Vec<Duration>) -> Round {
        laps.sort_unstable();
        Round {
            cycles: laps.len() as u64,
            elapsed: laps.iter().sum(),
            median: Some(laps[laps.len() / 2]),
        }
    }
}

impl Work {
    /// One round of this variant alone.
    async fn round(&self, budget: Budget) -> Result<Round> {
        match self {
            Work::Timed(cycle) => Ok(time_interleaved(&[cycle], budget.cycles).await?.remove(0)),
            Work::Contended(tasks) => contend(tasks, budget.contention).await,
        }
    }
}

/// The timing helper: runs each cycle `n` times, interleaved (one cycle of each in
/// turn, the order rotated every time), each cycle on its own clock.
async fn time_interleaved(cycles: &[&Cycle], n: usize) -> Result<Vec<Round>> {
    let mut laps = vec![Vec::with_capacity(n); cycles.len()];
    for i in 0..n {
        for j in 0..cycles.len() {
            let v = (i + j) % cycles.len();
            let start = Instant::now();
            cycles[v]().await?;
            laps[v].push(start.elapsed());
        }
    }
    Ok(laps.into_iter().map(Round::from_laps).collect())
}

/// Runs each task's cycle in a loop on its own tokio task until `duration` has
/// passed; every cycle is one handoff of the lock.
async fn contend(tasks: &[Cycle], duration: Duration) -> Result<Round> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut running = JoinSet::new();
    for cycle in tasks {
        let cycle = cycle.clone();
        running.spawn(async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                cycle().await?;
                done += 1;
            }
            Ok::<_, BoxError>(done)
        });
    }
    let mut cycles = 0;
    while let Some(done) = running.join_next().await {
        cycles += done??;
    }
    Ok(Round {
        cycles,
        elapsed: start.elapsed(),
        median: None,
    })
}

/// One round of every variant: cycle by cycle interleaved or, for contention, one
/// variant after the other, starting with variant `r`.
async fn round(variants: &[Variant], budget: Budget, r: usize) -> Result<Vec<Round>> {
    let timed: Option<Vec<&Cycle>> = variants
        .iter()
        .map(|v| match &v.work {
            Work::Timed(cycle) => Some(cycle),
            Work::Contended(_) => None,
        })
        .collect();
    if let Some(cycles) = timed {
        return time_interleaved(&cycles, budget.cycles).await;
    }
    let mut rounds = vec![None; variants.len()];
    for j in 0..variants.len() {
        let v = (r + j) % variants.len();
        rounds[v] = Some(variants[v].work.round(budget).await?);
    }
    Ok(rounds.into_iter().flatten().collect())
}

/// One warm-up round, then the measured rounds; returns each variant's rounds.
async fn measure(
    scenario: Scenario,
    variants: &[Variant],
    settings: &Settings,
) -> Result<Vec<Vec<Round>>> {
    round(variants, settings.warm_up(), 0).await?;
    let mut rounds = vec![Vec::new(); variants.len()];
    for r in 0..settings.rounds {
        eprint!(
            "\r{}: round {}/{}   ",
            scenario.title(),
            r + 1,
            settings.rounds
        );
        for (v, measured) in round(variants, settings.budget(), r)
            .await?
            .into_iter()
            .enumerate()
        {
            rounds[v].push(measured);
        }
    }
    eprintln!();
    Ok(rounds)
}

/// The per-round time ratios against the baseline (rounds are paired, so drift
/// cancels): median, minimum and maximum of the ratios of means, and the median of the
/// ratios of median cycles (robust to the odd slow cycle; none for contention).
struct Ratios {
    mean: f64,
    min: f64,
    max: f64,
    of_medians: Option<f64>,
}

fn ratios(rounds: &[Round], baseline: &[Round]) -> Ratios {
    let of_means: Vec<f64> = rounds
        .iter()
        .zip(baseline)
        .map(|(r, b)| r.mean_us() / b.mean_us())
        .collect();
    let of_medians: Option<Vec<f64>> = rounds
        .iter()
        .zip(baseline)
        .map(|(r, b)| Some(r.median?.as_secs_f64() / b.median?.as_secs_f64()))
        .collect();
    Ratios {
        min: of_means.iter().copied().fold(f64::INFINITY, f64::min),
        max: of_means.iter().copied().fold(0.0, f64::max),
        mean: median(of_means),
        of_medians: of_medians.map(median),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n % 2 {
        1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn print_row(
    scenario: Scenario,
    variant: &Variant,
    round_trips: Option<f64>,
    rounds: &[Round],
    ratio: Option<Ratios>,
) {
    let mean = median(rounds.iter().map(Round::mean_us).collect());
    let cycle_median = rounds
        .iter()
        .map(|r| Some(r.median?.as_secs_f64() * 1e6))
        .collect::<Option<Vec<_>>>()
        .map(median);
    let round_trips = round_trips.map_or("?".to_string(), |n| format!("{n:.2}"));
    let ratio = match ratio {
        Some(r) => format!(
            "**{:.3}** | {:.3}–{:.3} | {}",
            r.mean,
            r.min,
            r.max,
            dash_or(r.of_medians, |x| format!("{x:.3}"))
        ),
        None => "baseline | | ".to_string(),
    };
    println!(
        "| {} | {} | {round_trips} | {mean:.1} | {} | {:.0} | {ratio} |",
        scenario.title(),
        variant.label,
        dash_or(cycle_median, |x| format!("{x:.1}")),
        1e6 / mean,
    );
}

fn dash_or(value: Option<f64>, show: impl Fn(f64) -> String) -> String {
    value.map_or("–".to_string(), show)
}

// ---------------------------------------------------------------------------------
// Connections.

/// Where the benchmark connects: the server itself, or the counting relay.
struct Env {
    config: Config,
}

impl Env {
    fn direct() -> Result<Env> {
        let mut config: Config = pglock_examples::database_url().parse()?;
        config.application_name("pglock-bench");
        Ok(Env { config })
    }

    /// A connection driven on its own task, owned by a pglock session (the raw
    /// variants run on the same connection through `Session::client`).
    async fn session(&self) -> Result<Session> {
        let (client, connection) = self.config.connect(NoTls).await?;
        tokio::spawn(connection);
        Ok(Session::new(client))
    }

    fn pool(&self, size: usize) -> Result<Pool> {
        let recycling = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = Manager::from_config(self.config.clone(), NoTls, recycling);
        Ok(Pool::builder(manager).max_size(size).build()?)
    }

    /// One connection with deadpool's statement cache, out of any pool.
    async fn connection(&self) -> Result<ClientWrapper> {
        let conn = self.pool(1)?.get().await?;
        Ok(deadpool_postgres::Object::take(conn))
    }
}

/// The harness's counting relay (`pglock_tests::Relay`) in front of the server,
/// with an [`Env`] whose connections go through it. Used to count, never to time.
struct Relay {
    env: Env,
    relay: pglock_tests::Relay,
}

impl Relay {
    /// `None` when the server is not reached over TCP.
    async fn start(server: &Config) -> Result<Option<Relay>> {
        let Some(relay) = pglock_tests::Relay::start(server).await else {
            return Ok(None);
        };
        let mut config = relay.config().clone();
        config.application_name("pglock-bench");
        Ok(Some(Relay {
            env: Env { config },
            relay,
        }))
    }

    /// Round trips per cycle of each of the scenario's variants, on their own
    /// connections through the relay, after a warm-up.
    async fn count(&self, scenario: Scenario) -> Result<Vec<f64>> {
        let budget = Budget {
            cycles: 200,
            contention: Duration::from_millis(300),
        };
        let mut per_cycle = Vec::new();
        for variant in scenario.variants(&self.env).await? {
            variant.work.round(budget).await?;
            let before = self.relay.round_trips();
            let round = variant.work.round(budget).await?;
            let trips = self.relay.round_trips() - before;
            per_cycle.push(trips as f64 / round.cycles as f64);
        }
        Ok(per_cycle)
    }
}
