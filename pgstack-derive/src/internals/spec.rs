//! Finding and reading `pgstack.toml` at compile time.
//!
//! Lookup: `#[pgstack(spec = "path")]` relative to the crate's manifest folder, else the
//! `PGSTACK_SPEC` environment variable, else `pgstack.toml` in the manifest folder. The spec's
//! bytes are included in the expansion so cargo rebuilds the crate when the spec changes.

use std::path::PathBuf;

use pgstack_spec::{FacilityKind, FacilityRef, Spec};
use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::LitStr;

use super::ctxt::Ctxt;

pub struct LoadedSpec {
    pub spec: Spec,
    /// `const _: &[u8] = include_bytes!("...");`, so a spec change rebuilds the crate.
    pub track: TokenStream,
}

pub fn load(cx: &mut Ctxt, explicit: Option<&LitStr>, span: Span) -> Option<LoadedSpec> {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    let path = match (explicit, std::env::var_os("PGSTACK_SPEC")) {
        (Some(lit), _) => match &manifest {
            Some(dir) => dir.join(lit.value()),
            None => PathBuf::from(lit.value()),
        },
        (None, Some(env)) => PathBuf::from(env),
        (None, None) => match &manifest {
            Some(dir) => dir.join("pgstack.toml"),
            None => PathBuf::from("pgstack.toml"),
        },
    };
    let at = explicit.map_or(span, LitStr::span);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            // Name the path as the user wrote it: absolute paths differ between machines.
            let shown = match explicit {
                Some(lit) => format!("`{}` (relative to the crate's Cargo.toml)", lit.value()),
                None => format!("`{}`", path.display()),
            };
            cx.error_at(
                at,
                format!(
                    "cannot read the pgstack spec {shown}: {}; put pgstack.toml beside \
                     Cargo.toml or name it with #[pgstack(spec = \"path/to/pgstack.toml\")]",
                    e.kind()
                ),
            );
            return None;
        }
    };
    let display = path.display().to_string();
    match Spec::parse(&display, &text) {
        Ok(spec) => {
            let literal = LitStr::new(&display, Span::call_site());
            Some(LoadedSpec {
                spec,
                track: quote! { const _: &[u8] = ::core::include_bytes!(#literal); },
            })
        }
        Err(errors) => {
            cx.error_at(
                at,
                format!("the pgstack spec is invalid; run `pgstack-gen check`:\n{errors}"),
            );
            None
        }
    }
}

/// The facility called `name` of kind `kind`, or an error naming what exists instead.
pub fn facility<'a>(
    cx: &mut Ctxt,
    spec: &'a Spec,
    name: &LitStr,
    kind: FacilityKind,
) -> Option<FacilityRef<'a>> {
    let wanted = name.value();
    match spec.facility(&wanted) {
        Some(found) if found.kind() == kind => Some(found),
        Some(found) => {
            cx.error_spanned_by(
                name,
                format!(
                    "`{wanted}` is a [[{}]] in pgstack.toml, not a [[{}]]",
                    found.kind().key(),
                    kind.key()
                ),
            );
            None
        }
        None => {
            let same_kind: Vec<String> = spec
                .facilities()
                .filter(|f| f.kind() == kind)
                .map(|f| format!("`{}`", f.name()))
                .collect();
            let known = if same_kind.is_empty() {
                format!("it declares no [[{}]]", kind.key())
            } else {
                format!(
                    "its [[{}]] facilities: {}",
                    kind.key(),
                    same_kind.join(", ")
                )
            };
            cx.error_spanned_by(
                name,
                format!("pgstack.toml has no facility named `{wanted}`; {known}"),
            );
            None
        }
    }
}
