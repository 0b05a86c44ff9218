#[pglock::advisory("jobs.report", pool)]
async fn job() -> Result<(), pglock::Error> {
    Ok(())
}

fn main() {}
