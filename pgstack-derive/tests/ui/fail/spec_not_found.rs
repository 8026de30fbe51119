use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, pgstack::Queue)]
#[pgstack(queue = "emails", spec = "config/missing.toml")]
struct SendEmail {
    to: String,
}

fn main() {}
