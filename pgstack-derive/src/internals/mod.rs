//! Shared machinery of the derives: error collection, attribute parsing, spec loading.

pub mod attr;
pub mod ctxt;
pub mod spec;
