use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, pgstack::Queue)]
#[pgstack(queue = "emailz")]
struct SendEmail {
    to: String,
}

fn main() {}
