#[pglock::advisory(xact = client)]
async fn job(client: &tokio_postgres::Client) -> Result<(), pglock::Error> {
    Ok(())
}

fn main() {}
