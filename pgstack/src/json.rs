//! Turning caller values into JSON without ever overflowing the stack.
//!
//! `serde_json::to_value`, `Clone` and the encoder sqlx uses all recurse once per nesting
//! level, so a value nested 10,000 levels deep (easy to build from user input) overflows a
//! tokio worker's stack and aborts the whole process. Every JSON value the runtime sends goes
//! through [`to_json`] (for `Serialize` types) or [`check_depth`] (for a `serde_json::Value` the
//! caller built): both stop at [`MAX_JSON_DEPTH`] levels, so nothing recursive ever runs deeper.
//!
//! The limit is what can be read back: sqlx decodes `jsonb` with serde_json, which refuses
//! input nested more than 127 levels, so pgstack never writes a value it could not read.

use std::cell::Cell;
use std::fmt::Display;

use serde::ser::{self, Serialize, Serializer};

use crate::limits::MAX_JSON_DEPTH;

/// Why a value could not be turned into JSON.
#[derive(Debug)]
pub(crate) enum JsonError {
    /// Arrays and objects nested more than [`MAX_JSON_DEPTH`] levels.
    TooDeep,
    /// The value's `Serialize` impl failed (a map with non-string keys, a custom error, ...).
    Serde(serde_json::Error),
}

impl JsonError {
    /// The runtime error for a value of `facility` described by `what` ("for key `k`").
    pub(crate) fn into_error(self, facility: &str, what: &str) -> crate::Error {
        match self {
            JsonError::TooDeep => crate::Error::InvalidArgument {
                facility: facility.to_string(),
                message: too_deep(what),
            },
            JsonError::Serde(source) => crate::Error::Json {
                facility: facility.to_string(),
                direction: "encode",
                what: what.to_string(),
                cause: source,
            },
        }
    }
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JsonError::TooDeep => f.write_str(&too_deep("given")),
            JsonError::Serde(e) => write!(f, "cannot encode the value as JSON: {e}"),
        }
    }
}

/// The message for a value nested too deeply.
pub(crate) fn too_deep(what: &str) -> String {
    format!(
        "the value {what} nests arrays and objects more than {MAX_JSON_DEPTH} levels deep \
         (`pgstack::limits::MAX_JSON_DEPTH`), more than serde_json can read back; flatten it"
    )
}

/// `serde_json::to_value`, refusing values nested more than [`MAX_JSON_DEPTH`] levels before
/// the recursion gets any deeper.
pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<serde_json::Value, JsonError> {
    let tripped = Cell::new(false);
    let guarded = Guard {
        value,
        depth: 0,
        tripped: &tripped,
    };
    match serde_json::to_value(&guarded) {
        Ok(json) => Ok(json),
        Err(_) if tripped.get() => Err(JsonError::TooDeep),
        Err(e) => Err(JsonError::Serde(e)),
    }
}

/// Whether `value` nests at most [`MAX_JSON_DEPTH`] levels; iterative, so any depth is safe.
pub(crate) fn check_depth(value: &serde_json::Value) -> Result<(), JsonError> {
    let mut stack: Vec<(&serde_json::Value, usize)> = vec![(value, 0)];
    while let Some((value, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &serde_json::Value>> = match value {
            serde_json::Value::Array(items) => Box::new(items.iter()),
            serde_json::Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        if depth + 1 > MAX_JSON_DEPTH {
            return Err(JsonError::TooDeep);
        }
        stack.extend(children.map(|child| (child, depth + 1)));
    }
    Ok(())
}

/// A value to serialize at nesting level `depth`.
struct Guard<'a, T: ?Sized> {
    value: &'a T,
    depth: usize,
    tripped: &'a Cell<bool>,
}

impl<T: Serialize + ?Sized> Serialize for Guard<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(Limited {
            inner: serializer,
            depth: self.depth,
            tripped: self.tripped,
        })
    }
}

/// A serializer that counts the arrays and objects it opens and refuses past the limit.
struct Limited<'a, S> {
    inner: S,
    depth: usize,
    tripped: &'a Cell<bool>,
}

/// The depth of an array or object opened at `depth`, or the error once past the limit.
fn open<E: ser::Error>(depth: usize, tripped: &Cell<bool>) -> Result<usize, E> {
    if depth >= MAX_JSON_DEPTH {
        tripped.set(true);
        return Err(E::custom(too_deep("given")));
    }
    Ok(depth + 1)
}

impl<'a, S> Limited<'a, S> {
    fn guard<'v, T: ?Sized>(&self, value: &'v T, depth: usize) -> Guard<'v, T>
    where
        'a: 'v,
    {
        Guard {
            value,
            depth,
            tripped: self.tripped,
        }
    }

    /// Opens one level (`levels` = 1) or an enum variant's two (`{"Variant": [...]}`).
    fn open<E: ser::Error>(&self, levels: usize) -> Result<usize, E> {
        let mut depth = self.depth;
        for _ in 0..levels {
            depth = open(depth, self.tripped)?;
        }
        Ok(depth)
    }
}

