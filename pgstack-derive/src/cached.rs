//! `#[derive(Cached)]`: implements `pgstack::cache::Cached`, with the cache's definition read
//! from the spec and the key taken from a named field.

use pgstack_spec::{FacilityKind, FacilityRef, SpecDuration, ValueType};
use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::{Data, DeriveInput, Fields};

use crate::internals::{attr, ctxt::Ctxt, spec};

pub fn expand(input: &DeriveInput) -> TokenStream {
    let mut cx = Ctxt::default();
    let entries = attr::entries(
        &mut cx,
        &input.attrs,
        &["cache", "key", "ttl", "prefix", "spec"],
        "a #[derive(Cached)] type",
    );
    let cache = attr::string(&mut cx, &entries, "cache");
    let key = attr::string(&mut cx, &entries, "key");
    let spec_path = attr::string(&mut cx, &entries, "spec");
    let prefix = attr::string(&mut cx, &entries, "prefix")
        .map(|l| l.value())
        .unwrap_or_default();
    if cache.is_none() && !entries.iter().any(|e| e.key == "cache") {
        cx.error_spanned_by(
            &input.ident,
            "#[derive(Cached)] needs #[pgstack(cache = \"...\", key = \"field\")] naming a [[cache]] in pgstack.toml",
        );
    }

    // The key: a named field whose value (through Display) is the cache key.
    let fields = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(named) => Some(&named.named),
            _ => None,
        },
        _ => None,
    };
    let mut key_field = None;
    match (fields, key) {
        (None, _) => cx.error_spanned_by(
            &input.ident,
            "#[derive(Cached)] needs a struct with named fields, one of which is the key",
        ),
        (Some(_), None) => {
            if !entries.iter().any(|e| e.key == "key") {
                cx.error_spanned_by(
                    &input.ident,
                    "#[derive(Cached)] needs #[pgstack(key = \"field\")] naming the field that holds the key",
                );
            }
        }
        (Some(fields), Some(key)) => {
            let wanted = key.value();
            match fields
                .iter()
                .find(|f| f.ident.as_ref().is_some_and(|i| *i == wanted))
            {
                Some(field) => key_field = field.ident.clone(),
                None => {
                    let names: Vec<String> = fields
                        .iter()
                        .filter_map(|f| f.ident.as_ref().map(|i| format!("`{i}`")))
                        .collect();
                    cx.error_spanned_by(
                        key,
                        format!(
                            "`{}` has no field `{wanted}`; its fields: {}",
                            input.ident,
                            names.join(", ")
                        ),
                    );
                }
            }
        }
    }

    let expiry = match attr::string(&mut cx, &entries, "ttl") {
        Some(lit) => match SpecDuration::parse(&lit.value()) {
            Ok(d) if d.as_millis() > 0 => {
                let ms = d.as_millis();
                quote!(::pgstack::__private::Expiry::After(::core::time::Duration::from_millis(#ms)))
            }
            Ok(_) => {
                cx.error_spanned_by(lit, "`ttl` must be longer than zero");
                quote!(::pgstack::__private::Expiry::Default)
            }
            Err(message) => {
                cx.error_spanned_by(lit, format!("`ttl`: {message}"));
                quote!(::pgstack::__private::Expiry::Default)
            }
        },
        None => quote!(::pgstack::__private::Expiry::Default),
    };

    let mut definition = None;
    if let Some(cache_name) = cache
        && let Some(loaded) = spec::load(&mut cx, spec_path, cache_name.span())
        && let Some(FacilityRef::Cache(c)) =
            spec::facility(&mut cx, &loaded.spec, cache_name, FacilityKind::Cache)
    {
        if c.value == ValueType::Bytea {
            cx.error_spanned_by(
                cache_name,
                format!(
                    "cache `{}` stores bytea values; #[derive(Cached)] serializes values as JSON, \
                     so set `value = \"jsonb\"` or use the generated CACHE's *_bytes methods",
                    c.name
                ),
            );
        } else {
            let def = pgstack_spec::defs::cache_def(&loaded.spec.project.schema, c);
            definition = Some((def, loaded.track));
        }
    }

    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let private = quote!(::pgstack::__private);
    let key_field = key_field.unwrap_or_else(|| format_ident!("key"));
    match definition {
        Some((def, track)) if !cx.has_errors() => quote! {
            const _: () = {
                use ::core::option::Option::{None, Some};
                #track
                static CACHE: #private::Cache = #private::Cache::new(#def);

                #[automatically_derived]
                impl #impl_generics #private::Cached for #name #ty_generics #where_clause {
                    const EXPIRY: #private::Expiry = #expiry;

                    fn cache() -> &'static #private::Cache {
                        &CACHE
                    }

                    fn key_for(id: &str) -> ::std::string::String {
                        ::std::format!("{}{}", #prefix, id)
                    }

                    fn cache_key(&self) -> ::std::string::String {
                        Self::key_for(&::std::string::ToString::to_string(&self.#key_field))
                    }
                }
            };
        },
        _ => {
            let errors = cx.into_compile_errors();
            quote! {
                #errors
                const _: () = {
                    #[automatically_derived]
                    impl #impl_generics #private::Cached for #name #ty_generics #where_clause {
                        const EXPIRY: #private::Expiry = #private::Expiry::Default;

                        fn cache() -> &'static #private::Cache {
                            ::core::panic!("#[derive(Cached)] reported errors at compile time")
                        }

                        fn key_for(id: &str) -> ::std::string::String {
                            ::std::string::ToString::to_string(id)
                        }

                        fn cache_key(&self) -> ::std::string::String {
                            ::std::string::String::new()
                        }
                    }
                };
            }
        }
    }
}
