//! Durations as the spec writes them: `"500ms"`, `"30s"`, `"5m"`, `"1h"`, `"7d"`.

use std::fmt;
use std::time::Duration;

/// A duration read from the spec, kept in milliseconds so it prints back the way it was meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(into = "String")]
pub struct SpecDuration {
    millis: u64,
}

const UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

impl SpecDuration {
    pub const fn from_millis(millis: u64) -> Self {
        SpecDuration { millis }
    }

    pub const fn as_millis(self) -> u64 {
        self.millis
    }

    pub const fn as_std(self) -> Duration {
        Duration::from_millis(self.millis)
    }

    /// Parses `<digits><unit>` with unit `ms`, `s`, `m`, `h` or `d`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let digits_end = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(digits_end);
        let help = "write a whole number and a unit: `500ms`, `30s`, `5m`, `1h` or `7d`";
        if digits.is_empty() {
            return Err(format!("`{text}` is not a duration; {help}"));
        }
        let factor = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(format!("`{text}` has no known unit; {help}")),
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("`{text}` is too large; {help}"))?;
        let millis = n
            .checked_mul(factor)
            .ok_or_else(|| format!("`{text}` is too large; {help}"))?;
        Ok(SpecDuration { millis })
    }
}

impl fmt::Display for SpecDuration {
    /// The largest unit that divides the duration exactly, so `"60s"` prints as `1m`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.millis == 0 {
            return f.write_str("0s");
        }
        for (unit, factor) in UNITS {
            if self.millis.is_multiple_of(factor) {
                return write!(f, "{}{unit}", self.millis / factor);
            }
        }
        unreachable!("every duration is a whole number of milliseconds")
    }
}

impl From<SpecDuration> for String {
    fn from(d: SpecDuration) -> String {
        d.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::SpecDuration;

    #[test]
    fn parses_every_unit() {
        for (text, millis) in [
            ("500ms", 500),
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("7d", 604_800_000),
        ] {
            assert_eq!(
                SpecDuration::parse(text).unwrap().as_millis(),
                millis,
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_bad_text() {
        for text in [
            "",
            "s",
            "10",
            "1.5s",
            "10 s",
            "-1s",
            "3w",
            "99999999999999999999d",
        ] {
            assert!(SpecDuration::parse(text).is_err(), "{text} should fail");
        }
    }

    #[test]
    fn prints_largest_exact_unit() {
        assert_eq!(SpecDuration::parse("60s").unwrap().to_string(), "1m");
        assert_eq!(SpecDuration::parse("1500ms").unwrap().to_string(), "1500ms");
        assert_eq!(SpecDuration::parse("48h").unwrap().to_string(), "2d");
    }
}
