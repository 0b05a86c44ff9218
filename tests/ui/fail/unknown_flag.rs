#[pglock::advisory("jobs.report", exclusive)]
async fn job() -> Result<(), pglock::Error> {
    Ok(())
}

fn main() {}
