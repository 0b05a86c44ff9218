/// An error type with no `From<pglock::Error>`.
#[derive(Debug)]
pub struct JobError;

#[pglock::advisory]
async fn job() -> Result<(), JobError> {
    Ok(())
}

fn main() {}
