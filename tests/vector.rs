//! Vector collections against the real PostgreSQL with pgvector: writes, reads, recall,
//! filtered search, hybrid search, tenant partitions, element types, the typed derive and the
//! embedding pipeline. Each test has a database of its own with the fixture migrations.

use pgstack::Error;
use pgstack::vector::{
    BuildOptions, Embedded, Embedder, Embedding, EmbeddingPipeline, Filter, HashEmbedder, Hybrid,
    Key, Record, Search, SparseVector, Strategy,
};
use pgstack_tests::TestDb;
use pgstack_tests::db::{articles, fingerprints, images, jobs, tenant_docs, terms};
use sea_orm::TransactionTrait;
use serde_json::json;

/// Deterministic pseudo-random numbers (splitmix64), so data is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// `n` embedding-like vectors: 40 topics in a 24-dimensional latent space, projected to
/// `dims` dimensions with 2% noise and normalised (real embeddings have a low intrinsic
/// dimension; uniform noise in every dimension would not be like them).
fn clustered(n: usize, dims: usize, seed: u64) -> Vec<Vec<f32>> {
    let latent = 24.min(dims);
    let mut rng = Rng(0x5eed);
    let centres: Vec<Vec<f32>> = (0..40)
        .map(|_| (0..latent).map(|_| rng.unit()).collect())
        .collect();
    let projection: Vec<Vec<f32>> = (0..latent)
        .map(|_| (0..dims).map(|_| rng.unit()).collect())
        .collect();
    let mut rng = Rng(seed);
    (0..n)
        .map(|_| {
            let c = &centres[rng.next() as usize % centres.len()];
            let point: Vec<f32> = c.iter().map(|x| x + 0.5 * rng.unit()).collect();
            let v: Vec<f32> = (0..dims)
                .map(|j| {
                    point
                        .iter()
                        .zip(&projection)
                        .map(|(p, row)| p * row[j])
                        .sum::<f32>()
                        + 0.02 * rng.unit()
                })
                .collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter().map(|x| x / norm).collect()
        })
        .collect()
}

fn cosine_distance(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    1.0 - dot / (na * nb)
}

fn ids(hits: &[pgstack::vector::Hit<Record>]) -> Vec<i64> {
    hits.iter()
        .map(|h| h.item.id.as_i64().unwrap_or(-1))
        .collect()
}

/// 20,000 articles, category `i % 100` (each category is 1% of the rows).
async fn load_articles(db: &TestDb) -> Vec<Vec<f32>> {
    let vectors = clustered(20_000, 32, 7);
    let records: Vec<Record> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            Record::new(i as i64)
                .embedding(v.clone())
                .field("title", format!("article {i}"))
                .field("category", (i % 100) as i64)
        })
        .collect();
    let loaded = articles::COLLECTION
        .bulk_load(&db.conn, &records, &BuildOptions::default(), &mut ())
        .await
        .expect("bulk load");
    assert_eq!(loaded.rows, 20_000);
    db.exec("ANALYZE articles").await;
    vectors
}

#[tokio::test]
async fn recall_at_10_is_at_least_0_95_with_default_settings() {
    let db = TestDb::migrated().await;
    let vectors = load_articles(&db).await;
    let queries = clustered(60, 32, 99);

    // The exact strategy is the ground truth; check it against a brute force in Rust first.
    for q in queries.iter().take(3) {
        let exact = articles::COLLECTION
            .search(&db.conn, &Search::new(q.clone()).strategy(Strategy::Exact))
            .await
            .unwrap();
        let mut brute: Vec<(f64, i64)> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| (cosine_distance(q, v), i as i64))
            .collect();
        brute.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (hit, (d, _)) in exact.iter().zip(&brute) {
            assert!((hit.distance - d).abs() < 1e-4, "{} vs {d}", hit.distance);
        }
        assert_eq!(ids(&exact)[0], brute[0].1);
    }

    let mut found = 0;
    for q in &queries {
        let approx = articles::COLLECTION
            .search(&db.conn, &Search::new(q.clone()))
            .await
            .unwrap();
        let exact = articles::COLLECTION
            .search(&db.conn, &Search::new(q.clone()).strategy(Strategy::Exact))
            .await
            .unwrap();
        assert_eq!(approx.len(), 10);
        assert!(
            approx.windows(2).all(|w| w[0].distance <= w[1].distance),
            "closest first"
        );
        let truth = ids(&exact);
        found += ids(&approx).iter().filter(|id| truth.contains(id)).count();
    }
    let recall = found as f64 / (queries.len() * 10) as f64;
    // HNSW returns at most ef_search rows. 200 rows mean pgstack raised ef_search for this
    // statement (PostgreSQL's default, 40, would give 40); a plain query after it is back
    // at the default, so the setting did not stay on the pooled connection.
    let wide = articles::COLLECTION
        .search(&db.conn, &Search::new(queries[0].clone()).k(200))
        .await
        .unwrap();
    assert_eq!(wide.len(), 200);
    for _ in 0..4 {
        // NULL: this pooled connection has not loaded pgvector yet, so nothing set it either.
        let setting = db
            .column("SELECT current_setting('hnsw.ef_search', true)")
            .await;
        assert!(setting == ["40"] || setting == ["NULL"], "{setting:?}");
    }
    assert!(
        recall >= 0.95,
        "recall@10 {recall:.3} with the default ef_search"
    );
}

