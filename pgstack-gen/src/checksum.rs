//! A small, stable content hash for the state file: detects an edited or truncated migration.
//! It is not a security measure; it only needs to be the same on every machine and release.

pub use pgstack_spec::names::fnv1a64;

/// `fnv1a64:` and 16 hex digits, as recorded in `pgstack-state.json`.
pub fn checksum(text: &str) -> String {
    format!("fnv1a64:{:016x}", fnv1a64(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_values() {
        // Reference values of 64-bit FNV-1a.
        assert_eq!(super::fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(super::fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(super::checksum("a"), "fnv1a64:af63dc4c8601ec8c");
    }
}
