//! `#[derive(Queue)]`: implements `pgstack::queue::Job` with the queue's definition read from
//! the spec, so typed jobs need no generated module to be in scope.

use pgstack_spec::{FacilityKind, FacilityRef, ValueType};
use proc_macro2::TokenStream;
use quote::quote;
use syn::DeriveInput;

use crate::internals::{attr, ctxt::Ctxt, spec};

pub fn expand(input: &DeriveInput) -> TokenStream {
    let mut cx = Ctxt::default();
    let entries = attr::entries(
        &mut cx,
        &input.attrs,
        &["queue", "kind", "spec"],
        "a #[derive(Queue)] type",
    );
    let queue = attr::string(&mut cx, &entries, "queue");
    let spec_path = attr::string(&mut cx, &entries, "spec");
    let kind = match attr::string(&mut cx, &entries, "kind") {
        Some(lit) if lit.value().is_empty() => {
            cx.error_spanned_by(lit, "`kind` must not be empty");
            String::new()
        }
        Some(lit) => lit.value(),
        None => input.ident.to_string(),
    };
    if queue.is_none() && !entries.iter().any(|e| e.key == "queue") {
        cx.error_spanned_by(
            &input.ident,
            "#[derive(Queue)] needs #[pgstack(queue = \"...\")] naming a [[queue]] in pgstack.toml",
        );
    }

    let mut definition = None;
    if let Some(queue_name) = queue
        && let Some(loaded) = spec::load(&mut cx, spec_path, queue_name.span())
        && let Some(FacilityRef::Queue(q)) =
            spec::facility(&mut cx, &loaded.spec, queue_name, FacilityKind::Queue)
    {
        if q.payload == ValueType::Bytea {
            cx.error_spanned_by(
                queue_name,
                format!(
                    "queue `{}` stores bytea payloads; #[derive(Queue)] serializes jobs as JSON, \
                     so set `payload = \"jsonb\"` or enqueue bytes through the generated QUEUE",
                    q.name
                ),
            );
        } else {
            definition = Some((
                pgstack_spec::defs::queue_def(&loaded.spec.project.schema, q),
                loaded.track,
            ));
        }
    }

    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let private = quote!(::pgstack::__private);
    match definition {
        Some((def, track)) if !cx.has_errors() => quote! {
            const _: () = {
                use ::core::option::Option::{None, Some};
                #track
                static QUEUE: #private::Queue = #private::Queue::new(#def);

                #[automatically_derived]
                impl #impl_generics #private::Job for #name #ty_generics #where_clause {
                    const KIND: &'static str = #kind;

                    fn queue() -> &'static #private::Queue {
                        &QUEUE
                    }
                }
            };
        },
        _ => {
            // Report every error, and implement the trait anyway so code using the type does
            // not add a second wave of errors. This body never runs: the build fails.
            let errors = cx.into_compile_errors();
            quote! {
                #errors
                const _: () = {
                    #[automatically_derived]
                    impl #impl_generics #private::Job for #name #ty_generics #where_clause {
                        const KIND: &'static str = #kind;

                        fn queue() -> &'static #private::Queue {
                            ::core::panic!("#[derive(Queue)] reported errors at compile time")
                        }
                    }
                };
            }
        }
    }
}
