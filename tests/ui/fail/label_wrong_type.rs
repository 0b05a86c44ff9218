#[pglock::advisory(label = worker)]
async fn job(worker: u32) -> Result<(), pglock::Error> {
    Ok(())
}

fn main() {}