#[tokio::test]
async fn a_one_percent_filter_still_returns_ten_correct_rows() {
    let db = TestDb::migrated().await;
    load_articles(&db).await;
    let q = clustered(1, 32, 1234).remove(0);

    let filter = || articles::fields::CATEGORY.eq(7);
    let exact = articles::COLLECTION
        .search(
            &db.conn,
            &Search::new(q.clone())
                .filter(filter())
                .strategy(Strategy::Exact),
        )
        .await
        .unwrap();
    assert_eq!(exact.len(), 10);
    for strategy in [Strategy::Auto, Strategy::Index] {
        let hits = articles::COLLECTION
            .search(
                &db.conn,
                &Search::new(q.clone()).filter(filter()).strategy(strategy),
            )
            .await
            .unwrap();
        assert_eq!(hits.len(), 10, "{strategy:?}");
        assert!(
            hits.iter()
                .all(|h| h.item.get("category") == Some(&json!(7)))
        );
        let truth = ids(&exact);
        let overlap = ids(&hits).iter().filter(|id| truth.contains(id)).count();
        match strategy {
            // Auto counts 200 matching rows, under the bound: exact search.
            Strategy::Auto => assert_eq!(ids(&hits), truth),
            _ => assert!(overlap >= 8, "iterative scan found {overlap} of 10"),
        }
    }

    // A 10% filter on the same field: too many rows for exact search, so the iterative scan.
    let wide = articles::COLLECTION
        .search(
            &db.conn,
            &Search::new(q.clone()).filter(articles::fields::CATEGORY.lt(10)),
        )
        .await
        .unwrap();
    assert_eq!(wide.len(), 10);
    assert!(wide.iter().all(|h| {
        h.item
            .get("category")
            .and_then(|c| c.as_i64())
            .is_some_and(|c| c < 10)
    }));
}

#[tokio::test]
async fn records_round_trip_and_writes_replace() {
    let db = TestDb::migrated().await;
    let c = &articles::COLLECTION;
    let e = HashEmbedder::new(32);
    let record = Record::new(1)
        .embedding(e.embed_text("hello world"))
        .field("title", "Hello")
        .field("body", "the body")
        .field("category", 3)
        .field("published", true)
        .field("rating", 4.5)
        .field("meta", json!({"tags": ["a", "b"]}))
        .field("published_at", "2026-01-02T03:04:05+00:00")
        .field("author", "67e55044-10b1-426f-9247-bb680e5fe0c8")
        .field("views", 12);
    c.upsert(&db.conn, &record).await.unwrap();
    let got = c.get(&db.conn, 1).await.unwrap().expect("row 1");
    assert_eq!(got.id, json!(1));
    assert_eq!(got.get("title"), Some(&json!("Hello")));
    assert_eq!(got.get("meta"), Some(&json!({"tags": ["a", "b"]})));
    assert_eq!(
        got.get("author"),
        Some(&json!("67e55044-10b1-426f-9247-bb680e5fe0c8"))
    );
    assert_eq!(
        got.get("published_at"),
        Some(&json!("2026-01-02T03:04:05+00:00"))
    );
    assert_eq!(got.get("views"), Some(&json!(12)));
    let Some(Embedding::Dense(stored)) = &got.embedding else {
        panic!("embedding")
    };
    let Some(Embedding::Dense(sent)) = &record.embedding else {
        panic!("embedding")
    };
    assert_eq!(stored, sent, "floats survive the text form exactly");

    // A second write replaces every field; a missing one becomes NULL.
    c.upsert(
        &db.conn,
        &Record::new(1)
            .embedding(e.embed_text("other"))
            .field("title", "Again"),
    )
    .await
    .unwrap();
    let got = c.get(&db.conn, 1).await.unwrap().unwrap();
    assert_eq!(got.get("title"), Some(&json!("Again")));
    assert_eq!(got.get("body"), Some(&json!(null)));
    assert_eq!(c.count(&db.conn).await.unwrap(), 1);

    // A batch with a repeated id keeps the last version.
    let batch: Vec<Record> = (0..5)
        .map(|i| {
            Record::new(10 + i % 3)
                .embedding(e.embed_text(&format!("t{i}")))
                .field("title", format!("v{i}"))
        })
        .collect();
    assert_eq!(c.upsert_many(&db.conn, &batch).await.unwrap(), 5);
    assert_eq!(c.count(&db.conn).await.unwrap(), 4);
    assert_eq!(
        c.get(&db.conn, 10).await.unwrap().unwrap().get("title"),
        Some(&json!("v3"))
    );

    assert!(c.delete(&db.conn, 10).await.unwrap());
    assert!(!c.delete(&db.conn, 10).await.unwrap());
    assert!(c.get(&db.conn, 10).await.unwrap().is_none());

    // A row without an embedding is stored, and not found by vector search.
    c.upsert(&db.conn, &Record::new(99).field("title", "pending"))
        .await
        .unwrap();
    let hits = c
        .search(&db.conn, &Search::new(e.embed_text("pending")).k(100))
        .await
        .unwrap();
    assert!(!ids(&hits).contains(&99));
    assert!(
        c.set_embedding(&db.conn, 99, &Embedding::Dense(e.embed_text("pending")))
            .await
            .unwrap()
    );
    let hits = c
        .search(&db.conn, &Search::new(e.embed_text("pending")).k(1))
        .await
        .unwrap();
    assert_eq!(ids(&hits), vec![99]);
}

