//! The futures of attributed functions are `Send` when their bodies are, so they
//! can be spawned on a multi-thread runtime.

use deadpool_postgres::Pool;

fn spawnable<F: std::future::Future + Send + 'static>(_: F) {}
fn spawnable_borrowing<F: std::future::Future + Send>(_: F) {}

#[pglock::advisory]
async fn job() -> Result<(), pglock::Error> {
    tokio::task::yield_now().await;
    Ok(())
}

#[pglock::advisory(side_effect = Skip, pool = pool)]
async fn with_pool(pool: &Pool, name: String) -> Option<String> {
    tokio::task::yield_now().await;
    Some(name)
}

#[pglock::advisory(fencing, lease = "30s", label = label, pool = pool)]
async fn production(pool: &Pool, label: String) -> Result<Option<i64>, pglock::Error> {
    let token = pglock::held().and_then(|lock| lock.fencing_token());
    tokio::task::yield_now().await;
    Ok(token)
}

#[pglock::advisory(xact = tx)]
async fn in_tx(tx: &tokio_postgres::Transaction<'_>) -> Result<u64, pglock::Error> {
    Ok(1)
}

struct Worker {
    pool: Pool,
}

impl Worker {
    #[pglock::advisory("ui::Ticker::tick", pool = &self.pool)]
    async fn tick(&mut self) -> Result<(), pglock::Error> {
        tokio::task::yield_now().await;
        Ok(())
    }
}

fn check(pool: Pool, worker: &mut Worker, tx: &tokio_postgres::Transaction<'_>) {
    spawnable(job());
    let other = pool.clone();
    spawnable(async move { with_pool(&pool, String::new()).await });
    spawnable(async move { production(&other, String::new()).await });
    spawnable_borrowing(worker.tick());
    spawnable_borrowing(in_tx(tx));
}

fn main() {
    let _ = check;
}
