//! Read replicas against a real streaming hot standby (`.ci/setup-standby.sh`, 127.0.0.1:5433).
//!
//! To see where a read went, the test pauses WAL replay on the standby: the replica then
//! holds the old value while the primary has the new one. One test, run alone in this
//! binary, because a paused standby pauses for every database.

use std::time::{Duration, Instant};

use pgstack::Cluster;
use pgstack::vector::{Embedder, HashEmbedder, Record};
use pgstack_tests::TestDb;
use pgstack_tests::db::{articles, fast_gcra, jobs, pages, profiles, settings};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde_json::{Value, json};

async fn sql(db: &DatabaseConnection, text: &str) {
    db.execute_unprepared(text)
        .await
        .unwrap_or_else(|e| panic!("{text}: {e}"));
}

/// Waits until `$check` (an expression, awaited inside if it needs to be) holds, for at most
/// 20 seconds.
macro_rules! eventually {
    ($what:expr, $check:expr) => {{
        let deadline = Instant::now() + Duration::from_secs(20);
        while !$check {
            assert!(
                Instant::now() < deadline,
                "timed out waiting until {}",
                $what
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_the_replica_writes_and_unlogged_tables_to_the_primary() {
    let t = TestDb::migrated().await;
    let standby = t.on_standby(4).await;
    // Resume replay whatever happens below: a paused standby would stall every later test.
    let body = tokio::spawn(routing(t.conn.clone(), standby.clone()));
    let outcome = body.await;
    sql(&standby, "SELECT pg_wal_replay_resume()").await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic.into_panic());
    }
}

async fn routing(primary: DatabaseConnection, standby: DatabaseConnection) {
    let cluster = Cluster::builder(primary.clone())
        .replica(standby.clone())
        .max_lag(Duration::from_secs(30))
        .check_every(Duration::from_millis(20))
        .start();
    eventually!("the replica serves", cluster.replicas()[0].serving);

    // Writes through the cluster land on the primary and reach the replica.
    settings::STORE
        .set(&cluster, "theme", &"old")
        .await
        .unwrap();
    let doc = profiles::STORE
        .insert(&cluster, &json!({"email": "a@example.com", "age": 1}))
        .await
        .unwrap();
    let e = HashEmbedder::new(32);
    let embedding = e.embed_one("replicated").await.unwrap();
    articles::COLLECTION
        .upsert(
            &cluster,
            &Record::new(1)
                .embedding(embedding.clone())
                .field("title", "one"),
        )
        .await
        .unwrap();
    eventually!("the replica has the rows", {
        settings::STORE
            .get::<String, _>(&standby, "theme")
            .await
            .ok()
            .flatten()
            .is_some()
            && articles::COLLECTION.count(&standby).await.unwrap_or(0) == 1
    });

    // Freeze the replica, then change everything on the primary.
    sql(&standby, "SELECT pg_wal_replay_pause()").await;
    eventually!("replay is paused", {
        let row = standby
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT pg_get_wal_replay_pause_state()",
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get_by_index::<String>(0).unwrap() == "paused"
    });
    settings::STORE
        .set(&cluster, "theme", &"new")
        .await
        .unwrap();
    profiles::STORE
        .patch_set(&cluster, doc.id, &["age"], &2)
        .await
        .unwrap();
    articles::COLLECTION
        .upsert(
            &cluster,
            &Record::new(2)
                .embedding(embedding.clone())
                .field("title", "two"),
        )
        .await
        .unwrap();
    jobs::QUEUE
        .enqueue(&cluster, "k", &1, &Default::default())
        .await
        .unwrap();
    cluster.check_replicas().await;
    assert!(cluster.replicas()[0].serving, "{:?}", cluster.replicas());

    // Reads through the cluster come from the (frozen) replica.
    let theme: Option<String> = settings::STORE.get(&cluster, "theme").await.unwrap();
    assert_eq!(
        theme.as_deref(),
        Some("old"),
        "a kv read went to the replica"
    );
    let read = profiles::STORE
        .get::<Value, _>(&cluster, doc.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.doc["age"], 1, "a document read went to the replica");
    assert_eq!(articles::COLLECTION.count(&cluster).await.unwrap(), 1);
    let hits = articles::COLLECTION
        .search(
            &cluster,
            &pgstack::vector::Search::new(embedding.clone()).k(5),
        )
        .await
        .unwrap();
    assert_eq!(hits.len(), 1, "a vector search went to the replica");
    assert_eq!(jobs::QUEUE.metrics(&cluster, 10).await.unwrap().ready, 0);

    // UNLOGGED facilities always use the primary, even given only the cluster...
    pages::CACHE.set(&cluster, "/", &"home").await.unwrap();
    let home: Option<String> = pages::CACHE.get(&cluster, "/").await.unwrap();
    assert_eq!(home.as_deref(), Some("home"));
    assert!(
        fast_gcra::LIMITER
            .check(&cluster, "u")
            .await
            .unwrap()
            .allowed
    );
    assert!(
        fast_gcra::LIMITER
            .peek(&cluster, "u")
            .await
            .unwrap()
            .remaining
            < 5
    );
    // ... and given the standby itself, the error says what to do.
    let err = pages::CACHE
        .get::<String, _>(&standby, "/")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("UNLOGGED") && err.contains("pass the primary"),
        "{err}"
    );

    // A read-your-writes session reads the primary after its own write.
    let session = cluster.session();
    assert_eq!(
        settings::STORE
            .get::<String, _>(&session, "theme")
            .await
            .unwrap()
            .as_deref(),
        Some("old"),
        "before writing, a session reads the replica too"
    );
    settings::STORE.set(&session, "mine", &"x").await.unwrap();
    assert_eq!(
        settings::STORE
            .get::<String, _>(&session, "theme")
            .await
            .unwrap()
            .as_deref(),
        Some("new")
    );
    assert_eq!(
        settings::STORE
            .get::<String, _>(&session, "mine")
            .await
            .unwrap()
            .as_deref(),
        Some("x")
    );
    // Other handles are not affected by the session's write.
    assert_eq!(
        settings::STORE
            .get::<String, _>(&cluster, "theme")
            .await
            .unwrap()
            .as_deref(),
        Some("old")
    );

    // A replica further behind than max_lag is skipped: reads fall back to the primary.
    let strict = Cluster::builder(primary.clone())
        .replica(standby.clone())
        .max_lag(Duration::from_millis(200))
        .check_every(Duration::from_millis(20))
        .start();
    tokio::time::sleep(Duration::from_millis(400)).await;
    settings::STORE.set(&primary, "tick", &1).await.unwrap();
    eventually!("the lagging replica is skipped", {
        let status = &strict.replicas()[0];
        !status.serving
            && status
                .problem
                .as_deref()
                .is_some_and(|p| p.contains("behind the primary"))
    });
    assert_eq!(
        settings::STORE
            .get::<String, _>(&strict, "theme")
            .await
            .unwrap()
            .as_deref(),
        Some("new"),
        "the primary answered"
    );

    // Replay resumes: the replica catches up and serves the strict cluster again.
    sql(&standby, "SELECT pg_wal_replay_resume()").await;
    eventually!(
        "the caught-up replica serves again",
        strict.replicas()[0].serving
    );
    assert_eq!(
        settings::STORE
            .get::<String, _>(&strict, "theme")
            .await
            .unwrap()
            .as_deref(),
        Some("new")
    );

    // A worker pointed at the standby could never claim: it refuses to start and says why.
    let refused = pgstack::queue::Worker::new(&standby, &jobs::QUEUE)
        .handle_raw("k", |_| async { Ok(()) })
        .poll_only()
        .start()
        .await;
    let message = match refused {
        Ok(worker) => {
            worker.shutdown(Duration::from_secs(5)).await;
            panic!("a worker on the standby started");
        }
        Err(e) => e.to_string(),
    };
    assert!(
        message.contains("read-only hot standby") && message.contains("primary"),
        "{message}"
    );
}
