//! What a `[[rate_limit]]` is, and what a check decides.

use std::time::Duration;

/// The algorithm of a limiter, from the spec's `algorithm`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Gcra,
    FixedWindow,
    SlidingWindow,
    TokenBucket,
}

/// What the generator knows about a `[[rate_limit]]` facility.
#[derive(Clone, Copy, Debug)]
pub struct RateLimitDef {
    pub schema: &'static str,
    pub table: &'static str,
    pub algorithm: Algorithm,
    /// Requests (cost units) per period.
    pub limit: u64,
    pub period_ms: u64,
    /// Capacity for `gcra` and `token_bucket`; `None` means `limit`.
    pub burst: Option<u64>,
}

/// The outcome of a check: whether it passed, and what to tell the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The most a client may use at once: `burst` for gcra and token_bucket, else `limit`.
    pub limit: u64,
    /// What is left now (after this request, if it passed).
    pub remaining: u64,
    /// Until the limiter is back to full capacity for this key.
    pub reset_after: Duration,
    /// For a denied request: how long until the same request would pass.
    pub retry_after: Option<Duration>,
    /// The spec's `limit` and `period`, for the `RateLimit-Policy` header.
    pub quota: u64,
    pub window: Duration,
}

impl Decision {
    /// Response headers: the IETF draft's `RateLimit-Policy` and `RateLimit` (named `policy`),
    /// the older `RateLimit-Limit`, `-Remaining` and `-Reset`, and `Retry-After` when denied.
    /// Times are whole seconds, rounded up.
    pub fn headers(&self, policy: &str) -> Vec<(&'static str, String)> {
        let secs = |d: Duration| d.as_millis().div_ceil(1000).to_string();
        let mut headers = vec![
            (
                "RateLimit-Policy",
                format!("\"{policy}\";q={};w={}", self.quota, secs(self.window)),
            ),
            ("RateLimit-Limit", self.limit.to_string()),
            ("RateLimit-Remaining", self.remaining.to_string()),
            ("RateLimit-Reset", secs(self.reset_after)),
            (
                "RateLimit",
                format!(
                    "\"{policy}\";r={};t={}",
                    self.remaining,
                    secs(self.reset_after)
                ),
            ),
        ];
        if let Some(retry) = self.retry_after {
            headers.push(("Retry-After", secs(retry)));
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_follow_the_drafts() {
        let d = Decision {
            allowed: false,
            limit: 100,
            remaining: 0,
            reset_after: Duration::from_millis(2500),
            retry_after: Some(Duration::from_millis(1200)),
            quota: 100,
            window: Duration::from_secs(3600),
        };
        let headers = d.headers("api");
        assert!(headers.contains(&("RateLimit", "\"api\";r=0;t=3".to_string())));
        assert!(headers.contains(&("RateLimit-Limit", "100".to_string())));
        assert!(headers.contains(&("Retry-After", "2".to_string())));
        assert!(headers.contains(&("RateLimit-Policy", "\"api\";q=100;w=3600".to_string())));
    }
}