/// An open array or object: each element is serialized one level deeper.
struct Compound<'a, C> {
    inner: C,
    depth: usize,
    tripped: &'a Cell<bool>,
}

macro_rules! forward_scalars {
    ($($method:ident($ty:ty)),* $(,)?) => {$(
        fn $method(self, v: $ty) -> Result<S::Ok, S::Error> {
            self.inner.$method(v)
        }
    )*};
}

impl<'a, S: Serializer> Serializer for Limited<'a, S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Compound<'a, S::SerializeSeq>;
    type SerializeTuple = Compound<'a, S::SerializeTuple>;
    type SerializeTupleStruct = Compound<'a, S::SerializeTupleStruct>;
    type SerializeTupleVariant = Compound<'a, S::SerializeTupleVariant>;
    type SerializeMap = Compound<'a, S::SerializeMap>;
    type SerializeStruct = Compound<'a, S::SerializeStruct>;
    type SerializeStructVariant = Compound<'a, S::SerializeStructVariant>;

    forward_scalars!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
    );

    fn serialize_none(self) -> Result<S::Ok, S::Error> {
        self.inner.serialize_none()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        let value = self.guard(value, self.depth);
        self.inner.serialize_some(&value)
    }

    fn serialize_unit(self) -> Result<S::Ok, S::Error> {
        self.inner.serialize_unit()
    }

    fn serialize_unit_struct(self, name: &'static str) -> Result<S::Ok, S::Error> {
        self.inner.serialize_unit_struct(name)
    }

    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<S::Ok, S::Error> {
        self.inner.serialize_unit_variant(name, index, variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        let value = self.guard(value, self.depth);
        self.inner.serialize_newtype_struct(name, &value)
    }

    /// `{"Variant": value}`: one object level.
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        let depth = self.open(1)?;
        let value = self.guard(value, depth);
        self.inner
            .serialize_newtype_variant(name, index, variant, &value)
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        let depth = self.open(1)?;
        let inner = self.inner.serialize_seq(len)?;
        Ok(Compound {
            inner,
            depth,
            tripped: self.tripped,
        })
    }

    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        let depth = self.open(1)?;
        let tripped = self.tripped;
        let inner = self.inner.serialize_tuple(len)?;
        Ok(Compound {
            inner,
            depth,
            tripped,
        })
    }

    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        let depth = self.open(1)?;
        let tripped = self.tripped;
        let inner = self.inner.serialize_tuple_struct(name, len)?;
        Ok(Compound {
            inner,
            depth,
            tripped,
        })
    }

    /// `{"Variant": [...]}`: two levels.
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        let depth = self.open(2)?;
        let tripped = self.tripped;
        let inner = self
            .inner
            .serialize_tuple_variant(name, index, variant, len)?;
        Ok(Compound {
            inner,
            depth,
            tripped,
        })
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        let depth = self.open(1)?;
        let tripped = self.tripped;
        let inner = self.inner.serialize_map(len)?;
        Ok(Compound {
            inner,
            depth,
            tripped,
        })
    }

    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        let depth = self.open(1)?;
        let tripped = self.tripped;
        let inner = self.inner.serialize_struct(name, len)?;
        Ok(Compound {
            inner,
            depth,
            tripped,
        })
    }

    /// `{"Variant": {...}}`: two levels.
    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        let depth = self.open(2)?;
        let tripped = self.tripped;
        let inner = self
            .inner
            .serialize_struct_variant(name, index, variant, len)?;
        Ok(Compound {
            inner,
            depth,
            tripped,
        })
    }

    fn collect_str<T: Display + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.inner.collect_str(value)
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

impl<C: ser::SerializeSeq> ser::SerializeSeq for Compound<'_, C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
        let value = Guard {
            value,
            depth: self.depth,
            tripped: self.tripped,
        };
        self.inner.serialize_element(&value)
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.inner.end()
    }
}

impl<C: ser::SerializeTuple> ser::SerializeTuple for Compound<'_, C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
        let value = Guard {
            value,
            depth: self.depth,
            tripped: self.tripped,
        };
        self.inner.serialize_element(&value)
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.inner.end()
    }
}

impl<C: ser::SerializeTupleStruct> ser::SerializeTupleStruct for Compound<'_, C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
        let value = Guard {
            value,
            depth: self.depth,
            tripped: self.tripped,
        };
        self.inner.serialize_field(&value)
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.inner.end()
    }
}

impl<C: ser::SerializeTupleVariant> ser::SerializeTupleVariant for Compound<'_, C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
        let value = Guard {
            value,
            depth: self.depth,
            tripped: self.tripped,
        };
        self.inner.serialize_field(&value)
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.inner.end()
    }
}