#[tokio::test]
async fn bad_values_are_rejected_before_any_sql() {
    let db = TestDb::migrated().await;
    let c = &articles::COLLECTION;
    let message = |r: pgstack::Result<()>| match r {
        Err(Error::InvalidArgument { message, .. }) => message,
        other => panic!("expected InvalidArgument, got {other:?}"),
    };
    let short = Record::new(1).embedding(vec![0.5f32; 31]);
    let m = message(c.upsert(&db.conn, &short).await);
    assert!(m.contains("expected 32 dimensions, found 31"), "{m}");
    let m = message(
        c.search(&db.conn, &Search::new(vec![0.5f32; 33]))
            .await
            .map(|_| ()),
    );
    assert!(m.contains("expected 32 dimensions, found 33"), "{m}");
    let m = message(
        c.upsert(&db.conn, &Record::new(1).embedding(vec![0.0f32; 32]))
            .await,
    );
    assert!(m.contains("all zeros"), "{m}");
    let mut nan = vec![0.5f32; 32];
    nan[3] = f32::NAN;
    let m = message(c.upsert(&db.conn, &Record::new(1).embedding(nan)).await);
    assert!(m.contains("element 3 is NaN"), "{m}");
    let m = message(
        c.upsert(&db.conn, &Record::new(1).embedding(vec![true; 32]))
            .await,
    );
    assert!(m.contains("stores `vector` embeddings"), "{m}");
    let m = message(c.upsert(&db.conn, &Record::new(1).field("nope", 1)).await);
    assert!(m.contains("`nope` is not a declared field"), "{m}");
    let m = message(
        c.upsert(&db.conn, &Record::new(1).field("category", "seven"))
            .await,
    );
    assert!(
        m.contains("field `category`: expected a whole number"),
        "{m}"
    );
    let m = message(c.upsert(&db.conn, &Record::new("one")).await);
    assert!(m.contains("record id `\"one\"`"), "{m}");
    let q = HashEmbedder::new(32).embed_text("q");
    let m = message(
        c.search(
            &db.conn,
            &Search::new(q.clone()).filter(Filter::eq("nope", 1)),
        )
        .await
        .map(|_| ()),
    );
    assert!(m.contains("filter on `nope`"), "{m}");
    let m = message(
        c.search(&db.conn, &Search::new(q.clone()).k(0))
            .await
            .map(|_| ()),
    );
    assert!(m.contains("k must be 1 to 1000"), "{m}");
    let m = message(
        c.search(&db.conn, &Search::new(q).tenant(1))
            .await
            .map(|_| ()),
    );
    assert!(m.contains("no `partition_by`"), "{m}");
    assert_eq!(c.count(&db.conn).await.unwrap(), 0, "nothing was written");
}

