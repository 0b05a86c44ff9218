#[pglock::advisory(timeout = 5)]
async fn job() -> Result<(), pglock::Error> {
    Ok(())
}

fn main() {}
