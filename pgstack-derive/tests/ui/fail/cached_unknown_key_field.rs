use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, pgstack::Cached)]
#[pgstack(cache = "pages", key = "url")]
struct Page {
    path: String,
    html: String,
}

fn main() {}
