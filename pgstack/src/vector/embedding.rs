//! Embedding values: dense floats (`vector`, `halfvec`), bits (`bit`) and sparse floats
//! (`sparsevec`), with their pgvector text forms and the checks that run before any SQL.

use std::fmt::Write as _;

use super::{CollectionDef, Distance, Element, IndexDef};

/// A sparse vector: `dimensions` long, non-zero `values` at 0-based `indices`.
#[derive(Clone, Debug, PartialEq)]
pub struct SparseVector {
    pub dimensions: u32,
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

impl SparseVector {
    /// The non-zero elements of `dense`.
    pub fn from_dense(dense: &[f32]) -> SparseVector {
        let (indices, values) = dense
            .iter()
            .enumerate()
            .filter(|(_, v)| **v != 0.0)
            .map(|(i, v)| (i as u32, *v))
            .unzip();
        SparseVector {
            dimensions: dense.len() as u32,
            indices,
            values,
        }
    }
}

/// One embedding, of whichever element type the collection stores.
#[derive(Clone, Debug, PartialEq)]
pub enum Embedding {
    /// `vector` and `halfvec`.
    Dense(Vec<f32>),
    /// `bit`.
    Bits(Vec<bool>),
    /// `sparsevec`.
    Sparse(SparseVector),
}

impl From<Vec<f32>> for Embedding {
    fn from(v: Vec<f32>) -> Self {
        Embedding::Dense(v)
    }
}

impl From<&[f32]> for Embedding {
    fn from(v: &[f32]) -> Self {
        Embedding::Dense(v.to_vec())
    }
}

impl From<&Vec<f32>> for Embedding {
    fn from(v: &Vec<f32>) -> Self {
        Embedding::Dense(v.clone())
    }
}

impl From<Vec<bool>> for Embedding {
    fn from(v: Vec<bool>) -> Self {
        Embedding::Bits(v)
    }
}

impl From<SparseVector> for Embedding {
    fn from(v: SparseVector) -> Self {
        Embedding::Sparse(v)
    }
}

/// The largest magnitude a `halfvec` element holds.
const HALF_MAX: f32 = 65_504.0;

impl Embedding {
    fn kind(&self) -> &'static str {
        match self {
            Embedding::Dense(_) => "a dense embedding (floats)",
            Embedding::Bits(_) => "a bit embedding",
            Embedding::Sparse(_) => "a sparse embedding",
        }
    }

