//! Every Rust example of the repository's README.md, verbatim, so CI compiles them: each
//! function below holds one example as its body, with the variables the example assumes as
//! its parameters. The test at the end fails when a README example is not found here word
//! for word (indentation aside), so an edited example must be edited here too, and compile.
//!
//! The functions are never called; the quickstart's `main` runs the same calls for real.

// The examples name results they do not use, as a reader's code would.
#![allow(dead_code, unused_variables)]

use std::error::Error;

use sea_orm::DatabaseConnection;

use crate::db;

type Result<T = ()> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

/// The application's own mail sender, as the queue example assumes one.
async fn send(to: &str) -> std::io::Result<()> {
    let _ = to;
    Ok(())
}

/// The application's own page renderer, as the cache example assumes one.
async fn render(path: &str) -> std::io::Result<String> {
    Ok(format!("<h1>{path}</h1>"))
}

/// "Using pgstack in your crate", step 5.
#[rustfmt::skip]
async fn transactions(db: DatabaseConnection, new_profile: serde_json::Value) -> Result {
    use sea_orm::TransactionTrait;

    let txn = db.begin().await?;
    let profile = db::user_profiles::STORE.insert(&txn, &new_profile).await?;
    db::settings::STORE.set(&txn, "users.last_signup", &profile.id).await?;
    txn.commit().await?;
    Ok(())
}

/// `[[queue]]`: typed jobs and a worker.
#[rustfmt::skip]
async fn queue(db: DatabaseConnection, to: String, user_id: i64) -> Result {
    use std::time::Duration;

    use pgstack::queue::{Delivery, EnqueueOptions, Job, JobTx, Worker};
    use sea_orm::TransactionTrait;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, pgstack::Queue)]
    #[pgstack(queue = "emails")]           // checked against pgstack.toml at compile time
    struct WelcomeEmail { to: String }

    // Enqueue inside your own transaction: rolled back, no job.
    let txn = db.begin().await?;
    WelcomeEmail { to }.enqueue_with(&txn, &EnqueueOptions::default()
        .delay(Duration::from_secs(60))
        .unique_key(format!("welcome:{user_id}"))).await?;
    txn.commit().await?;

    let worker = Worker::new(&db, &db::emails::QUEUE)
        .handle(|email: Delivery<WelcomeEmail>| async move {
            send(&email.job.to).await?;       // an Err retries with backoff
            Ok(())
        })
        .concurrency(16)                      // handlers at once
        .job_timeout(Some(Duration::from_secs(60)))
        .start().await?;
    // ... on SIGTERM:
    worker.shutdown(Duration::from_secs(30)).await;

    // Exactly once in this database: the handler writes in the job's transaction, and the
    // job completes in it too; a crash or a redelivery rolls the writes back.
    let ledger = Worker::new(&db, &db::emails::QUEUE)
        .handle_tx(|email: Delivery<WelcomeEmail>, tx: JobTx| async move {
            let key = format!("welcomed:{}", email.job.to);
            db::settings::STORE.set(&tx, &key, &email.id).await?;
            Ok(tx)                            // hand it back: commit with the completion
        })
        .start().await?;

    // Jobs that used up their attempts, with their last error; redrive them once fixed.
    for dead in db::emails::QUEUE.dead_letters(&db, None, 100).await? {
        let email: WelcomeEmail = dead.payload.decode()?;   // the payload as it was enqueued
        println!("{} failed {} times: {:?}", email.to, dead.attempt, dead.last_error);
    }
    db::emails::QUEUE.redrive_all(&db, 100).await?;
    Ok(())
}

/// `[[cache]]`: `#[derive(Cached)]`.
#[rustfmt::skip]
async fn cache(db: DatabaseConnection) -> Result {
    use pgstack::cache::Cached;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, pgstack::Cached)]
    #[pgstack(cache = "pages", key = "path", ttl = "10m")]   // ttl overrides default_ttl; optional prefix = "page:"
    struct Page { path: String, html: String }

    let page = Page { path: "/about".into(), html: render("/about").await? };
    page.store(&db).await?;
    let cached: Option<Page> = Page::load(&db, "/about").await?;
    // On a miss one caller computes, concurrent callers wait for its value. The closure's
    // error type is yours; a failure comes back as `pgstack::Error::Compute`.
    let page = Page::load_or_compute(&db, "/about", || async {
        Ok::<_, std::io::Error>(Page { path: "/about".into(), html: render("/about").await? })
    }).await?;
    Ok(())
}

/// `[[rate_limit]]`: a check and its headers.
#[rustfmt::skip]
async fn rate_limit(db: DatabaseConnection, api_key: &str) -> Result {
    let decision = db::api::LIMITER.check(&db, &format!("key:{api_key}")).await?;
    if !decision.allowed {
        // Respond 429 with Retry-After and the RateLimit headers.
        for (name, value) in decision.headers("api") {
            println!("{name}: {value}");
        }
    }
    Ok(())
}

