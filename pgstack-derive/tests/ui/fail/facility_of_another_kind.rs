use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, pgstack::Queue)]
#[pgstack(queue = "settings")]
struct SendEmail {
    to: String,
}

fn main() {}
