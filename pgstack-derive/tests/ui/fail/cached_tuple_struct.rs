use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, pgstack::Cached)]
#[pgstack(cache = "pages", key = "0")]
struct Page(String);

fn main() {}
