// The output is kept across the release's `.await`, so a function whose
// return type is not `Send` has a future that is not `Send` either: return
// `Box<dyn Error + Send + Sync>` instead.
#[pglock::advisory("job")]
async fn job() -> Result<(), Box<dyn std::error::Error>> {
    Ok(())
}

fn spawnable<F: std::future::Future + Send + 'static>(_: F) {}

fn main() {
    spawnable(job());
}
