//! Document facility against a real PostgreSQL: CRUD, optimistic concurrency, server-side
//! patches, containment and declared-field queries, pagination, typed generated columns.

use pgstack::Error;
use pgstack::document::Doc;
use pgstack_tests::TestDb;
use pgstack_tests::db::{notes, profiles};
use sea_orm::TransactionTrait;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Address {
    city: String,
    country: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    email: String,
    name: String,
    address: Address,
    #[serde(default)]
    age: Option<i64>,
}

fn profile(email: &str, country: &str, age: i64) -> Profile {
    Profile {
        email: email.to_string(),
        name: email.split('@').next().unwrap_or("").to_string(),
        address: Address {
            city: "Somewhere".to_string(),
            country: country.to_string(),
        },
        age: Some(age),
    }
}

#[tokio::test]
async fn insert_get_replace_delete() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    let store = &profiles::STORE;

    let ada = profile("ada@example.com", "GB", 36);
    let meta = store.insert(db, &ada).await.unwrap();
    assert_eq!(meta.version, 1);
    let doc: Doc<Profile> = store.get(db, meta.id).await.unwrap().unwrap();
    assert_eq!(doc.doc, ada);
    assert_eq!((doc.id, doc.version), (meta.id, 1));
    assert_eq!(doc.created_at, meta.created_at);

    let mut older = ada.clone();
    older.age = Some(37);
    assert_eq!(store.replace(db, meta.id, 1, &older).await.unwrap(), 2);
    // A writer still holding version 1 loses, and learns the current version.
    match store.replace(db, meta.id, 1, &ada).await {
        Err(Error::Conflict {
            expected, actual, ..
        }) => assert_eq!((expected, actual), (1, Some(2))),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let doc: Doc<Profile> = store.get(db, meta.id).await.unwrap().unwrap();
    assert_eq!(doc.doc.age, Some(37));
    assert!(doc.updated_at >= doc.created_at);

    assert!(store.delete(db, meta.id).await.unwrap());
    assert!(!store.delete(db, meta.id).await.unwrap());
    assert!(
        store
            .get::<Profile, _>(db, meta.id)
            .await
            .unwrap()
            .is_none()
    );
    match store.replace(db, meta.id, 2, &ada).await {
        Err(Error::Conflict { actual, .. }) => assert_eq!(actual, None),
        other => panic!("expected a conflict on a deleted document, got {other:?}"),
    }
}

