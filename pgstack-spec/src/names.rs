//! Name rules shared by the spec reader, the generator and the derives.

/// PostgreSQL truncates identifiers longer than this many bytes.
pub const MAX_IDENT_BYTES: usize = 63;

/// A facility name: `^[a-z][a-z0-9_]{0,39}$`.
pub fn is_facility_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && name.len() <= 40
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

/// A schema or column name we are willing to put into SQL: `^[a-z_][a-z0-9_]*$`, at most 63
/// bytes, not starting with `pg_` (reserved by PostgreSQL for system schemas).
pub fn is_sql_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && name.len() <= MAX_IDENT_BYTES
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && !name.starts_with("pg_")
}

/// A segment of a JSON path in a document field: letters, digits, `_` and `-`.
pub fn is_path_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment.len() <= 128
        && segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// FNV-1a, 64 bits: a small stable hash for shortening names and checksumming files.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// An object name derived from a table and a suffix, kept within PostgreSQL's 63 bytes: when
/// too long, the table part is shortened and a stable hash of the full name keeps it unique.
pub fn object_name(table: &str, suffix: &str) -> String {
    let full = format!("{table}_{suffix}");
    if full.len() <= MAX_IDENT_BYTES {
        return full;
    }
    let hash = format!("{:08x}", fnv1a64(full.as_bytes()) as u32);
    let keep = MAX_IDENT_BYTES - suffix.len() - hash.len() - 2;
    let table_part = &table[..keep.min(table.len())];
    format!("{table_part}_{hash}_{suffix}")
}

/// The B-tree of a declared document field: `<table>_<field>_key` when unique,
/// `<table>_<field>_idx` when indexed, none otherwise.
pub fn document_field_index(table: &str, field: &crate::DocField) -> Option<String> {
    if field.unique {
        Some(object_name(table, &format!("{}_key", field.name)))
    } else if field.index {
        Some(object_name(table, &format!("{}_idx", field.name)))
    } else {
        None
    }
}

/// The LISTEN/NOTIFY channel of a queue: `pgstack.<schema>.<queue>`, or with the schema
/// replaced by a hash when that would pass PostgreSQL's 63-byte limit.
pub fn queue_channel(schema: &str, queue: &str) -> String {
    let full = format!("pgstack.{schema}.{queue}");
    if full.len() <= MAX_IDENT_BYTES {
        return full;
    }
    format!("pgstack.{:08x}.{queue}", fnv1a64(schema.as_bytes()) as u32)
}

/// Rust keywords that cannot be field or module names without `r#`.
pub fn is_rust_keyword(name: &str) -> bool {
    matches!(
        name,
        "as" | "async"
            | "await"
            | "break"
            | "const"
            | "continue"
            | "crate"
            | "dyn"
            | "else"
            | "enum"
            | "extern"
            | "false"
            | "fn"
            | "for"
            | "gen"
            | "if"
            | "impl"
            | "in"
            | "let"
            | "loop"
            | "match"
            | "mod"
            | "move"
            | "mut"
            | "pub"
            | "ref"
            | "return"
            | "self"
            | "static"
            | "struct"
            | "super"
            | "trait"
            | "true"
            | "type"
            | "unsafe"
            | "use"
            | "where"
            | "while"
            | "abstract"
            | "become"
            | "box"
            | "do"
            | "final"
            | "macro"
            | "override"
            | "priv"
            | "try"
            | "typeof"
            | "unsized"
            | "virtual"
            | "yield"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facility_names() {
        assert!(is_facility_name("emails"));
        assert!(is_facility_name("a"));
        assert!(is_facility_name("user_profiles_2"));
        assert!(is_facility_name(&"a".repeat(40)));
        assert!(!is_facility_name(&"a".repeat(41)));
        assert!(!is_facility_name(""));
        assert!(!is_facility_name("2fa"));
        assert!(!is_facility_name("_x"));
        assert!(!is_facility_name("Emails"));
        assert!(!is_facility_name("user-profiles"));
        assert!(!is_facility_name("é"));
    }

    #[test]
    fn channels_fit_in_63_bytes() {
        assert_eq!(queue_channel("public", "emails"), "pgstack.public.emails");
        let long = queue_channel(&"s".repeat(63), &"q".repeat(40));
        assert!(long.len() <= 63, "{long}");
        assert!(long.ends_with(&"q".repeat(40)));
    }

    #[test]
    fn sql_names() {
        assert!(is_sql_name("public"));
        assert!(is_sql_name("_app"));
        assert!(!is_sql_name("pg_catalog"));
        assert!(!is_sql_name("App"));
        assert!(!is_sql_name(&"a".repeat(64)));
    }
}
