//! Derives that bind Rust types to facilities declared in `pgstack.toml`.
//!
//! Each derive reads the spec at compile time (`pgstack.toml` beside the crate's Cargo.toml, or
//! `#[pgstack(spec = "path")]` relative to it) and fails compilation, pointing at the offending
//! attribute or field, when the facility is missing, of another kind, or does not fit the type.
//!
//! ```ignore
//! #[derive(Serialize, Deserialize, Queue)]
//! #[pgstack(queue = "emails")]
//! struct SendEmail { to: String, subject: String }
//! ```
//!
//! This crate is a thin shell: parsing, checking and expansion live in `internals` and the
//! per-derive modules, each returning every error found.

mod cached;
mod embedded;
mod internals;
mod queue;

use proc_macro::TokenStream;

/// Implements `pgstack::queue::Job` for a payload type: `#[pgstack(queue = "name")]`, and
/// optionally `kind = "..."` (default: the type's name) and `spec = "path"`.
#[proc_macro_derive(Queue, attributes(pgstack))]
pub fn derive_queue(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    queue::expand(&input).into()
}

/// Implements `pgstack::cache::Cached` for a value type: `#[pgstack(cache = "name", key =
/// "field")]`, and optionally `ttl = "10m"` (overrides the cache's `default_ttl`), `prefix =
/// "page:"` (prepended to keys) and `spec = "path"`.
#[proc_macro_derive(Cached, attributes(pgstack))]
pub fn derive_cached(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    cached::expand(&input).into()
}

/// Implements `pgstack::vector::Embedded` for a struct: `#[pgstack(collection = "name")]` on
/// it (and optionally `spec = "path"`), `#[pgstack(id)]` on the id field, `#[pgstack(embedding)]`
/// on the embedding (`Vec<f32>`, `Vec<bool>` for `bit`, `SparseVector` for `sparsevec`, or an
/// `Option` of one), every declared field by name, `#[pgstack(skip)]` on fields not stored.
#[proc_macro_derive(Embedded, attributes(pgstack))]
pub fn derive_embedded(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    embedded::expand(&input).into()
}
