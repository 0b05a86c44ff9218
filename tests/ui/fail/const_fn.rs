#[pglock::advisory("job")]
const fn job() -> u8 {
    1
}

fn main() {}