#[tokio::test]
async fn filters_similar_to_max_distance_and_embeddings_in_results() {
    let db = TestDb::migrated().await;
    let c = &articles::COLLECTION;
    let e = HashEmbedder::new(32);
    let titles = [
        "postgres queue",
        "postgres cache",
        "postgres vector search",
        "rust web server",
        "garden tomatoes",
    ];
    let records: Vec<Record> = titles
        .iter()
        .enumerate()
        .map(|(i, t)| {
            Record::new(i as i64)
                .embedding(e.embed_text(t))
                .field("title", *t)
                .field("category", i as i64)
                .field("published", i % 2 == 0)
                .field("rating", i as f64)
        })
        .collect();
    c.upsert_many(&db.conn, &records).await.unwrap();
    let q = e.embed_text("postgres queue");
    let all = c
        .search(&db.conn, &Search::new(q.clone()).k(5))
        .await
        .unwrap();
    assert_eq!(ids(&all)[0], 0);
    assert!(all[0].distance < 1e-6);
    assert!(
        all[0].item.embedding.is_none(),
        "embeddings are not returned by default"
    );

    let published = c
        .search(
            &db.conn,
            &Search::new(q.clone())
                .k(5)
                .filter(articles::fields::PUBLISHED.eq(true)),
        )
        .await
        .unwrap();
    assert_eq!(ids(&published).len(), 3);
    let some = c
        .search(
            &db.conn,
            &Search::new(q.clone())
                .k(5)
                .filter(articles::fields::CATEGORY.one_of([1, 3]))
                .filter(articles::fields::RATING.ge(2.0)),
        )
        .await
        .unwrap();
    assert_eq!(ids(&some), vec![3]);
    let none = c
        .search(
            &db.conn,
            &Search::new(q.clone())
                .filter(articles::fields::BODY.is_null())
                .filter(Filter::one_of("category", Vec::<i64>::new())),
        )
        .await
        .unwrap();
    assert!(none.is_empty());

    let similar = c
        .search(&db.conn, &Search::similar_to(0).k(2))
        .await
        .unwrap();
    assert!(!ids(&similar).contains(&0), "the row itself is left out");
    assert_eq!(similar.len(), 2);
    assert!(
        ids(&similar)[0] == 1 || ids(&similar)[0] == 2,
        "another postgres article is nearest: {:?}",
        ids(&similar)
    );

    let close = c
        .search(&db.conn, &Search::new(q.clone()).k(5).max_distance(0.5))
        .await
        .unwrap();
    assert!(!close.is_empty() && close.len() < 5);
    assert!(close.iter().all(|h| h.distance <= 0.5));

    let with = c
        .search(&db.conn, &Search::new(q.clone()).k(1).with_embeddings(true))
        .await
        .unwrap();
    assert_eq!(with[0].item.embedding, Some(Embedding::Dense(q)));
}

#[tokio::test]
async fn hybrid_search_ranks_an_exact_keyword_match_first() {
    let db = TestDb::migrated().await;
    let c = &articles::COLLECTION;
    let e = HashEmbedder::new(32);
    let mut records: Vec<Record> = (0..300)
        .map(|i| {
            let title = format!("notes on databases and queues number {i}");
            Record::new(i as i64)
                .embedding(e.embed_text(&title))
                .field("title", title)
                .field("body", "general text about storage engines")
        })
        .collect();
    let body = "The ferry to Zanzibar leaves at dawn";
    records.push(
        Record::new(1000)
            .embedding(e.embed_text("travel diary"))
            .field("title", "Travel diary")
            .field("body", body),
    );
    c.upsert_many(&db.conn, &records).await.unwrap();

    // The query's embedding points at the database notes; the keywords match one row only.
    let query = "zanzibar ferry";
    let hits = c
        .hybrid(
            &db.conn,
            &Hybrid::new(query, e.embed_text("databases and queues")).k(5),
        )
        .await
        .unwrap();
    assert_eq!(hits.len(), 5);
    assert_eq!(hits[0].item.id, json!(1000), "{hits:?}");
    assert_eq!(hits[0].keyword_rank, Some(1));
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(
        hits[1..]
            .iter()
            .all(|h| h.semantic_rank.is_some() && h.keyword_rank.is_none())
    );

    // Filters apply to both rankings.
    let filtered = c
        .hybrid(
            &db.conn,
            &Hybrid::new(query, e.embed_text(query)).filter(Filter::ne("title", "Travel diary")),
        )
        .await
        .unwrap();
    assert!(filtered.iter().all(|h| h.item.id != json!(1000)));

    let m = match images::COLLECTION
        .hybrid(&db.conn, &Hybrid::new("x", vec![0.5f32; 24]))
        .await
    {
        Err(Error::Unsupported { help, .. }) => help,
        other => panic!("{other:?}"),
    };
    assert!(m.contains("full_text"));
}

