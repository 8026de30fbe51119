use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, pgstack::Queue)]
struct SendEmail {
    to: String,
}

fn main() {}
