#[pglock::advisory("job", lease = "2ms")]
async fn job() -> Result<(), pglock::Error> {
    Ok(())
}

fn main() {}
