//! `#[derive(Embedded)]`: implements `pgstack::vector::Embedded` for a struct whose fields are
//! the collection's id, embedding and declared metadata fields.
//!
//! Names are checked here, against the spec; types are checked by the compiler through marker
//! traits (`pgstack::vector::check`), each assertion spanned on the field's type so the error
//! points at it.

use pgstack_spec::{Element, FacilityKind, FacilityRef, IdType, Vector};
use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields};

use crate::internals::{attr, ctxt::Ctxt, spec};

/// What a struct field is to the collection.
enum Role {
    Id,
    Embedding,
    Field(String),
    Skip,
}

pub fn expand(input: &DeriveInput) -> TokenStream {
    let mut cx = Ctxt::default();
    let entries = attr::entries(
        &mut cx,
        &input.attrs,
        &["collection", "spec"],
        "a #[derive(Embedded)] type",
    );
    let collection = attr::string(&mut cx, &entries, "collection");
    let spec_path = attr::string(&mut cx, &entries, "spec");
    if collection.is_none() && !entries.iter().any(|e| e.key == "collection") {
        cx.error_spanned_by(
            &input.ident,
            "#[derive(Embedded)] needs #[pgstack(collection = \"...\")] naming a [[vector]] in pgstack.toml",
        );
    }
    let fields = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(named) => Some(&named.named),
            _ => None,
        },
        _ => None,
    };
    let Some(fields) = fields else {
        cx.error_spanned_by(
            &input.ident,
            "#[derive(Embedded)] needs a struct with named fields: an id, an embedding and the collection's fields",
        );
        return fallback(input, cx);
    };

    // Roles from field attributes.
    let mut roles = Vec::new();
    for field in fields {
        let entries = attr::entries(
            &mut cx,
            &field.attrs,
            &["id", "embedding", "skip"],
            "a field of a #[derive(Embedded)] type",
        );
        for entry in &entries {
            if entry.value.is_some() {
                cx.error_at(
                    entry.span,
                    format!(
                        "`{}` takes no value: write #[pgstack({})]",
                        entry.key, entry.key
                    ),
                );
            }
        }
        if entries.len() > 1 {
            cx.error_spanned_by(
                field,
                "a field is at most one of #[pgstack(id)], #[pgstack(embedding)], #[pgstack(skip)]",
            );
        }
        let name = field
            .ident
            .as_ref()
            .map(|i| i.to_string())
            .unwrap_or_default();
        let role = match entries.first().map(|e| e.key.as_str()) {
            Some("id") => Role::Id,
            Some("embedding") => Role::Embedding,
            Some("skip") => Role::Skip,
            _ => Role::Field(name),
        };
        roles.push((field, role));
    }
    for (what, attr_name) in [("id", "id"), ("embedding", "embedding")] {
        let marked: Vec<_> = roles
            .iter()
            .filter(|(_, r)| match r {
                Role::Id => what == "id",
                Role::Embedding => what == "embedding",
                _ => false,
            })
            .collect();
        match marked.len() {
            0 => cx.error_spanned_by(
                &input.ident,
                format!("mark the field holding the row's {what} with #[pgstack({attr_name})]"),
            ),
            1 => {}
            _ => cx.error_spanned_by(
                marked[1].0,
                format!("only one field can be #[pgstack({attr_name})]"),
            ),
        }
    }

    // The collection, and names checked against its fields.
    let mut vector: Option<(Vector, String, TokenStream)> = None;
    if let Some(name) = collection
        && let Some(loaded) = spec::load(&mut cx, spec_path, name.span())
        && let Some(FacilityRef::Vector(v)) =
            spec::facility(&mut cx, &loaded.spec, name, FacilityKind::Vector)
    {
        let declared: Vec<String> = v.fields.iter().map(|f| format!("`{}`", f.name)).collect();
        for (field, role) in &roles {
            if let Role::Field(fname) = role
                && v.field(fname).is_none()
            {
                cx.error_spanned_by(
                    &field.ident,
                    format!(
                        "`{fname}` is not a field of collection `{}`; its [vector.fields]: {}. Mark \
                         fields that are not stored with #[pgstack(skip)]",
                        v.name,
                        if declared.is_empty() { "none".to_string() } else { declared.join(", ") }
                    ),
                );
            }
        }
        let missing: Vec<String> = v
            .fields
            .iter()
            .filter(|f| {
                !roles
                    .iter()
                    .any(|(_, r)| matches!(r, Role::Field(n) if *n == f.name))
            })
            .map(|f| format!("`{}: {}`", f.name, f.ty.name()))
            .collect();
        if !missing.is_empty() {
            cx.error_spanned_by(
                &input.ident,
                format!(
                    "`{}` lacks fields that collection `{}` declares: {}; add them (an `Option` \
                     when the value may be missing), so an upsert never erases them",
                    input.ident,
                    v.name,
                    missing.join(", ")
                ),
            );
        }
        let schema = loaded.spec.project.schema.clone();
        vector = Some((v.clone(), schema, loaded.track));
    }
    let Some((v, schema, track)) = vector else {
        return fallback(input, cx);
    };
    if cx.has_errors() {
        return fallback(input, cx);
    }
    let def = pgstack_spec::defs::collection_def(&schema, &v);

    let check = quote!(::pgstack::vector::check);
    let mut assertions = Vec::new();
    let mut to_record = Vec::new();
    let mut from_record = Vec::new();
    let mut required = quote!(false);
    let collection_name = &v.name;
    for (field, role) in &roles {
        let Some(ident) = &field.ident else { continue };
        let ty = &field.ty;
        let key = ident.to_string();
        match role {
            Role::Id => {
                let marker = format_ident!(
                    "{}",
                    match v.id {
                        IdType::Bigint => "Bigint",
                        IdType::Text => "Text",
                        IdType::Uuid => "Uuid",
                    }
                );
                assertions
                    .push(quote_spanned! {ty.span()=> #check::id::<#ty, #check::#marker>(); });
                to_record.push(
                    quote! { record.id = #check::to_json(&self.#ident, #collection_name, "id")?; },
                );
                from_record.push(quote! { #ident: #check::from_json(::core::mem::take(&mut record.id), #collection_name, "id")?, });
            }
            Role::Embedding => {
                let marker = format_ident!(
                    "{}",
                    match v.element {
                        Element::Vector | Element::Halfvec => "Dense",
                        Element::Bit => "Bits",
                        Element::Sparsevec => "Sparse",
                    }
                );
                assertions.push(
                    quote_spanned! {ty.span()=> #check::embedding::<#ty, #check::#marker>(); },
                );
                // Spanned on the type, so a type that is no embedding is reported there.
                to_record.push(quote_spanned! {ty.span()=> record.embedding = #check::to_embedding::<#ty>(&self.#ident); });
                from_record.push(quote_spanned! {ty.span()=> #ident: #check::from_embedding::<#ty>(record.embedding.take(), #collection_name)?, });
                // Syntactic: an `Option<_>` field may lack an embedding; any other type is
                // required, so typed searches select it (an alias of `Option` only costs
                // fetching embeddings it could have skipped).
                let optional = matches!(ty, syn::Type::Path(p)
                    if p.path.segments.last().is_some_and(|s| s.ident == "Option"));
                required = if optional {
                    quote!(false)
                } else {
                    quote!(true)
                };
            }
            Role::Field(name) => {
                let Some(declared) = v.field(name) else {
                    continue;
                };
                let marker = format_ident!("{}", pgstack_spec::field_kind_variant(declared.ty));
                assertions
                    .push(quote_spanned! {ty.span()=> #check::field::<#ty, #check::#marker>(); });
                to_record.push(quote! {
                    record.fields.insert(::std::string::String::from(#key), #check::to_json(&self.#ident, #collection_name, #key)?);
                });
                from_record.push(quote! {
                    #ident: #check::from_json(record.fields.remove(#key).unwrap_or_default(), #collection_name, #key)?,
                });
            }
            Role::Skip => {
                from_record.push(quote! { #ident: ::core::default::Default::default(), });
            }
        }
    }

    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let private = quote!(::pgstack::__private);
    quote! {
        const _: () = {
            use ::core::option::Option::{None, Some};
            #track
            static COLLECTION: #private::Collection = #private::Collection::new(#def);

            #[allow(dead_code)]
            fn __pgstack_field_types() {
                #(#assertions)*
            }

            #[automatically_derived]
            impl #impl_generics #private::Embedded for #name #ty_generics #where_clause {
                fn collection() -> &'static #private::Collection {
                    &COLLECTION
                }

                fn to_record(&self) -> ::pgstack::Result<#private::Record> {
                    let mut record = #private::Record::new(::pgstack::serde_json::Value::Null);
                    #(#to_record)*
                    ::core::result::Result::Ok(record)
                }

                fn from_record(mut record: #private::Record) -> ::pgstack::Result<Self> {
                    ::core::result::Result::Ok(Self {
                        #(#from_record)*
                    })
                }

                fn embedding_required() -> bool {
                    #required
                }
            }
        };
    }
}

/// Errors, plus an impl that keeps the rest of the crate type-checking.
fn fallback(input: &DeriveInput, cx: Ctxt) -> TokenStream {
    let errors = cx.into_compile_errors();
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let private = quote!(::pgstack::__private);
    quote! {
        #errors
        const _: () = {
            #[automatically_derived]
            impl #impl_generics #private::Embedded for #name #ty_generics #where_clause {
                fn collection() -> &'static #private::Collection {
                    ::core::panic!("#[derive(Embedded)] reported errors at compile time")
                }
                fn to_record(&self) -> ::pgstack::Result<#private::Record> {
                    ::core::panic!("#[derive(Embedded)] reported errors at compile time")
                }
                fn from_record(_: #private::Record) -> ::pgstack::Result<Self> {
                    ::core::panic!("#[derive(Embedded)] reported errors at compile time")
                }
            }
        };
    }
}
