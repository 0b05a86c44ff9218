#[pglock::advisory(xact = tx, fencing)]
async fn job(tx: &tokio_postgres::Transaction<'_>) -> Result<(), pglock::Error> {
    Ok(())
}

fn main() {}
