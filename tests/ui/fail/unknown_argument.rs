#[pglock::advisory(timout = "2s")]
async fn job() -> Result<(), pglock::Error> {
    Ok(())
}

fn main() {}
