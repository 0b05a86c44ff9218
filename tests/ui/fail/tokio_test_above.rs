#[tokio::test]
#[pglock::advisory("job")]
async fn job() -> Result<(), pglock::Error> {
    Ok(())
}
fn main() {}
