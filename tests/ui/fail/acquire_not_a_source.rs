// A plain client is not a source: the compiler names the sources and
// `acquire_on` for a connection you hold.
async fn demo(client: &tokio_postgres::Client) {
    let _ = pglock::advisory("x").acquire(client).await;
}

fn main() {}
