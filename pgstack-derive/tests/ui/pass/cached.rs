use pgstack::cache::{Cached, Expiry};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Serialize, Deserialize, pgstack::Cached)]
#[pgstack(cache = "pages", key = "path", ttl = "10m", prefix = "page:")]
struct Page {
    path: String,
    html: String,
}

#[derive(Serialize, Deserialize, pgstack::Cached)]
#[pgstack(cache = "pages", key = "id")]
struct User {
    id: u64,
    name: String,
}

fn main() {
    let page = Page { path: "/about".into(), html: String::new() };
    assert_eq!(page.cache_key(), "page:/about");
    assert_eq!(Page::EXPIRY, Expiry::After(Duration::from_secs(600)));
    assert_eq!(User { id: 7, name: String::new() }.cache_key(), "7");
    assert_eq!(User::EXPIRY, Expiry::Default);
    assert_eq!(Page::cache().def().default_ttl_ms, Some(300_000));
    let _ = (page.html, User { id: 1, name: String::new() }.name);
}
