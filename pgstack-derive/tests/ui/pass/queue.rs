use pgstack::queue::Job;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, pgstack::Queue)]
#[pgstack(queue = "emails")]
struct SendEmail {
    to: String,
}

#[derive(Serialize, Deserialize, pgstack::Queue)]
#[pgstack(queue = "emails", kind = "email.digest")]
enum Digest {
    Daily,
    Weekly { day: u8 },
}

fn main() {
    assert_eq!(SendEmail::KIND, "SendEmail");
    assert_eq!(Digest::KIND, "email.digest");
    let def = SendEmail::queue().def();
    assert_eq!((def.schema, def.table), ("public", "emails"));
    assert_eq!((def.visibility_timeout_ms, def.max_attempts), (45_000, 7));
    assert!(def.priorities && def.dead_letter && !def.unique);
    assert_eq!(def.notify_channel, Some("pgstack.public.emails"));
    let _ = (SendEmail { to: String::new() }, Digest::Daily, Digest::Weekly { day: 1 });
}
