//! The forms added for the attribute as people really write it: `crate = …`,
//! `id = …`, `timeout = Option<Duration>`, destructured ids and transactions,
//! `xact = self.tx`, `client = …`, `on_lost = cancel`, and attribute order with
//! `#[tokio::test]` and `#[tracing::instrument]`.
#![deny(warnings)]

use std::time::Duration;

use deadpool_postgres::Pool;

/// pglock reached through another path (as a renamed dependency would be).
mod deps {
    pub use ::pglock as my_lock;
}

#[pglock::advisory("ui.renamed", crate = deps::my_lock, pool = pool)]
async fn renamed(pool: &Pool) -> Result<(), deps::my_lock::Error> {
    Ok(())
}

// A parameter called `shared` as the id, in shared mode.
#[pglock::advisory(id = shared, shared, pool = pool)]
async fn named_shared(pool: &Pool, shared: &str) -> Result<(), pglock::Error> {
    Ok(())
}

#[pglock::advisory("ui.optional-timeout", timeout = wait, pool = pool)]
async fn optional_timeout(pool: &Pool, wait: Option<Duration>) -> Result<(), pglock::Error> {
    Ok(())
}

pub struct Job {
    name: String,
    attempts: u32,
}

#[pglock::advisory(name.as_str(), pool = pool)]
async fn destructured(pool: &Pool, Job { name, attempts }: Job) -> Result<u32, pglock::Error> {
    Ok(attempts + name.len() as u32)
}

#[pglock::advisory(n, xact = tx)]
async fn destructured_tx(
    (tx, n): (&tokio_postgres::Transaction<'_>, i64),
) -> Result<u64, pglock::Error> {
    Ok(tx.execute("SELECT 1", &[]).await?)
}

pub struct InTx<'t> {
    tx: tokio_postgres::Transaction<'t>,
}

impl InTx<'_> {
    #[pglock::advisory("ui.self-tx", xact = self.tx)]
    async fn step(&self) -> Result<(), pglock::Error> {
        Ok(())
    }
}

#[pglock::advisory("ui.client", pool = pool, client = db)]
async fn with_client(pool: &Pool) -> Result<i32, pglock::Error> {
    Ok(db.query_one("SELECT 1", &[]).await?.get(0))
}

#[pglock::advisory("ui.cancel", pool = pool, on_lost = cancel, side_effect = Skip)]
async fn cancellable(pool: &Pool) -> Option<()> {
    let lock = pglock::held()?;
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(1)) => Some(()),
        _ = lock.lost() => None,
    }
}

// #[pglock::advisory] goes first: attributes expand top-down, and the one below
// must still see an `async fn`. The span of #[tracing::instrument] (below it)
// then covers the acquisition too; above it, only the body.
#[pglock::advisory("ui.order")]
#[tracing::instrument]
async fn instrumented() -> Result<(), pglock::Error> {
    Ok(())
}

#[tracing::instrument(err)]
#[pglock::advisory("ui.order-outer")]
async fn instrumented_outside() -> Result<(), pglock::Error> {
    Ok(())
}

#[pglock::advisory("ui.test-order", side_effect = Skip)]
#[tokio::test]
async fn a_test() {}

#[async_trait::async_trait]
pub trait Task {
    async fn run(&self, n: u32) -> Result<u32, pglock::Error>;
    async fn skip(self: Box<Self>) -> Option<()>;
}

pub struct Worker {
    pool: Pool,
    name: String,
}

#[async_trait::async_trait]
impl Task for Worker {
    #[pglock::advisory(self.name.as_str(), pool = &self.pool, client = db)]
    async fn run(&self, n: u32) -> Result<u32, pglock::Error> {
        db.execute("SELECT 1", &[]).await?;
        Ok(n)
    }

    #[pglock::advisory("ui.async-trait-skip", pool = self.pool.clone(), side_effect = Skip)]
    async fn skip(self: Box<Self>) -> Option<()> {
        drop(self);
        Some(())
    }
}

fn spawnable<F: std::future::Future + Send + 'static>(_: F) {}

fn main() {
    spawnable(instrumented());
    spawnable(instrumented_outside());
    fn borrowing<F: std::future::Future + Send>(_: F) {}
    let _ = |pool: &Pool, job: Job, tx: InTx<'static>| {
        borrowing(renamed(pool));
        borrowing(named_shared(pool, "x"));
        borrowing(optional_timeout(pool, None));
        borrowing(optional_timeout(pool, Some(Duration::from_secs(1))));
        borrowing(destructured(pool, job));
        borrowing(with_client(pool));
        borrowing(cancellable(pool));
        drop(tx.step());
    };
    let _ = destructured_tx;
}
