use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, pgstack::Queue)]
#[pgstack(queue = "blobs")]
struct Blob {
    bytes: Vec<u8>,
}

fn main() {}