/// `[[vector]]`: `#[derive(Embedded)]`, search and hybrid search.
#[rustfmt::skip]
async fn vector(db: DatabaseConnection, query: Vec<f32>) -> Result {
    use pgstack::vector::{Embedded, Hybrid, Search};

    #[derive(pgstack::Embedded)]
    #[pgstack(collection = "articles")]           // names and types checked against pgstack.toml
    struct Article {
        #[pgstack(id)] id: i64,
        #[pgstack(embedding)] embedding: Vec<f32>, // Option<Vec<f32>> while rows may lack one
        title: String,                             // every declared field, Option<T> when nullable
        body: String,
        section: String,
    }

    let docs = vec![Article {
        id: 1, embedding: query.clone(), section: "account".into(),
        title: "Reset your password".into(), body: "Use the link on the sign-in page.".into(),
    }];
    Article::upsert_many(&db, &docs).await?;
    let search = Search::new(query.clone()).filter(db::articles::fields::SECTION.eq("account"));
    for hit in Article::search(&db, &search).await? {
        println!("{:.3} {}", hit.distance, hit.item.title);      // hit.item: a whole Article
    }
    for hit in Article::hybrid(&db, &Hybrid::new("reset password", query)).await? {
        // The fused score, and the row's rank in each list (None: not in that list).
        println!("{:.4} {:?} {:?} {}", hit.score, hit.semantic_rank, hit.keyword_rank, hit.item.title);
    }
    Ok(())
}

/// Read replicas: a `Cluster`.
#[rustfmt::skip]
async fn cluster(primary: DatabaseConnection, replica: DatabaseConnection) -> Result {
    use std::time::Duration;

    use pgstack::Cluster;

    let cluster = Cluster::builder(primary.clone())
        .replica(replica)
        .max_lag(Duration::from_secs(1))          // a replica further behind is skipped
        .start();
    let theme: Option<String> = db::settings::STORE.get(&cluster, "app.theme").await?; // a replica
    let session = cluster.session();              // reads its own writes
    db::settings::STORE.set(&session, "app.theme", &"dark").await?;                    // the primary
    let theme: Option<String> = db::settings::STORE.get(&session, "app.theme").await?; // the primary
    Ok(())
}

/// Operations: the job admin API.
#[rustfmt::skip]
async fn admin(db: DatabaseConnection) -> Result {
    use pgstack::queue::{Cancelled, JobFilter, JobState};

    let queue = &db::emails::QUEUE;
    // Jobs failing right now, 100 at a time (pass `page.next` as `.after(..)` for more).
    let page = queue.list_jobs(&db, &JobFilter::new(JobState::Retrying).kind("WelcomeEmail")).await?;
    for job in &page.jobs {
        println!("{} attempt {}/{}: {:?}", job.id, job.attempt, job.max_attempts, job.last_error);
    }
    if let Some(job) = page.jobs.first() {
        match queue.cancel(&db, job.id, "bad address").await? {
            Cancelled::Running => println!("its handler is told to stop"),
            Cancelled::Waiting | Cancelled::NotFound => {}
        }
    }
    queue.pause(&db, "mail provider outage").await?;   // every worker stops claiming
    queue.resume(&db).await?;
    queue.redrive_kind(&db, "WelcomeEmail", 1000).await?;  // dead letters back in line
    Ok(())
}

/// Operations: the maintenance runner.
#[rustfmt::skip]
async fn upkeep(db: DatabaseConnection) -> Result {
    // Every sweep pgstack.toml implies (expired cache, kv and rate-limit rows, the cache's
    // max_entries, archive partitions), every minute, one process at a time per table.
    let upkeep = db::upkeep().start(&db)?;
    // ... and when the application stops:
    upkeep.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The README's ```rust blocks, each as its lines without leading indentation.
    fn rust_blocks(markdown: &str) -> Vec<Vec<&str>> {
        let mut blocks = Vec::new();
        let mut current: Option<Vec<&str>> = None;
        for line in markdown.lines() {
            let trimmed = line.trim_start();
            match &mut current {
                None if trimmed == "```rust" => current = Some(Vec::new()),
                Some(block) if trimmed == "```" => {
                    blocks.push(std::mem::take(block));
                    current = None;
                }
                Some(block) => block.push(trimmed),
                None => {}
            }
        }
        blocks
    }

    /// Whether `block`'s lines appear in `source`, consecutively, indentation aside.
    fn holds(source: &str, block: &[&str]) -> bool {
        let lines: Vec<&str> = source.lines().map(str::trim_start).collect();
        lines.windows(block.len()).any(|window| window == block)
    }

    #[test]
    fn every_rust_example_of_the_readme_is_compiled_here() {
        let readme = include_str!("../../../README.md");
        let sources = [include_str!("readme.rs"), include_str!("main.rs")];
        let blocks = rust_blocks(readme);
        assert!(blocks.len() >= 6, "found {} blocks", blocks.len());
        for block in blocks {
            assert!(
                sources.iter().any(|source| holds(source, &block)),
                "this README example is not in examples/quickstart/src/readme.rs (or main.rs) \
                 word for word; copy it there so CI compiles it:\n{}",
                block.join("\n")
            );
        }
    }
}
