use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, pgstack::Cached)]
#[pgstack(cache = "pages", kye = "path")]
struct Page {
    path: String,
}

fn main() {}
