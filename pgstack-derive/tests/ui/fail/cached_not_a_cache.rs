use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, pgstack::Cached)]
#[pgstack(cache = "emails", key = "path")]
struct Page {
    path: String,
}

#[derive(Serialize, Deserialize, pgstack::Cached)]
#[pgstack(cache = "raw", key = "path")]
struct Blob {
    path: String,
}

fn main() {}
