use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, pgstack::Queue)]
#[pgstack(queue = "emails", priority = "high", kind = "")]
struct SendEmail {
    to: String,
}

fn main() {}
