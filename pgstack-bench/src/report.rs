//! One JSON line per measured case, in the shape `../shared/spec.md` section 4 fixes.

use std::time::Duration;

use serde::Serialize;

#[derive(Serialize)]
pub struct Record {
    pub facility: &'static str,
    pub case: &'static str,
    #[serde(rename = "impl")]
    pub implementation: &'static str,
    pub workers: usize,
    pub ops_per_sec: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Case-specific fields (batch size, jobs measured, ...).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Record {
    pub fn new(
        facility: &'static str,
        case: &'static str,
        implementation: &'static str,
        workers: usize,
    ) -> Record {
        Record {
            facility,
            case,
            implementation,
            workers,
            ops_per_sec: 0.0,
            p50_ms: None,
            p99_ms: None,
            extra: serde_json::Map::new(),
        }
    }

    pub fn rate(mut self, ops: u64, elapsed: Duration) -> Record {
        self.ops_per_sec = round(ops as f64 / elapsed.as_secs_f64().max(1e-9));
        self
    }

    pub fn latencies(mut self, samples: &mut [Duration]) -> Record {
        samples.sort_unstable();
        self.p50_ms = percentile(samples, 0.50);
        self.p99_ms = percentile(samples, 0.99);
        self
    }

    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Record {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    /// Prints the line on stdout (flushed, so a pipe sees each case as it finishes).
    pub fn print(self) {
        use std::io::Write;
        match serde_json::to_string(&self) {
            Ok(line) => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
            Err(e) => eprintln!("pgstack-bench: cannot print a record: {e}"),
        }
    }
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The `p` quantile of sorted samples, in milliseconds with three decimals.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    let ms = sorted[index.min(sorted.len() - 1)].as_secs_f64() * 1000.0;
    Some((ms * 1000.0).round() / 1000.0)
}
