//! Untyped rows (`Record`), row keys (`Key`) and typed field handles for filters (`Field`).

use sea_orm::prelude::Uuid;

use super::{Embedding, Filter};

/// A typed handle on a declared field, for filters: `fields::TENANT_ID.eq(7)`.
pub struct Field<V> {
    name: &'static str,
    _value: std::marker::PhantomData<fn(V)>,
}

impl<V> Clone for Field<V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<V> Copy for Field<V> {}

impl<V: serde::Serialize> Field<V> {
    pub const fn new(name: &'static str) -> Self {
        Field {
            name,
            _value: std::marker::PhantomData,
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// One comparison with `value`; a value that cannot become JSON makes a filter the search
    /// refuses, naming why.
    fn compare(&self, make: fn(&str, serde_json::Value) -> Filter, value: impl Into<V>) -> Filter {
        match crate::json::to_json(&value.into()) {
            Ok(json) => make(self.name, json),
            Err(e) => Filter::invalid(self.name, e.to_string()),
        }
    }

    pub fn eq(&self, value: impl Into<V>) -> Filter {
        self.compare(Filter::eq, value)
    }
    pub fn ne(&self, value: impl Into<V>) -> Filter {
        self.compare(Filter::ne, value)
    }
    pub fn lt(&self, value: impl Into<V>) -> Filter {
        self.compare(Filter::lt, value)
    }
    pub fn le(&self, value: impl Into<V>) -> Filter {
        self.compare(Filter::le, value)
    }
    pub fn gt(&self, value: impl Into<V>) -> Filter {
        self.compare(Filter::gt, value)
    }
    pub fn ge(&self, value: impl Into<V>) -> Filter {
        self.compare(Filter::ge, value)
    }
    pub fn one_of<I: IntoIterator<Item = V>>(&self, values: I) -> Filter {
        let values: std::result::Result<Vec<_>, _> = values
            .into_iter()
            .map(|v| crate::json::to_json(&v))
            .collect();
        match values {
            Ok(values) => Filter::one_of(self.name, values),
            Err(e) => Filter::invalid(self.name, e.to_string()),
        }
    }
    pub fn is_null(&self) -> Filter {
        Filter::is_null(self.name)
    }
}

/// A row to write, untyped: metadata as JSON, checked against the declared field types.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub id: serde_json::Value,
    /// `None` stores NULL: the row is kept but not found by vector search until embedded.
    pub embedding: Option<Embedding>,
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl Record {
    pub fn new(id: impl Into<serde_json::Value>) -> Record {
        Record {
            id: id.into(),
            embedding: None,
            fields: serde_json::Map::new(),
        }
    }

    pub fn embedding(mut self, embedding: impl Into<Embedding>) -> Record {
        self.embedding = Some(embedding.into());
        self
    }

    pub fn field(mut self, name: &str, value: impl Into<serde_json::Value>) -> Record {
        self.fields.insert(name.to_string(), value.into());
        self
    }

    pub fn get(&self, name: &str) -> Option<&serde_json::Value> {
        self.fields.get(name)
    }
}

/// Which row: its id, and its tenant when the collection is partitioned.
#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    pub id: serde_json::Value,
    pub tenant: Option<serde_json::Value>,
}

impl Key {
    pub fn new(id: impl Into<serde_json::Value>) -> Key {
        Key {
            id: id.into(),
            tenant: None,
        }
    }

    /// The value of the collection's `partition_by` field.
    pub fn tenant(mut self, tenant: impl Into<serde_json::Value>) -> Key {
        self.tenant = Some(tenant.into());
        self
    }
}

macro_rules! key_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Key {
            fn from(id: $t) -> Key {
                Key::new(id)
            }
        }
    )*};
}
key_from!(i64, i32, u32, String, &str);

impl From<Uuid> for Key {
    fn from(id: Uuid) -> Key {
        Key::new(id.to_string())
    }
}
