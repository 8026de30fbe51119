use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, pgstack::Cached)]
#[pgstack(cache = "pages", key = "path", ttl = "ten minutes")]
struct Page {
    path: String,
}

fn main() {}
