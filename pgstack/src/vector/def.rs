//! What a `[[vector]]` collection is: element, distance, index and typed metadata fields,
//! and how a field's JSON value binds, checks and reads back.

use chrono::{DateTime, FixedOffset};
use sea_orm::prelude::Uuid;
use sea_orm::{DbErr, QueryResult, Value};

/// The pgvector type of the `embedding` column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Element {
    Vector,
    Halfvec,
    Bit,
    Sparsevec,
}

impl Element {
    pub fn name(self) -> &'static str {
        match self {
            Element::Vector => "vector",
            Element::Halfvec => "halfvec",
            Element::Bit => "bit",
            Element::Sparsevec => "sparsevec",
        }
    }
}

/// How distance is measured; each has its pgvector operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Distance {
    Cosine,
    L2,
    InnerProduct,
    L1,
    Hamming,
    Jaccard,
}

impl Distance {
    pub fn operator(self) -> &'static str {
        match self {
            Distance::Cosine => "<=>",
            Distance::L2 => "<->",
            Distance::InnerProduct => "<#>",
            Distance::L1 => "<+>",
            Distance::Hamming => "<~>",
            Distance::Jaccard => "<%>",
        }
    }
}

/// The collection's ANN index and the setting pgstack searches it with by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexDef {
    Hnsw { ef_search: u32 },
    IvfFlat { lists: u32, probes: u32 },
    None,
}

/// The SQL type of an id or metadata field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldKind {
    Text,
    Bigint,
    Integer,
    Boolean,
    Double,
    Timestamptz,
    Uuid,
    Jsonb,
}

