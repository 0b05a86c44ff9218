//! What a lock cycle's statements cost on one connection, whatever library sends
//! them: the measurement behind the `Locker`'s one-statement handoff (see
//! BENCHMARKS.md, "The multiplexing source").
//!
//! In blocks of 2,000 cycles, three rounds, on the default multi-thread runtime:
//!
//! - raw tokio-postgres: try + unlock, each awaited (two round trips);
//! - raw: `SELECT 1` (one round trip, one statement);
//! - raw: the previous unlock queued unawaited, then the next try awaited (one
//!   round trip, two statements: the server flushes after each);
//! - raw: unlock and try in one statement (one round trip, one flush);
//! - sqlx: `PgAdvisoryLock` try + `release_now`, and `SELECT 1`.
//!
//! `cargo run --release -p pglock-examples --example bench_statements`

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Waker};
use std::time::Instant;

use tokio_postgres::types::ToSql;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const CYCLES: u32 = 2000;

#[tokio::main]
async fn main() -> Result {
    let url = pglock_examples::database_url();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let try_lock = client
        .prepare("SELECT pg_try_advisory_lock($1::int8), pg_backend_pid()")
        .await?;
    let unlock = client
        .prepare("SELECT pg_advisory_unlock($1::int8), pg_backend_pid()")
        .await?;
    let both = client
        .prepare(
            "SELECT pg_advisory_unlock($1::int8), pg_backend_pid(), pg_try_advisory_lock($1::int8)",
        )
        .await?;
    let one = client.prepare("SELECT 1").await?;
    let mut sq = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await?;
    let sqlx_lock = sqlx::postgres::PgAdvisoryLock::new(format!(
        "bench-statements-sqlx:{}",
        std::process::id()
    ));
    let key = 0x57a7_0000_0000_0000_i64 ^ i64::from(std::process::id());
    let params: [&(dyn ToSql + Sync); 1] = [&key];
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at start: {}", load.trim());
    println!("µs per cycle, blocks of {CYCLES}:");
    for round in 1..=3 {
        let t = Instant::now();
        for _ in 0..CYCLES {
            client.query_one(&try_lock, &params).await?;
            client.query_one(&unlock, &params).await?;
        }
        let awaited = per_cycle(t);
        let t = Instant::now();
        for _ in 0..CYCLES {
            client.query_one(&one, &[]).await?;
        }
        let select_one = per_cycle(t);
        client.query_one(&try_lock, &params).await?;
        let t = Instant::now();
        for _ in 0..CYCLES {
            // Queued on its first poll, its answer never awaited.
            let mut queued = pin!(client.query_one(&unlock, &params));
            let _ = queued
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()));
            client.query_one(&try_lock, &params).await?;
        }
        let pipelined = per_cycle(t);
        let t = Instant::now();
        for _ in 0..CYCLES {
            client.query_one(&both, &params).await?;
        }
        let one_statement = per_cycle(t);
        client.query_one(&unlock, &params).await?;
        let t = Instant::now();
        for _ in 0..CYCLES {
            match sqlx_lock.try_acquire(&mut sq).await? {
                sqlx::Either::Left(guard) => {
                    guard.release_now().await?;
                }
                sqlx::Either::Right(_) => return Err("sqlx: the lock was busy".into()),
            }
        }
        let sqlx_cycle = per_cycle(t);
        let t = Instant::now();
        for _ in 0..CYCLES {
            sqlx::query("SELECT 1").execute(&mut sq).await?;
        }
        let sqlx_one = per_cycle(t);
        println!(
            "round {round}: raw try + unlock awaited {awaited:.1}; raw SELECT 1 {select_one:.1}; \
             raw unlock queued + try {pipelined:.1}; raw unlock and try in one statement \
             {one_statement:.1}; sqlx try + release_now {sqlx_cycle:.1}; sqlx SELECT 1 {sqlx_one:.1}"
        );
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at end: {}", load.trim());
    Ok(())
}

fn per_cycle(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1e6 / f64::from(CYCLES)
}
