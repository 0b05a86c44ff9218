#[pglock::advisory(Skip)]
async fn job() {}

fn main() {}
