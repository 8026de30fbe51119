#[derive(pgstack::Queue)]
#[pgstack(queue = "emails")]
struct SendEmail {
    to: String,
}

fn main() {}
