#[pglock::advisory(timeout = "1000h")]
async fn job() -> Result<(), pglock::Error> {
    Ok(())
}

fn main() {}
