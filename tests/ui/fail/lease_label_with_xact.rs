#[pglock::advisory("jobs.report", lease = "30s", xact = tx, label = "worker-1")]
async fn job(tx: &tokio_postgres::Transaction<'_>) -> Result<(), pglock::Error> {
    Ok(())
}

fn main() {}