impl FieldKind {
    pub fn sql(self) -> &'static str {
        match self {
            FieldKind::Text => "text",
            FieldKind::Bigint => "bigint",
            FieldKind::Integer => "integer",
            FieldKind::Boolean => "boolean",
            FieldKind::Double => "double precision",
            FieldKind::Timestamptz => "timestamptz",
            FieldKind::Uuid => "uuid",
            FieldKind::Jsonb => "jsonb",
        }
    }

    /// Converts a JSON value to a bound parameter of this type, or says why it cannot.
    pub(super) fn bind(self, value: &serde_json::Value) -> std::result::Result<Value, String> {
        use serde_json::Value as J;
        let wrong = || format!("expected {}, found {}", self.describe(), shown(value));
        Ok(match (self, value) {
            (FieldKind::Jsonb, v) => {
                crate::json::check_depth(v).map_err(|e| e.to_string())?;
                Value::Json(Some(Box::new(v.clone())))
            }
            (_, J::Null) => return Err(format!("expected {}, found null", self.describe())),
            (FieldKind::Text, J::String(s)) => Value::String(Some(s.clone())),
            (FieldKind::Bigint, J::Number(n)) => Value::BigInt(Some(n.as_i64().ok_or_else(wrong)?)),
            (FieldKind::Integer, J::Number(n)) => {
                let n = n.as_i64().and_then(|n| i32::try_from(n).ok());
                Value::Int(Some(n.ok_or_else(wrong)?))
            }
            (FieldKind::Boolean, J::Bool(b)) => Value::Bool(Some(*b)),
            (FieldKind::Double, J::Number(n)) => Value::Double(Some(n.as_f64().ok_or_else(wrong)?)),
            (FieldKind::Timestamptz, J::String(s)) => {
                let t = DateTime::<FixedOffset>::parse_from_rfc3339(s).map_err(|_| wrong())?;
                Value::ChronoDateTimeWithTimeZone(Some(t))
            }
            (FieldKind::Uuid, J::String(s)) => {
                Value::Uuid(Some(Uuid::parse_str(s).map_err(|_| wrong())?))
            }
            _ => return Err(wrong()),
        })
    }

    /// Whether a JSON value fits this type when loaded through `json_to_recordset` (null
    /// always does). Checks without building a value: it runs for every field of every row.
    pub(super) fn accepts(self, value: &serde_json::Value) -> bool {
        use serde_json::Value as J;
        match (self, value) {
            (_, J::Null) | (FieldKind::Jsonb, _) => true,
            (FieldKind::Text, J::String(_)) | (FieldKind::Boolean, J::Bool(_)) => true,
            (FieldKind::Bigint, J::Number(n)) => n.as_i64().is_some(),
            (FieldKind::Integer, J::Number(n)) => {
                n.as_i64().is_some_and(|n| i32::try_from(n).is_ok())
            }
            (FieldKind::Double, J::Number(n)) => n.as_f64().is_some(),
            (FieldKind::Timestamptz, J::String(s)) => DateTime::parse_from_rfc3339(s).is_ok(),
            (FieldKind::Uuid, J::String(s)) => Uuid::parse_str(s).is_ok(),
            _ => false,
        }
    }

    pub(super) fn describe(self) -> &'static str {
        match self {
            FieldKind::Text => "a string (`text`)",
            FieldKind::Bigint => "a whole number (`bigint`)",
            FieldKind::Integer => "a whole number within i32 (`integer`)",
            FieldKind::Boolean => "true or false (`boolean`)",
            FieldKind::Double => "a number (`double`)",
            FieldKind::Timestamptz => "an RFC 3339 timestamp string (`timestamptz`)",
            FieldKind::Uuid => "a UUID string (`uuid`)",
            FieldKind::Jsonb => "any JSON (`jsonb`)",
        }
    }

    /// Reads column `name` of this type as JSON (NULL as `null`).
    pub(super) fn read(
        self,
        row: &QueryResult,
        name: &str,
    ) -> std::result::Result<serde_json::Value, DbErr> {
        use serde_json::Value as J;
        Ok(match self {
            FieldKind::Text => row
                .try_get::<Option<String>>("", name)?
                .map_or(J::Null, J::from),
            FieldKind::Bigint => row
                .try_get::<Option<i64>>("", name)?
                .map_or(J::Null, J::from),
            FieldKind::Integer => row
                .try_get::<Option<i32>>("", name)?
                .map_or(J::Null, J::from),
            FieldKind::Boolean => row
                .try_get::<Option<bool>>("", name)?
                .map_or(J::Null, J::from),
            FieldKind::Double => row
                .try_get::<Option<f64>>("", name)?
                .map_or(J::Null, J::from),
            FieldKind::Timestamptz => row
                .try_get::<Option<DateTime<FixedOffset>>>("", name)?
                .map_or(J::Null, |t| J::from(t.to_rfc3339())),
            FieldKind::Uuid => row
                .try_get::<Option<Uuid>>("", name)?
                .map_or(J::Null, |u| J::from(u.to_string())),
            FieldKind::Jsonb => row
                .try_get::<Option<serde_json::Value>>("", name)?
                .unwrap_or(J::Null),
        })
    }
}

/// A declared metadata field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldDef {
    pub name: &'static str,
    pub kind: FieldKind,
    /// Has a B-tree index: filters on it can be counted cheaply, so a selective filter is
    /// answered by exact search.
    pub indexed: bool,
}

/// What the generator (or `#[derive(Embedded)]`) knows about a `[[vector]]` collection.
#[derive(Clone, Copy, Debug)]
pub struct CollectionDef {
    pub schema: &'static str,
    pub table: &'static str,
    pub dimensions: u32,
    pub element: Element,
    pub distance: Distance,
    pub index: IndexDef,
    pub id: FieldKind,
    pub fields: &'static [FieldDef],
    /// The text search configuration when the collection has a `fts` column.
    pub full_text: Option<&'static str>,
    /// The fields the `fts` column is built from, most important first.
    pub text_fields: &'static [&'static str],
    /// The field each value of which has its own partition.
    pub partition_by: Option<&'static str>,
}

impl CollectionDef {
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name == name)
    }

    pub(super) fn partition_field(&self) -> Option<&FieldDef> {
        self.partition_by.and_then(|p| self.field(p))
    }
}

/// A value for an error message: scalars as they are, containers by kind (printing a
/// container recurses, and a too-deep one would overflow the stack).
pub(super) fn shown(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Array(_) | serde_json::Value::Object(_) => json_kind(value).to_string(),
        scalar => format!("`{scalar}`"),
    }
}

/// What kind of JSON value `value` is, without printing it.
pub(super) fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}