    /// Checks the embedding against the collection: element type, dimensions, finite values,
    /// pgvector's limits. The message names what is wrong and what was expected.
    pub(crate) fn check(&self, def: &CollectionDef) -> Result<(), String> {
        let dims = def.dimensions as usize;
        let expected = match def.element {
            Element::Vector | Element::Halfvec => matches!(self, Embedding::Dense(_)),
            Element::Bit => matches!(self, Embedding::Bits(_)),
            Element::Sparsevec => matches!(self, Embedding::Sparse(_)),
        };
        if !expected {
            return Err(format!(
                "the collection stores `{}` embeddings, but this is {}",
                def.element.name(),
                self.kind()
            ));
        }
        match self {
            Embedding::Dense(values) => {
                if values.len() != dims {
                    return Err(format!(
                        "expected {dims} dimensions, found {}: the embedding model and \
                         `dimensions` in the spec must agree",
                        values.len()
                    ));
                }
                if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                    return Err(format!(
                        "element {i} is {}; embeddings must be finite numbers",
                        values[i]
                    ));
                }
                if def.element == Element::Halfvec
                    && let Some(i) = values.iter().position(|v| v.abs() > HALF_MAX)
                {
                    return Err(format!(
                        "element {i} is {}, beyond the ±{HALF_MAX} a `halfvec` holds",
                        values[i]
                    ));
                }
                if def.distance == Distance::Cosine && values.iter().all(|v| *v == 0.0) {
                    return Err(
                        "the embedding is all zeros, which has no direction: cosine distance \
                         to it is undefined"
                            .to_string(),
                    );
                }
            }
            Embedding::Bits(bits) => {
                if bits.len() != dims {
                    return Err(format!(
                        "expected {dims} bits, found {}: the embedding model and `dimensions` in \
                         the spec must agree",
                        bits.len()
                    ));
                }
            }
            Embedding::Sparse(sparse) => {
                if sparse.dimensions as usize != dims {
                    return Err(format!(
                        "expected {dims} dimensions, found a sparse vector of {}",
                        sparse.dimensions
                    ));
                }
                if sparse.indices.len() != sparse.values.len() {
                    return Err(format!(
                        "a sparse vector needs one value per index, found {} indices and {} values",
                        sparse.indices.len(),
                        sparse.values.len()
                    ));
                }
                if let Some(w) = sparse.indices.windows(2).find(|w| w[0] >= w[1]) {
                    return Err(format!(
                        "sparse indices must be strictly increasing, found {} then {}",
                        w[0], w[1]
                    ));
                }
                if let Some(i) = sparse.indices.iter().find(|i| **i >= sparse.dimensions) {
                    return Err(format!(
                        "sparse index {i} is out of range for {} dimensions (indices start at 0)",
                        sparse.dimensions
                    ));
                }
                if let Some(v) = sparse.values.iter().find(|v| !v.is_finite()) {
                    return Err(format!(
                        "a sparse value is {v}; embeddings must be finite numbers"
                    ));
                }
                if def.index != IndexDef::None && sparse.values.len() > 1_000 {
                    return Err(format!(
                        "{} non-zero elements, but pgvector indexes sparse vectors of at most \
                         1000; keep the largest 1000",
                        sparse.values.len()
                    ));
                }
            }
        }
        Ok(())
    }

    /// pgvector's text form: `[1,2,3]`, `0101`, `{1:0.5,3:2}/5` (sparse indices 1-based).
    pub(crate) fn to_sql_text(&self) -> String {
        match self {
            Embedding::Dense(values) => {
                let mut out = String::with_capacity(values.len() * 10 + 2);
                out.push('[');
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{v}");
                }
                out.push(']');
                out
            }
            Embedding::Bits(bits) => bits.iter().map(|b| if *b { '1' } else { '0' }).collect(),
            Embedding::Sparse(sparse) => {
                let mut out = String::from("{");
                for (n, (i, v)) in sparse.indices.iter().zip(&sparse.values).enumerate() {
                    if n > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{}:{v}", i + 1);
                }
                let _ = write!(out, "}}/{}", sparse.dimensions);
                out
            }
        }
    }

    /// Parses pgvector's text output for `element`.
    pub(crate) fn from_sql_text(element: Element, text: &str) -> Result<Embedding, String> {
        let bad = || format!("cannot read `{element:?}` text `{}`", short(text));
        match element {
            Element::Vector | Element::Halfvec => {
                let inner = text
                    .trim()
                    .strip_prefix('[')
                    .and_then(|t| t.strip_suffix(']'))
                    .ok_or_else(bad)?;
                if inner.trim().is_empty() {
                    return Ok(Embedding::Dense(Vec::new()));
                }
                inner
                    .split(',')
                    .map(|v| v.trim().parse::<f32>().map_err(|_| bad()))
                    .collect::<Result<Vec<f32>, String>>()
                    .map(Embedding::Dense)
            }
            Element::Bit => text
                .trim()
                .chars()
                .map(|c| match c {
                    '0' => Ok(false),
                    '1' => Ok(true),
                    _ => Err(bad()),
                })
                .collect::<Result<Vec<bool>, String>>()
                .map(Embedding::Bits),
            Element::Sparsevec => {
                let (body, dims) = text.trim().rsplit_once('/').ok_or_else(bad)?;
                let dimensions: u32 = dims.trim().parse().map_err(|_| bad())?;
                let body = body
                    .trim()
                    .strip_prefix('{')
                    .and_then(|b| b.strip_suffix('}'))
                    .ok_or_else(bad)?;
                let mut indices = Vec::new();
                let mut values = Vec::new();
                for pair in body.split(',').filter(|p| !p.trim().is_empty()) {
                    let (i, v) = pair.split_once(':').ok_or_else(bad)?;
                    let i: u32 = i.trim().parse().map_err(|_| bad())?;
                    indices.push(i.checked_sub(1).ok_or_else(bad)?);
                    values.push(v.trim().parse().map_err(|_| bad())?);
                }
                Ok(Embedding::Sparse(SparseVector {
                    dimensions,
                    indices,
                    values,
                }))
            }
        }
    }
}

fn short(text: &str) -> String {
    if text.len() > 40 {
        format!("{}...", &text[..text.floor_char_boundary(40)])
    } else {
        text.to_string()
    }
}

