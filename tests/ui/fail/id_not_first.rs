#[pglock::advisory(timeout = "1s", "jobs.report")]
async fn job() -> Result<(), pglock::Error> {
    Ok(())
}

fn main() {}
