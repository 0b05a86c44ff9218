#[pglock::advisory(xact = tx)]
async fn job(transaction: &tokio_postgres::Transaction<'_>) -> Result<(), pglock::Error> {
    Ok(())
}

fn main() {}