/// Types a `#[pgstack(embedding)]` field may have, and how they convert.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an embedding type",
    label = "an embedding field must be one of the types below",
    note = "vector and halfvec: Vec<f32> · bit: Vec<bool> · sparsevec: pgstack::vector::SparseVector; each also as Option<_>"
)]
pub trait EmbeddingField: Sized {
    /// The embedding to store; `None` leaves the column NULL (to be filled later).
    fn to_embedding(&self) -> Option<Embedding>;
    /// Rebuilds the field; `None` when the row has no embedding (yet).
    fn from_embedding(embedding: Option<Embedding>) -> Result<Self, String>;
}

/// The error for a row without an embedding read into a required field.
fn missing(rust_type: &str) -> String {
    format!(
        "the row has no embedding yet (it was written without one); declare the field \
         `Option<{rust_type}>` to read such rows"
    )
}

impl EmbeddingField for Vec<f32> {
    fn to_embedding(&self) -> Option<Embedding> {
        Some(Embedding::Dense(self.clone()))
    }
    fn from_embedding(embedding: Option<Embedding>) -> Result<Self, String> {
        match embedding {
            None => Err(missing("Vec<f32>")),
            Some(Embedding::Dense(v)) => Ok(v),
            Some(other) => Err(format!(
                "expected a dense embedding, found {}",
                other.kind()
            )),
        }
    }
}

impl EmbeddingField for Vec<bool> {
    fn to_embedding(&self) -> Option<Embedding> {
        Some(Embedding::Bits(self.clone()))
    }
    fn from_embedding(embedding: Option<Embedding>) -> Result<Self, String> {
        match embedding {
            None => Err(missing("Vec<bool>")),
            Some(Embedding::Bits(v)) => Ok(v),
            Some(other) => Err(format!("expected a bit embedding, found {}", other.kind())),
        }
    }
}

impl EmbeddingField for SparseVector {
    fn to_embedding(&self) -> Option<Embedding> {
        Some(Embedding::Sparse(self.clone()))
    }
    fn from_embedding(embedding: Option<Embedding>) -> Result<Self, String> {
        match embedding {
            None => Err(missing("SparseVector")),
            Some(Embedding::Sparse(v)) => Ok(v),
            Some(other) => Err(format!(
                "expected a sparse embedding, found {}",
                other.kind()
            )),
        }
    }
}

impl<T: EmbeddingField> EmbeddingField for Option<T> {
    fn to_embedding(&self) -> Option<Embedding> {
        self.as_ref().and_then(T::to_embedding)
    }
    fn from_embedding(embedding: Option<Embedding>) -> Result<Self, String> {
        match embedding {
            None => Ok(None),
            some => T::from_embedding(some).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_round_trip() {
        let dense = Embedding::Dense(vec![1.0, -0.5, 0.125]);
        assert_eq!(dense.to_sql_text(), "[1,-0.5,0.125]");
        assert_eq!(
            Embedding::from_sql_text(Element::Vector, "[1,-0.5,0.125]").unwrap(),
            dense
        );
        let bits = Embedding::Bits(vec![true, false, true]);
        assert_eq!(bits.to_sql_text(), "101");
        assert_eq!(Embedding::from_sql_text(Element::Bit, "101").unwrap(), bits);
        let sparse = Embedding::Sparse(SparseVector {
            dimensions: 5,
            indices: vec![0, 3],
            values: vec![0.5, 2.0],
        });
        assert_eq!(sparse.to_sql_text(), "{1:0.5,4:2}/5");
        assert_eq!(
            Embedding::from_sql_text(Element::Sparsevec, "{1:0.5,4:2}/5").unwrap(),
            sparse
        );
        assert!(Embedding::from_sql_text(Element::Vector, "[1,x]").is_err());
    }

    #[test]
    fn indexed_sparse_vectors_hold_at_most_1000_non_zeros() {
        let def = CollectionDef {
            schema: "public",
            table: "t",
            dimensions: 5000,
            element: Element::Sparsevec,
            distance: Distance::InnerProduct,
            index: IndexDef::Hnsw { ef_search: 40 },
            id: super::super::FieldKind::Bigint,
            fields: &[],
            full_text: None,
            text_fields: &[],
            partition_by: None,
        };
        let dense = vec![1.0f32; 1001];
        let mut padded = dense.clone();
        padded.resize(5000, 0.0);
        let message = Embedding::Sparse(SparseVector::from_dense(&padded))
            .check(&def)
            .unwrap_err();
        assert!(message.contains("at most 1000"), "{message}");
        padded[1000] = 0.0;
        assert!(
            Embedding::Sparse(SparseVector::from_dense(&padded))
                .check(&def)
                .is_ok()
        );
    }
}