#[tokio::test]
async fn concurrent_replace_has_exactly_one_winner() {
    let t = TestDb::migrated().await;
    let meta = profiles::STORE
        .insert(&t.conn, &profile("race@example.com", "FR", 1))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..12 {
        let db = t.conn.clone();
        tasks.push(tokio::spawn(async move {
            let p = profile("race@example.com", "FR", 100 + i);
            profiles::STORE.replace(&db, meta.id, 1, &p).await
        }));
    }
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(v) => {
                assert_eq!(v, 2);
                wins += 1;
            }
            Err(Error::Conflict { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(wins, 1);
}

#[tokio::test]
async fn patch_merge_and_patch_set_run_on_the_server() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    let store = &notes::STORE;
    let meta = store
        .insert(
            db,
            &json!({"title": "t", "meta": {"a": 1, "b": 2}, "tags": ["x", "y"]}),
        )
        .await
        .unwrap();

    // RFC 7386: nested objects merge, null removes, arrays and scalars replace.
    let v = store
        .patch_merge(
            db,
            meta.id,
            &json!({"meta": {"b": null, "c": 3}, "tags": ["z"], "new": true}),
        )
        .await
        .unwrap();
    assert_eq!(v, Some(2));
    let doc: Doc<serde_json::Value> = store.get(db, meta.id).await.unwrap().unwrap();
    assert_eq!(
        doc.doc,
        json!({"title": "t", "meta": {"a": 1, "c": 3}, "tags": ["z"], "new": true})
    );

    // Set at a path, creating the missing objects on the way.
    store
        .patch_set(db, meta.id, &["deep", "er", "est"], &json!(42))
        .await
        .unwrap();
    store
        .patch_set(db, meta.id, &["tags", "0"], &json!("first"))
        .await
        .unwrap();
    let v = store
        .patch_set(db, meta.id, &["meta", "a"], &json!(null))
        .await
        .unwrap();
    assert_eq!(v, Some(5));
    let doc: Doc<serde_json::Value> = store.get(db, meta.id).await.unwrap().unwrap();
    assert_eq!(
        doc.doc,
        json!({
            "title": "t",
            "meta": {"a": null, "c": 3},
            "tags": ["first"],
            "new": true,
            "deep": {"er": {"est": 42}}
        })
    );

    // Patching a missing document reports it.
    assert_eq!(
        store
            .patch_merge(db, 999_999, &json!({"a": 1}))
            .await
            .unwrap(),
        None
    );
    let err = store
        .patch_set(db, meta.id, &[], &json!(1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
}

#[tokio::test]
async fn concurrent_patches_do_not_lose_updates() {
    let t = TestDb::migrated().await;
    let meta = notes::STORE.insert(&t.conn, &json!({})).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let db = t.conn.clone();
        tasks.push(tokio::spawn(async move {
            notes::STORE
                .patch_merge(&db, meta.id, &json!({ format!("k{i}"): i }))
                .await
                .unwrap()
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let doc: Doc<serde_json::Value> = notes::STORE.get(&t.conn, meta.id).await.unwrap().unwrap();
    assert_eq!(doc.doc.as_object().map(|o| o.len()), Some(20));
    assert_eq!(doc.version, 21);
}

#[tokio::test]
async fn declared_fields_are_typed_indexed_columns() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    let store = &profiles::STORE;
    for (i, country) in ["GB", "FR", "GB", "DE", "GB"].iter().enumerate() {
        store
            .insert(
                db,
                &profile(&format!("u{i}@example.com"), country, 20 + i as i64),
            )
            .await
            .unwrap();
    }
    let gb = store
        .find_by::<Profile, _, _>(db, profiles::fields::COUNTRY, "GB", None, 10)
        .await
        .unwrap();
    assert_eq!(gb.docs.len(), 3);
    assert!(gb.docs.iter().all(|d| d.doc.address.country == "GB"));
    assert!(gb.docs.windows(2).all(|w| w[0].id < w[1].id));

    let by_age = store
        .find_by::<Profile, _, _>(db, profiles::fields::AGE, 22i64, None, 10)
        .await
        .unwrap();
    assert_eq!(by_age.docs.len(), 1);
    assert_eq!(by_age.docs[0].doc.email, "u2@example.com");

    let one = store
        .get_by::<Profile, _, _>(db, profiles::fields::EMAIL, "u3@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(one.doc.address.country, "DE");
    assert!(
        store
            .get_by::<Profile, _, _>(db, profiles::fields::EMAIL, "nobody@example.com")
            .await
            .unwrap()
            .is_none()
    );

    // Every field type is extracted and cast by PostgreSQL itself.
    store
        .insert(
            db,
            &json!({
                "email": "typed@example.com",
                "stats": {"score": 4.5},
                "active": true,
                "signed_up_at": "2026-01-02T03:04:05+02:00",
                "account_id": "2f1b6c1e-8d7a-4c55-9a0e-2f4b0c3d9e11",
                "tags": ["a", "b"],
                "visits": 7
            }),
        )
        .await
        .unwrap();
    let row = t
        .column(
            "SELECT concat_ws('|', score, active, signed_up AT TIME ZONE 'UTC', account, tags, visits)
             FROM profiles WHERE email = 'typed@example.com'",
        )
        .await;
    assert_eq!(
        row,
        vec!["4.5|t|2026-01-02 01:04:05|2f1b6c1e-8d7a-4c55-9a0e-2f4b0c3d9e11|[\"a\", \"b\"]|7"]
    );
    let signed_up = chrono::DateTime::parse_from_rfc3339("2026-01-02T01:04:05Z").unwrap();
    let found = store
        .find_by::<serde_json::Value, _, _>(db, profiles::fields::SIGNED_UP, signed_up, None, 5)
        .await
        .unwrap();
    assert_eq!(found.docs.len(), 1);

    // A value of the wrong type for a declared field is refused by the database.
    let err = store
        .insert(db, &json!({"email": "bad@example.com", "age": "old"}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("bigint"), "{err}");

    // The indexes exist with the declared kinds.
    let indexes = t
        .column(
            "SELECT indexdef::text FROM pg_indexes WHERE tablename = 'profiles' ORDER BY indexname",
        )
        .await;
    let joined = indexes.join("\n");
    assert!(
        joined.contains(
            "CREATE UNIQUE INDEX profiles_email_key ON public.profiles USING btree (email)"
        ),
        "{joined}"
    );
    assert!(
        joined
            .contains("CREATE INDEX profiles_country_idx ON public.profiles USING btree (country)"),
        "{joined}"
    );
    assert!(
        joined.contains("USING gin (doc jsonb_path_ops)"),
        "{joined}"
    );
}

#[tokio::test]
async fn unique_fields_reject_duplicates_by_name() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    let store = &profiles::STORE;
    let first = store
        .insert(db, &profile("dup@example.com", "GB", 1))
        .await
        .unwrap();
    let err = store
        .insert(db, &profile("dup@example.com", "FR", 2))
        .await
        .unwrap_err();
    match &err {
        Error::Duplicate { field, .. } => assert_eq!(field, "email"),
        other => panic!("expected a duplicate error, got {other}"),
    }
    let second = store
        .insert(db, &profile("other@example.com", "FR", 2))
        .await
        .unwrap();
    let err = store
        .patch_merge(db, second.id, &json!({"email": "dup@example.com"}))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Duplicate { .. }), "{err}");
    assert!(
        store
            .get::<Profile, _>(db, first.id)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn containment_queries_and_pagination() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    for i in 0..30 {
        notes::STORE
            .insert(
                db,
                &json!({"n": i, "kind": if i % 3 == 0 { "fizz" } else { "plain" }, "tags": [format!("t{}", i % 5)]}),
            )
            .await
            .unwrap();
    }
    let fizz = notes::STORE
        .find_containing::<serde_json::Value, _, _>(db, &json!({"kind": "fizz"}), None, 100)
        .await
        .unwrap();
    assert_eq!(fizz.docs.len(), 10);
    let tagged = notes::STORE
        .find_containing::<serde_json::Value, _, _>(db, &json!({"tags": ["t2"]}), None, 100)
        .await
        .unwrap();
    assert_eq!(tagged.docs.len(), 6);

    // Keyset pages cover every document exactly once, in id order.
    let mut ids = Vec::new();
    let mut after = None;
    loop {
        let page = notes::STORE
            .list::<serde_json::Value, _>(db, after, 7)
            .await
            .unwrap();
        ids.extend(page.docs.iter().map(|d| d.id));
        match page.next_cursor {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    assert_eq!(ids.len(), 30);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));

    // Containment pages the same way.
    let first = notes::STORE
        .find_containing::<serde_json::Value, _, _>(db, &json!({"kind": "plain"}), None, 15)
        .await
        .unwrap();
    let rest = notes::STORE
        .find_containing::<serde_json::Value, _, _>(
            db,
            &json!({"kind": "plain"}),
            first.next_cursor,
            15,
        )
        .await
        .unwrap();
    assert_eq!(first.docs.len() + rest.docs.len(), 20);
    assert!(rest.next_cursor.is_none());
}

#[tokio::test]
async fn documents_must_be_objects_and_join_transactions() {
    let t = TestDb::migrated().await;
    let db = &t.conn;
    let err = notes::STORE.insert(db, &json!([1, 2])).await.unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
    assert!(err.to_string().contains("found an array"), "{err}");
    // The table enforces it too, for writes that bypass the accessors.
    let direct =
        sea_orm::ConnectionTrait::execute_unprepared(db, "INSERT INTO notes (doc) VALUES ('[1]')")
            .await;
    assert!(
        direct
            .unwrap_err()
            .to_string()
            .contains("notes_doc_is_object")
    );

    let txn = db.begin().await.unwrap();
    let meta = notes::STORE.insert(&txn, &json!({"a": 1})).await.unwrap();
    txn.rollback().await.unwrap();
    assert!(
        notes::STORE
            .get::<serde_json::Value, _>(db, meta.id)
            .await
            .unwrap()
            .is_none()
    );
}
