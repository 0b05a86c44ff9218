#[pglock::advisory]
struct Job;

fn main() {}