impl<C: ser::SerializeMap> ser::SerializeMap for Compound<'_, C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), C::Error> {
        let key = Guard {
            value: key,
            depth: self.depth,
            tripped: self.tripped,
        };
        self.inner.serialize_key(&key)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
        let value = Guard {
            value,
            depth: self.depth,
            tripped: self.tripped,
        };
        self.inner.serialize_value(&value)
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.inner.end()
    }
}

impl<C: ser::SerializeStruct> ser::SerializeStruct for Compound<'_, C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), C::Error> {
        let value = Guard {
            value,
            depth: self.depth,
            tripped: self.tripped,
        };
        self.inner.serialize_field(key, &value)
    }
    fn skip_field(&mut self, key: &'static str) -> Result<(), C::Error> {
        self.inner.skip_field(key)
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.inner.end()
    }
}

impl<C: ser::SerializeStructVariant> ser::SerializeStructVariant for Compound<'_, C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), C::Error> {
        let value = Guard {
            value,
            depth: self.depth,
            tripped: self.tripped,
        };
        self.inner.serialize_field(key, &value)
    }
    fn skip_field(&mut self, key: &'static str) -> Result<(), C::Error> {
        self.inner.skip_field(key)
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.inner.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// Nested arrays, built without recursion (and dropped without it: see `flat_drop`).
    fn nested(levels: usize) -> Value {
        let mut value = json!(1);
        for _ in 0..levels {
            value = Value::Array(vec![value]);
        }
        value
    }

    /// Dropping a deep `Value` recurses too; take it apart level by level.
    fn flat_drop(mut value: Value) {
        while let Value::Array(mut items) = value {
            value = items.pop().unwrap_or(Value::Null);
        }
    }

    #[test]
    fn values_up_to_the_limit_pass_and_read_back() {
        let ok = nested(MAX_JSON_DEPTH);
        let encoded = to_json(&ok).unwrap();
        assert_eq!(encoded, ok);
        assert!(check_depth(&ok).is_ok());
        // What sqlx does when reading the value back.
        let text = serde_json::to_string(&ok).unwrap();
        assert!(serde_json::from_str::<Value>(&text).is_ok());
        let over = nested(MAX_JSON_DEPTH + 1);
        let text = serde_json::to_string(&over).unwrap();
        assert!(
            serde_json::from_str::<Value>(&text).is_err(),
            "serde_json reads one level more than the limit: raise MAX_JSON_DEPTH"
        );
        assert!(matches!(to_json(&over), Err(JsonError::TooDeep)));
        assert!(matches!(check_depth(&over), Err(JsonError::TooDeep)));
        flat_drop(over);
    }

    #[test]
    fn a_very_deep_value_is_refused_without_recursing() {
        // Run on a small stack: an unguarded `to_value` of this overflows it.
        let handle = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                let deep = nested(100_000);
                let encoded = matches!(to_json(&deep), Err(JsonError::TooDeep));
                let checked = matches!(check_depth(&deep), Err(JsonError::TooDeep));
                flat_drop(deep);
                (encoded, checked)
            })
            .unwrap();
        assert_eq!(handle.join().unwrap(), (true, true));
    }

    #[test]
    fn enum_variants_count_their_object_level() {
        #[derive(serde::Serialize)]
        enum E {
            New(Value),
            Tuple(Value, u8),
            Struct { inner: Value },
        }
        // `{"New": [[...]]}` is one level deeper than its content.
        let at_limit = nested(MAX_JSON_DEPTH - 1);
        assert!(to_json(&E::New(at_limit.clone())).is_ok());
        assert!(matches!(
            to_json(&E::New(nested(MAX_JSON_DEPTH))),
            Err(JsonError::TooDeep)
        ));
        // `{"Tuple": [content, 1]}` and `{"Struct": {"inner": content}}` are two deeper.
        let two_below = nested(MAX_JSON_DEPTH - 2);
        assert!(to_json(&E::Tuple(two_below.clone(), 1)).is_ok());
        assert!(to_json(&E::Struct { inner: two_below }).is_ok());
        assert!(matches!(
            to_json(&E::Tuple(at_limit.clone(), 1)),
            Err(JsonError::TooDeep)
        ));
        assert!(matches!(
            to_json(&E::Struct { inner: at_limit }),
            Err(JsonError::TooDeep)
        ));
    }

    #[test]
    fn other_serialize_errors_stay_serde_errors() {
        let mut map = std::collections::HashMap::new();
        map.insert(vec![1u8], 1);
        assert!(matches!(to_json(&map), Err(JsonError::Serde(_))));
        // Options and newtypes add no level.
        assert_eq!(
            to_json(&Some(json!({"a": [1]}))).unwrap(),
            json!({"a": [1]})
        );
    }
}