#[tokio::test]
async fn tenant_partitions_isolate_tenants() {
    let db = TestDb::migrated().await;
    let c = &tenant_docs::COLLECTION;
    let e = HashEmbedder::new(16);
    let records: Vec<Record> = [1i64, 2]
        .iter()
        .flat_map(|t| {
            (0..20).map(move |i| {
                Record::new(format!("doc-{i}"))
                    .embedding(HashEmbedder::new(16).embed_text(&format!("shared topic {i}")))
                    .field("tenant_id", *t)
                    .field("title", format!("tenant {t} doc {i}"))
            })
        })
        .collect();
    c.upsert_many(&db.conn, &records).await.unwrap();

    // One partition per tenant, each with its own HNSW index.
    let partitions = db
        .column("SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'tenant_docs'::regclass ORDER BY 1")
        .await;
    assert_eq!(partitions.len(), 2, "{partitions:?}");
    let hnsw = db
        .column("SELECT count(*)::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam JOIN pg_inherits h ON h.inhrelid = i.indrelid WHERE h.inhparent = 'tenant_docs'::regclass AND a.amname = 'hnsw'")
        .await;
    assert_eq!(hnsw, vec!["2"]);

    let q = e.embed_text("shared topic 3");
    let hits = c
        .search(&db.conn, &Search::new(q.clone()).tenant(1).k(20))
        .await
        .unwrap();
    assert_eq!(hits.len(), 20);
    assert!(
        hits.iter()
            .all(|h| h.item.get("tenant_id") == Some(&json!(1)))
    );
    assert_eq!(hits[0].item.id, json!("doc-3"));
    let both = c
        .search(&db.conn, &Search::new(q.clone()).k(40))
        .await
        .unwrap();
    assert_eq!(
        both.len(),
        40,
        "without a tenant every partition is searched"
    );

    // The same id lives in both tenants; keys name the tenant.
    assert_eq!(c.count_tenant(&db.conn, 2).await.unwrap(), 20);
    let got = c
        .get(&db.conn, Key::new("doc-3").tenant(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.get("title"), Some(&json!("tenant 2 doc 3")));
    assert!(
        c.delete(&db.conn, Key::new("doc-3").tenant(2))
            .await
            .unwrap()
    );
    assert!(
        c.get(&db.conn, Key::new("doc-3").tenant(1))
            .await
            .unwrap()
            .is_some()
    );
    match c.get(&db.conn, "doc-3").await {
        Err(Error::InvalidArgument { message, .. }) => {
            assert!(message.contains("partitioned by `tenant_id`"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    let similar = c
        .search(
            &db.conn,
            &Search::similar_to(Key::new("doc-4").tenant(1)).k(5),
        )
        .await
        .unwrap();
    assert!(
        similar
            .iter()
            .all(|h| h.item.get("tenant_id") == Some(&json!(1)) && h.item.id != json!("doc-4"))
    );
    let hybrid = c
        .hybrid(&db.conn, &Hybrid::new("doc", q).tenant(2))
        .await
        .unwrap();
    assert!(
        !hybrid.is_empty()
            && hybrid
                .iter()
                .all(|h| h.item.get("tenant_id") == Some(&json!(2)))
    );

    // A new tenant's partition is created on its first write, also after a rollback undid it.
    let txn = db.conn.begin().await.unwrap();
    c.upsert(
        &txn,
        &Record::new("x")
            .embedding(e.embed_text("x"))
            .field("tenant_id", 3),
    )
    .await
    .unwrap();
    txn.rollback().await.unwrap();
    c.upsert(
        &db.conn,
        &Record::new("x")
            .embedding(e.embed_text("x"))
            .field("tenant_id", 3),
    )
    .await
    .unwrap();
    assert_eq!(c.count_tenant(&db.conn, 3).await.unwrap(), 1);
    match c
        .upsert(&db.conn, &Record::new("y").embedding(e.embed_text("y")))
        .await
    {
        Err(Error::InvalidArgument { message, .. }) => {
            assert!(message.contains("partition key"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn ivfflat_halfvec_collections_search_with_probes() {
    let db = TestDb::migrated().await;
    let c = &images::COLLECTION;
    let vectors = clustered(3_000, 24, 5);
    let records: Vec<Record> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            Record::new(i as i64)
                .embedding(v.clone())
                .field("label", format!("img {i}"))
        })
        .collect();
    // The IVFFlat lists are computed from the rows present when the index is built.
    let loaded = c
        .bulk_load(&db.conn, &records, &BuildOptions::default(), &mut ())
        .await
        .unwrap();
    assert_eq!(loaded.rows, 3_000);
    let q = vectors[42].clone();
    let hits = c.search(&db.conn, &Search::new(q.clone())).await.unwrap();
    assert_eq!(hits.len(), 10);
    assert_eq!(
        hits[0].item.id,
        json!(42),
        "a stored vector is its own nearest (L2 distance 0)"
    );
    let all_lists = c
        .search(&db.conn, &Search::new(q.clone()).probes(20))
        .await
        .unwrap();
    let exact = c
        .search(&db.conn, &Search::new(q.clone()).strategy(Strategy::Exact))
        .await
        .unwrap();
    assert_eq!(ids(&all_lists), ids(&exact), "probing every list is exact");
    match c.search(&db.conn, &Search::new(q.clone()).probes(21)).await {
        Err(Error::InvalidArgument { message, .. }) => {
            assert!(message.contains("probes must be 1 to 20"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    match c
        .upsert(&db.conn, &Record::new(1).embedding(vec![70_000.0f32; 24]))
        .await
    {
        Err(Error::InvalidArgument { message, .. }) => {
            assert!(message.contains("halfvec"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert!(
        c.rebuild_index(&db.conn, &BuildOptions::default())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn bit_and_sparse_collections() {
    let db = TestDb::migrated().await;
    let bits = |seed: u64| {
        let mut rng = Rng(seed);
        (0..64)
            .map(|_| rng.next().is_multiple_of(2))
            .collect::<Vec<bool>>()
    };
    let records: Vec<Record> = (0..50)
        .map(|i| {
            Record::new(i)
                .embedding(bits(i as u64))
                .field("source", format!("s{i}"))
        })
        .collect();
    fingerprints::COLLECTION
        .upsert_many(&db.conn, &records)
        .await
        .unwrap();
    let mut q = bits(17);
    q[0] = !q[0];
    let hits = fingerprints::COLLECTION
        .search(&db.conn, &Search::new(q).k(3))
        .await
        .unwrap();
    assert_eq!(hits[0].item.id, json!(17));
    assert_eq!(hits[0].distance, 1.0, "one bit differs");
    let got = fingerprints::COLLECTION
        .get(&db.conn, 17)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.embedding, Some(Embedding::Bits(bits(17))));

    let sparse = |pairs: &[(u32, f32)]| SparseVector {
        dimensions: 1000,
        indices: pairs.iter().map(|p| p.0).collect(),
        values: pairs.iter().map(|p| p.1).collect(),
    };
    let t = &terms::COLLECTION;
    t.upsert(
        &db.conn,
        &Record::new(1)
            .embedding(sparse(&[(3, 1.0), (999, 2.0)]))
            .field("doc", "a"),
    )
    .await
    .unwrap();
    t.upsert(
        &db.conn,
        &Record::new(2)
            .embedding(sparse(&[(4, 1.0)]))
            .field("doc", "b"),
    )
    .await
    .unwrap();
    let hits = t
        .search(&db.conn, &Search::new(sparse(&[(999, 1.0)])).k(2))
        .await
        .unwrap();
    assert_eq!(hits[0].item.id, json!(1));
    assert_eq!(hits[0].distance, -2.0, "<#> is the negated inner product");
    let got = t.get(&db.conn, 1).await.unwrap().unwrap();
    assert_eq!(
        got.embedding,
        Some(Embedding::Sparse(sparse(&[(3, 1.0), (999, 2.0)])))
    );
    match t
        .upsert(
            &db.conn,
            &Record::new(3).embedding(sparse(&[(5, 1.0), (2, 1.0)])),
        )
        .await
    {
        Err(Error::InvalidArgument { message, .. }) => {
            assert!(message.contains("strictly increasing"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

/// A typed row: field names and types are checked against `tests/pgstack.toml` at compile time.
#[derive(Clone, Debug, PartialEq, pgstack::Embedded)]
#[pgstack(collection = "articles")]
struct Article {
    #[pgstack(id)]
    id: i64,
    #[pgstack(embedding)]
    embedding: Vec<f32>,
    title: String,
    body: Option<String>,
    category: Option<i64>,
    published: Option<bool>,
    rating: Option<f64>,
    meta: Option<serde_json::Value>,
    published_at: Option<chrono::DateTime<chrono::Utc>>,
    author: Option<uuid::Uuid>,
    views: Option<i32>,
    #[pgstack(skip)]
    cached_summary: String,
}

#[derive(Clone, Debug, PartialEq, pgstack::Embedded)]
#[pgstack(collection = "tenant_docs")]
struct TenantDoc {
    #[pgstack(id)]
    id: String,
    #[pgstack(embedding)]
    embedding: Option<Vec<f32>>,
    tenant_id: i64,
    title: Option<String>,
}

#[tokio::test]
async fn derived_types_read_and_write_their_collection() {
    let db = TestDb::migrated().await;
    let e = HashEmbedder::new(32);
    let article = |id: i64, title: &str| Article {
        id,
        embedding: e.embed_text(title),
        title: title.to_string(),
        body: Some("body".to_string()),
        category: Some(id),
        published: Some(true),
        rating: Some(1.5),
        meta: Some(json!({"k": 1})),
        published_at: Some(chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap()),
        author: Some(uuid::Uuid::nil()),
        views: Some(7),
        cached_summary: String::new(),
    };
    article(1, "typed rows in postgres")
        .upsert(&db.conn)
        .await
        .unwrap();
    let many = vec![article(2, "typed search"), article(3, "garden")];
    assert_eq!(Article::upsert_many(&db.conn, &many).await.unwrap(), 2);
    let got = Article::get(&db.conn, 1).await.unwrap().unwrap();
    assert_eq!(got, article(1, "typed rows in postgres"));
    let hits = Article::search(&db.conn, &Search::new(e.embed_text("typed search")).k(2))
        .await
        .unwrap();
    // `embedding: Vec<f32>` is required: a typed hit always carries it, never an empty one.
    assert_eq!(hits[0].item, article(2, "typed search"));
    let hybrid = Article::hybrid(&db.conn, &Hybrid::new("garden", e.embed_text("garden")))
        .await
        .unwrap();
    assert_eq!(hybrid[0].item, article(3, "garden"));
    // Untyped hits say "not selected" with `None`.
    let raw = articles::COLLECTION
        .search(&db.conn, &Search::new(e.embed_text("garden")).k(1))
        .await
        .unwrap();
    assert_eq!(raw[0].item.embedding, None);
    let raw = articles::COLLECTION
        .hybrid(
            &db.conn,
            &Hybrid::new("garden", e.embed_text("garden")).with_embeddings(true),
        )
        .await
        .unwrap();
    assert!(raw[0].item.embedding.is_some());
    // A row not embedded yet cannot be read into a required embedding field.
    articles::COLLECTION
        .upsert(&db.conn, &Record::new(9).field("title", "pending"))
        .await
        .unwrap();
    let err = Article::get(&db.conn, 9).await.unwrap_err().to_string();
    assert!(
        err.contains("has no embedding yet") && err.contains("Option<Vec<f32>>"),
        "{err}"
    );
    articles::COLLECTION.delete(&db.conn, 9).await.unwrap();
    assert!(Article::delete(&db.conn, 3).await.unwrap());
    // The derive's handle and the generated one are the same table.
    assert_eq!(articles::COLLECTION.count(&db.conn).await.unwrap(), 2);

    let doc = TenantDoc {
        id: "a".into(),
        embedding: None,
        tenant_id: 9,
        title: Some("pending".into()),
    };
    doc.upsert(&db.conn).await.unwrap();
    let got = TenantDoc::get(&db.conn, Key::new("a").tenant(9))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, doc);
    // An `Option` embedding is selected only when asked for.
    let embedded = TenantDoc {
        id: "b".into(),
        embedding: Some(e.embed_text("ready")[..16].to_vec()),
        tenant_id: 9,
        title: Some("ready".into()),
    };
    embedded.upsert(&db.conn).await.unwrap();
    let query = Search::new(embedded.embedding.clone().unwrap())
        .tenant(9)
        .k(1);
    let plain = TenantDoc::search(&db.conn, &query).await.unwrap();
    assert_eq!(plain[0].item.id, "b");
    assert_eq!(plain[0].item.embedding, None);
    let full = TenantDoc::search(&db.conn, &query.with_embeddings(true))
        .await
        .unwrap();
    assert_eq!(full[0].item, embedded);
}

#[tokio::test]
async fn the_pipeline_embeds_rows_through_the_queue_and_skips_stale_versions() {
    let db = TestDb::migrated().await;
    let pipeline = EmbeddingPipeline::new(&articles::COLLECTION, &jobs::QUEUE);
    let embedder = HashEmbedder::new(32);
    let records: Vec<Record> = (0..5)
        .map(|i| {
            Record::new(i)
                .field("title", format!("title {i}"))
                .field("body", "some body")
        })
        .collect();
    let txn = db.conn.begin().await.unwrap();
    assert_eq!(pipeline.upsert(&txn, &records).await.unwrap(), 5);
    txn.commit().await.unwrap();
    let pending = db
        .column("SELECT count(*)::text FROM articles WHERE embedding IS NULL")
        .await;
    assert_eq!(pending, vec!["5"]);

    // Row 4 is rewritten before the worker runs: the first job must not embed its old text.
    pipeline
        .upsert(&db.conn, &[Record::new(4).field("title", "rewritten")])
        .await
        .unwrap();
    let claimed = jobs::QUEUE.claim(&db.conn, 10).await.unwrap();
    assert_eq!(claimed.len(), 2, "one job per write (32 rows per job)");
    let mut stored = 0;
    for job in &claimed {
        assert_eq!(job.kind, EmbeddingPipeline::KIND);
        let payload: pgstack::vector::EmbedJob = job.payload.decode().unwrap();
        stored += pipeline
            .process(&db.conn, &embedder, &payload)
            .await
            .unwrap();
    }
    assert_eq!(stored, 5, "4 rows of the first job, row 4 from the second");
    let got = articles::COLLECTION
        .get(&db.conn, 4)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got.embedding,
        Some(Embedding::Dense(embedder.embed_text("rewritten")))
    );
    let got = articles::COLLECTION
        .get(&db.conn, 0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got.embedding,
        Some(Embedding::Dense(
            embedder.embed_text("title 0\n\nsome body")
        ))
    );

    // Rows written without the pipeline can be backfilled.
    articles::COLLECTION
        .upsert(&db.conn, &Record::new(50).field("title", "late"))
        .await
        .unwrap();
    assert_eq!(pipeline.backfill(&db.conn).await.unwrap(), 1);

    // With a worker: the job is claimed and the embedding filled in.
    let pipeline = std::sync::Arc::new(pipeline);
    let worker = pipeline
        .clone()
        .register(
            pgstack::queue::Worker::new(&db.conn, &jobs::QUEUE),
            db.conn.clone(),
            std::sync::Arc::new(embedder),
        )
        .poll_interval(std::time::Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let done = db
            .column("SELECT (embedding IS NOT NULL)::text FROM articles WHERE id = 50")
            .await;
        if done == vec!["true"] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the worker did not embed row 50"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    worker.shutdown(std::time::Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_pipeline_embeds_rows_of_partitioned_collections() {
    let db = TestDb::migrated().await;
    let pipeline = EmbeddingPipeline::new(&tenant_docs::COLLECTION, &jobs::QUEUE);
    let records: Vec<Record> = [1i64, 2]
        .iter()
        .map(|t| {
            Record::new("same-id")
                .field("tenant_id", *t)
                .field("title", format!("tenant {t}"))
        })
        .collect();
    pipeline.upsert(&db.conn, &records).await.unwrap();
    let embedder = HashEmbedder::new(16);
    let claimed = jobs::QUEUE.claim(&db.conn, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let payload: pgstack::vector::EmbedJob = claimed[0].payload.decode().unwrap();
    assert_eq!(payload.rows.len(), 2);
    assert_eq!(
        pipeline
            .process(&db.conn, &embedder, &payload)
            .await
            .unwrap(),
        2
    );
    for t in [1i64, 2] {
        let got = tenant_docs::COLLECTION
            .get(&db.conn, Key::new("same-id").tenant(t))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            got.embedding,
            Some(Embedding::Dense(
                embedder.embed_text(&format!("tenant {t}"))
            )),
            "each tenant's row gets the embedding of its own text"
        );
    }
}

#[tokio::test]
async fn embedders_report_dimensions_and_embed_deterministically() {
    let e = HashEmbedder::new(32);
    assert_eq!(e.dimensions(), 32);
    let texts = vec!["a b".to_string(), "c".to_string()];
    let out = e.embed(&texts).await.unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0], e.embed_text("a b"));
    assert_eq!(e.embed_one("c").await.unwrap(), out[1]);
}

/// A local HTTP server answering requests in turn with `responses` (status, JSON body);
/// returns its base URL and the requests it received (head and body).
fn fake_embeddings_server(
    responses: Vec<(u16, String)>,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/v1", listener.local_addr().expect("addr"));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for (status, body) in responses {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let mut reader = BufReader::new(stream);
            let mut head = String::new();
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut request_body = vec![0u8; length];
            let _ = reader.read_exact(&mut request_body);
            log.lock().unwrap().push(format!(
                "{head}\n{}",
                String::from_utf8_lossy(&request_body)
            ));
            let mut stream = reader.into_inner();
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, seen)
}

#[tokio::test]
async fn the_openai_embedder_batches_orders_retries_and_explains_failures() {
    use pgstack::vector::{OpenAiConfig, OpenAiEmbedder};
    let data = |items: &[(usize, [f32; 2])]| {
        let data: Vec<serde_json::Value> = items
            .iter()
            .map(|(i, v)| json!({"index": i, "embedding": v}))
            .collect();
        json!({ "data": data, "model": "m" }).to_string()
    };
    // Three texts in batches of two; the server answers the first batch out of order.
    let (url, seen) = fake_embeddings_server(vec![
        (200, data(&[(1, [0.0, 1.0]), (0, [1.0, 0.0])])),
        (503, "{\"error\": \"busy\"}".to_string()),
        (200, data(&[(0, [0.5, 0.5])])),
    ]);
    let mut config = OpenAiConfig::new(&url, "test-model", 2).api_key("sk-test");
    config.batch_size = 2;
    let embedder = OpenAiEmbedder::new(config);
    let texts = vec!["a".to_string(), "b".to_string(), "c".to_string()];
    let out = embedder.embed(&texts).await.unwrap();
    assert_eq!(out, vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![0.5, 0.5]]);
    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 3, "two batches, one retried");
    assert!(
        requests[0].starts_with("POST /v1/embeddings"),
        "{}",
        requests[0]
    );
    assert!(
        requests[0]
            .to_ascii_lowercase()
            .contains("authorization: bearer sk-test")
    );
    assert!(
        requests[0].contains("\"model\":\"test-model\"") && requests[0].contains("[\"a\",\"b\"]")
    );

    let (url, _) = fake_embeddings_server(vec![(401, "{\"error\": \"bad key\"}".to_string())]);
    let err = OpenAiEmbedder::new(OpenAiConfig::new(&url, "m", 2))
        .embed_one("x")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("HTTP 401 (check the API key"),
        "{err}"
    );

    let (url, _) = fake_embeddings_server(vec![(
        200,
        json!({"data": [{"index": 0, "embedding": [1.0, 2.0, 3.0]}]}).to_string(),
    )]);
    let err = OpenAiEmbedder::new(OpenAiConfig::new(&url, "m", 2))
        .embed_one("x")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("returned 3 dimensions, but the collection expects 2"),
        "{err}"
    );
}
