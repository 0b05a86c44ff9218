#[pglock::advisory(pool = url)]
async fn job(url: &str) -> Result<(), pglock::Error> {
    Ok(())
}

fn main() {}
