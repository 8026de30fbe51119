//! Each facility's runtime definition (`KvDef`, `DocumentDef`, `QueueDef`, `CacheDef`,
//! `RateLimitDef`, `CollectionDef`) as a Rust expression, built here once for everything that
//! writes one: `pgstack-gen`'s accessor modules and the derives' expansions. A value changed
//! here changes both, so the two can never disagree.
//!
//! Paths are absolute (`::pgstack::...`). `Some` and `None` are the prelude's: generated
//! modules define neither, and the derives expand inside a block that imports them.

use proc_macro2::{Literal, TokenStream};
use quote::quote;

use crate::names::{document_field_index, queue_channel};
use crate::{
    Algorithm, BackoffKind, Cache, CatchUp, Distance, Document, Element, FieldType, Kv, Queue,
    RateLimit, ValueType, Vector, VectorIndex,
};

fn num(n: u64) -> Literal {
    Literal::u64_unsuffixed(n)
}

fn some<T: quote::ToTokens>(value: Option<T>) -> TokenStream {
    match value {
        Some(value) => quote!(Some(#value)),
        None => quote!(None),
    }
}

fn value_kind(value: ValueType) -> TokenStream {
    match value {
        ValueType::Jsonb => quote!(::pgstack::ValueKind::Jsonb),
        ValueType::Bytea => quote!(::pgstack::ValueKind::Bytea),
    }
}

/// `::pgstack::kv::KvDef { .. }`.
pub fn kv_def(schema: &str, kv: &Kv) -> TokenStream {
    let (table, value, expiry) = (&kv.name, value_kind(kv.value), kv.expiry);
    quote! {
        ::pgstack::kv::KvDef {
            schema: #schema,
            table: #table,
            value: #value,
            expiry: #expiry,
        }
    }
}

/// `::pgstack::document::DocumentDef { .. }`, one `FieldDef` per declared field.
pub fn document_def(schema: &str, document: &Document) -> TokenStream {
    let table = &document.name;
    let fields = document.fields.iter().map(|field| {
        let (name, unique) = (&field.name, field.unique);
        let index_name = some(document_field_index(table, field));
        quote! {
            ::pgstack::document::FieldDef {
                name: #name,
                unique: #unique,
                index_name: #index_name,
            },
        }
    });
    quote! {
        ::pgstack::document::DocumentDef {
            schema: #schema,
            table: #table,
            fields: &[#(#fields)*],
        }
    }
}

/// `::pgstack::queue::QueueDef { .. }`.
pub fn queue_def(schema: &str, queue: &Queue) -> TokenStream {
    let table = &queue.name;
    let payload = value_kind(queue.payload);
    let visibility = num(queue.visibility_timeout.as_millis());
    let max_attempts = num(u64::from(queue.max_attempts));
    let kind = match queue.backoff.kind {
        BackoffKind::Exponential => quote!(Exponential),
        BackoffKind::Linear => quote!(Linear),
        BackoffKind::Fixed => quote!(Fixed),
    };
    let initial = num(queue.backoff.initial.as_millis());
    let max = num(queue.backoff.max.as_millis());
    let jitter = queue.backoff.jitter;
    let (dead_letter, priorities, unique) = (queue.dead_letter, queue.priorities, queue.unique);
    let groups = queue.groups;
    let channel = some(queue.notify.then(|| queue_channel(schema, table)));
    let archive = some(queue.archive.as_ref().map(|a| {
        let (retention, partition) = (num(a.retention.as_millis()), num(a.partition.as_millis()));
        quote! {
            ::pgstack::queue::ArchiveDef {
                retention_ms: #retention,
                partition_ms: #partition,
            }
        }
    }));
    let schedules = queue.schedules.iter().map(|s| {
        let (name, cron, timezone, kind, payload) =
            (&s.name, &s.cron, &s.timezone, &s.kind, &s.payload);
        let priority = Literal::i16_unsuffixed(s.priority);
        let catch_up = match s.catch_up {
            CatchUp::Skip => quote!(Skip),
            CatchUp::Last => quote!(Last),
        };
        let grace = num(s.grace.as_millis());
        quote! {
            ::pgstack::queue::ScheduleDef {
                name: #name,
                cron: #cron,
                timezone: #timezone,
                kind: #kind,
                payload: #payload,
                priority: #priority,
                catch_up: ::pgstack::queue::CatchUp::#catch_up,
                grace_ms: #grace,
            },
        }
    });
    quote! {
        ::pgstack::queue::QueueDef {
            schema: #schema,
            table: #table,
            payload: #payload,
            visibility_timeout_ms: #visibility,
            max_attempts: #max_attempts,
            backoff: ::pgstack::queue::Backoff {
                kind: ::pgstack::queue::BackoffKind::#kind,
                initial_ms: #initial,
                max_ms: #max,
                jitter: #jitter,
            },
            dead_letter: #dead_letter,
            priorities: #priorities,
            unique: #unique,
            groups: #groups,
            notify_channel: #channel,
            archive: #archive,
            schedules: &[#(#schedules)*],
        }
    }
}

/// `::pgstack::cache::CacheDef { .. }`.
pub fn cache_def(schema: &str, cache: &Cache) -> TokenStream {
    let (table, value) = (&cache.name, value_kind(cache.value));
    let ttl = some(cache.default_ttl.map(|d| num(d.as_millis())));
    let max_entries = some(cache.max_entries.map(num));
    quote! {
        ::pgstack::cache::CacheDef {
            schema: #schema,
            table: #table,
            value: #value,
            default_ttl_ms: #ttl,
            max_entries: #max_entries,
        }
    }
}

/// `::pgstack::rate_limit::RateLimitDef { .. }`.
pub fn rate_limit_def(schema: &str, limit: &RateLimit) -> TokenStream {
    let table = &limit.name;
    let algorithm = match limit.algorithm {
        Algorithm::Gcra => quote!(Gcra),
        Algorithm::FixedWindow => quote!(FixedWindow),
        Algorithm::SlidingWindow => quote!(SlidingWindow),
        Algorithm::TokenBucket => quote!(TokenBucket),
    };
    let (count, period) = (num(limit.limit), num(limit.period.as_millis()));
    let burst = some(limit.burst.map(num));
    quote! {
        ::pgstack::rate_limit::RateLimitDef {
            schema: #schema,
            table: #table,
            algorithm: ::pgstack::rate_limit::Algorithm::#algorithm,
            limit: #count,
            period_ms: #period,
            burst: #burst,
        }
    }
}

/// The runtime's `FieldKind` variant for a declared field type.
pub fn field_kind(ty: FieldType) -> TokenStream {
    let variant = quote::format_ident!("{}", crate::field_kind_variant(ty));
    quote!(::pgstack::vector::FieldKind::#variant)
}

/// `::pgstack::vector::CollectionDef { .. }`.
pub fn collection_def(schema: &str, vector: &Vector) -> TokenStream {
    let table = &vector.name;
    let dimensions = num(u64::from(vector.dimensions));
    let element = match vector.element {
        Element::Vector => quote!(Vector),
        Element::Halfvec => quote!(Halfvec),
        Element::Bit => quote!(Bit),
        Element::Sparsevec => quote!(Sparsevec),
    };
    let distance = match vector.distance {
        Distance::Cosine => quote!(Cosine),
        Distance::L2 => quote!(L2),
        Distance::InnerProduct => quote!(InnerProduct),
        Distance::L1 => quote!(L1),
        Distance::Hamming => quote!(Hamming),
        Distance::Jaccard => quote!(Jaccard),
    };
    let index = match vector.index {
        VectorIndex::Hnsw { ef_search, .. } => {
            let ef_search = num(u64::from(ef_search));
            quote!(::pgstack::vector::IndexDef::Hnsw { ef_search: #ef_search })
        }
        VectorIndex::Ivfflat { lists, probes } => {
            let (lists, probes) = (num(u64::from(lists)), num(u64::from(probes)));
            quote!(::pgstack::vector::IndexDef::IvfFlat { lists: #lists, probes: #probes })
        }
        VectorIndex::None => quote!(::pgstack::vector::IndexDef::None),
    };
    let id = field_kind(vector.id.field_type());
    let fields = vector.fields.iter().map(|f| {
        let (name, kind) = (&f.name, field_kind(f.ty));
        // The partition key has no B-tree: partition pruning serves it.
        let indexed = f.index && vector.partition_by.as_deref() != Some(f.name.as_str());
        quote!(::pgstack::vector::FieldDef { name: #name, kind: #kind, indexed: #indexed },)
    });
    let full_text = some((!vector.full_text.is_empty()).then_some(vector.language.as_str()));
    let text_fields = vector.full_text.iter();
    let partition_by = some(vector.partition_by.as_deref());
    quote! {
        ::pgstack::vector::CollectionDef {
            schema: #schema,
            table: #table,
            dimensions: #dimensions,
            element: ::pgstack::vector::Element::#element,
            distance: ::pgstack::vector::Distance::#distance,
            index: #index,
            id: #id,
            fields: &[#(#fields)*],
            full_text: #full_text,
            text_fields: &[#(#text_fields),*],
            partition_by: #partition_by,
        }
    }
}

/// The Rust type a declared field's value has where a caller passes one (document
/// `Field<V>` and vector `Field<V>` filters): what `find_by` and `eq` bind.
pub fn field_value_type(ty: FieldType) -> TokenStream {
    match ty {
        FieldType::Text => quote!(String),
        FieldType::Bigint => quote!(i64),
        FieldType::Integer => quote!(i32),
        FieldType::Boolean => quote!(bool),
        FieldType::Double => quote!(f64),
        FieldType::Timestamptz => {
            quote!(::pgstack::chrono::DateTime<::pgstack::chrono::FixedOffset>)
        }
        FieldType::Uuid => quote!(::pgstack::sea_orm::prelude::Uuid),
        FieldType::Jsonb => quote!(::pgstack::serde_json::Value),
    }
}
