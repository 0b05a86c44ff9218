#[pglock::advisory]
async fn no_return_type() {}

#[pglock::advisory(side_effect = Raise)]
async fn option() -> Option<u32> {
    Some(1)
}

fn main() {}
