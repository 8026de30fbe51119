//! Compile-time checks and conversions `#[derive(Embedded)]` expands to. Not a public API.
//!
//! Each declared field type is a marker; a struct field's Rust type must implement the
//! matching trait, and the compiler's error names both.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Embedding, EmbeddingField};
use crate::error::{Error, Result};

pub struct Text;
pub struct Bigint;
pub struct Integer;
pub struct Boolean;
pub struct Double;
pub struct Timestamptz;
pub struct Uuid;
pub struct Jsonb;
pub struct Dense;
pub struct Bits;
pub struct Sparse;

/// A Rust type that holds a declared field of SQL type `K`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot hold this field of the vector collection",
    label = "does not match the field's type in pgstack.toml",
    note = "text: String · bigint: i64 · integer: i32 · boolean: bool · double: f64 · timestamptz: chrono::DateTime<Utc or FixedOffset> · uuid: Uuid · jsonb: any serde type; each also as Option<_>"
)]
pub trait FieldOf<K> {}

/// A Rust type that holds an id of SQL type `K`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot hold the id of this vector collection",
    label = "does not match the collection's `id` type in pgstack.toml",
    note = "id = \"bigint\" (the default): i64 · \"text\": String · \"uuid\": Uuid"
)]
pub trait IdOf<K> {}

/// A Rust type that holds an embedding of element kind `K`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot hold the embedding of this vector collection",
    label = "does not match the collection's `element` in pgstack.toml",
    note = "vector and halfvec: Vec<f32> · bit: Vec<bool> · sparsevec: pgstack::vector::SparseVector; each also as Option<_>"
)]
pub trait EmbeddingOf<K> {}

macro_rules! field_of {
    ($marker:ty: $($t:ty),*) => {$(
        impl FieldOf<$marker> for $t {}
        impl FieldOf<$marker> for Option<$t> {}
    )*};
}
field_of!(Text: String);
field_of!(Bigint: i64);
field_of!(Integer: i32);
field_of!(Boolean: bool);
field_of!(Double: f64);
field_of!(Timestamptz: chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::FixedOffset>);
field_of!(Uuid: sea_orm::prelude::Uuid);
impl<T: Serialize + DeserializeOwned> FieldOf<Jsonb> for T {}

impl IdOf<Bigint> for i64 {}
impl IdOf<Text> for String {}
impl IdOf<Uuid> for sea_orm::prelude::Uuid {}

impl EmbeddingOf<Dense> for Vec<f32> {}
impl EmbeddingOf<Dense> for Option<Vec<f32>> {}
impl EmbeddingOf<Bits> for Vec<bool> {}
impl EmbeddingOf<Bits> for Option<Vec<bool>> {}
impl EmbeddingOf<Sparse> for super::SparseVector {}
impl EmbeddingOf<Sparse> for Option<super::SparseVector> {}

pub fn field<T: FieldOf<K>, K>() {}
pub fn id<T: IdOf<K>, K>() {}
pub fn embedding<T: EmbeddingOf<K>, K>() {}

pub fn to_json<T: Serialize + ?Sized>(
    value: &T,
    collection: &str,
    field: &str,
) -> Result<serde_json::Value> {
    crate::json::to_json(value)
        .map_err(|e| e.into_error(collection, &format!("of field `{field}`")))
}

pub fn from_json<T: DeserializeOwned>(
    value: serde_json::Value,
    collection: &str,
    field: &str,
) -> Result<T> {
    serde_json::from_value(value).map_err(|source| Error::Json {
        facility: collection.to_string(),
        direction: "decode",
        what: format!("field `{field}`"),
        cause: source,
    })
}

pub fn to_embedding<T: EmbeddingField>(value: &T) -> Option<Embedding> {
    value.to_embedding()
}

pub fn from_embedding<T: EmbeddingField>(
    embedding: Option<Embedding>,
    collection: &str,
) -> Result<T> {
    T::from_embedding(embedding).map_err(|message| Error::InvalidArgument {
        facility: collection.to_string(),
        message: format!("embedding: {message}"),
    })
}
