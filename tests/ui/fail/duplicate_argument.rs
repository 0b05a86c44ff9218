#[pglock::advisory(timeout = "1s", shared, timeout = "2s")]
async fn job() -> Result<(), pglock::Error> {
    Ok(())
}

fn main() {}
