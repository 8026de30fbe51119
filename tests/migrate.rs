//! `pgstack-gen migrate`: concurrent runners, atomic failure, and agreement with the generated
//! sea-orm-migration crate (including its down migrations).

use pgstack_tests::{TempDir, TestDb, cli, cli_ok, fixture_spec};
use sea_orm_migration::MigratorTrait;

const V1: &str = r#"
[[kv]]
name = "settings"

[[document]]
name = "profiles"
[document.fields]
email = { path = "email", type = "text" }
"#;

const V2: &str = r#"
[[kv]]
name = "settings"

[[kv]]
name = "cache_entries"

[[document]]
name = "profiles"
[document.fields]
email = { path = "email", type = "text", unique = true }
"#;

/// V1 with a bytes kv store, then V2_RETYPED: a second kv store and the bytes store retyped
/// to jsonb, a conversion that bytes which are not JSON fail, inside the migration's
/// transaction.
const V1_BYTES: &str = r#"
[[kv]]
name = "settings"

[[kv]]
name = "blobs"
value = "bytea"

[[document]]
name = "profiles"
[document.fields]
email = { path = "email", type = "text" }
"#;

const V2_RETYPED: &str = r#"
[[kv]]
name = "settings"

[[kv]]
name = "cache_entries"

[[kv]]
name = "blobs"
value = "jsonb"

[[document]]
name = "profiles"
[document.fields]
email = { path = "email", type = "text" }
"#;

#[tokio::test]
async fn concurrent_migrate_applies_each_migration_once() {
    let dir = TempDir::new("concurrent");
    let db = TestDb::new().await;
    let spec = dir.write_spec(V1);
    cli_ok(&["generate"], &spec);
    std::fs::write(&spec, V2).unwrap();
    cli_ok(&["generate"], &spec);

    let spec_arg = spec.to_string_lossy().into_owned();
    let runners: Vec<_> = (0..6)
        .map(|_| {
            let (spec, url) = (spec_arg.clone(), db.url.clone());
            std::thread::spawn(move || cli(&["migrate", "--spec", &spec, "--database-url", &url]))
        })
        .collect();
    let runs: Vec<_> = runners.into_iter().map(|r| r.join().unwrap()).collect();
    for run in &runs {
        assert_eq!(run.code, 0, "{run:?}");
    }
    let applied: usize = runs
        .iter()
        .map(|r| {
            r.stdout
                .lines()
                .filter(|l| l.starts_with("applied "))
                .count()
        })
        .sum();
    assert_eq!(
        applied, 3,
        "three migrations (the last builds an index concurrently), each applied by exactly \
         one runner: {runs:#?}"
    );
    let rows = db
        .column(r#"SELECT version FROM seaql_migrations ORDER BY version"#)
        .await;
    assert_eq!(
        rows,
        [
            "pgstack_0001_initial",
            "pgstack_0002_update_cache_entries_profiles",
            "pgstack_0003_update_cache_entries_profiles_indexes"
        ]
    );
}

#[tokio::test]
async fn a_failed_migration_leaves_the_database_as_it_was() {
    let dir = TempDir::new("atomic");
    let db = TestDb::new().await;
    let spec = dir.write_spec(V1_BYTES);
    cli_ok(&["generate"], &spec);
    cli_ok(&["migrate", "--database-url", &db.url], &spec);
    // Bytes that the next migration's conversion to jsonb cannot accept.
    db.exec(r#"INSERT INTO blobs (key, value) VALUES ('k', '\x00ff')"#)
        .await;
    std::fs::write(&spec, V2_RETYPED).unwrap();
    cli_ok(
        &["generate", "--allow-destructive", "--allow-blocking"],
        &spec,
    );

    let run = cli(&[
        "migrate",
        "--spec",
        &spec.to_string_lossy(),
        "--database-url",
        &db.url,
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    let name = "pgstack_0002_update_blobs_cache_entries";
    assert!(
        run.stderr
            .contains(&format!("migration `{name}` failed and was rolled back")),
        "{}",
        run.stderr
    );
    // It names the file, the line the failing statement starts on in it, and the statement;
    // not the "at line N" of PostgreSQL's C source that sqlx appends.
    let file = format!("migration/sql/{name}.up.sql");
    let sql = std::fs::read_to_string(dir.join(&file)).unwrap();
    let line = 1 + sql
        .lines()
        .position(|l| l.starts_with("ALTER TABLE \"public\".\"blobs\""))
        .expect("the migration retypes the column");
    let expected = format!("{file}:{line}: `ALTER TABLE \"public\".\"blobs\"");
    assert!(run.stderr.contains(&expected), "{expected}\n{}", run.stderr);
    assert!(run.stderr.contains("SQLSTATE 22"), "{}", run.stderr);
    assert!(!run.stderr.contains(" at line "), "{}", run.stderr);
    // The table the same migration created first is not there; nothing was recorded.
    assert_eq!(
        db.column("SELECT to_regclass('cache_entries')::text").await,
        ["NULL"]
    );
    assert_eq!(
        db.column("SELECT version FROM seaql_migrations").await,
        ["pgstack_0001_initial"]
    );

    // Fix the data, run again: applied.
    db.exec("DELETE FROM blobs").await;
    let run = cli_ok(&["migrate", "--database-url", &db.url], &spec);
    assert!(
        run.stdout.contains("applied pgstack_0002"),
        "{}",
        run.stdout
    );
}

#[test]
fn migrate_needs_a_database_url() {
    let dir = TempDir::new("no-url");
    let spec = dir.write_spec(V1);
    cli_ok(&["generate"], &spec);
    let run = cli(&["migrate", "--spec", &spec.to_string_lossy()]);
    if std::env::var_os("DATABASE_URL").is_none() {
        assert_eq!(run.code, 1);
        assert!(
            run.stderr
                .contains("pass --database-url or set DATABASE_URL"),
            "{}",
            run.stderr
        );
    }
    let run = cli(&[
        "migrate",
        "--spec",
        &spec.to_string_lossy(),
        "--database-url",
        "postgres://postgres@127.0.0.1:not-a-port/none",
    ]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .starts_with("pgstack-gen: cannot connect to the database"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn the_generated_sea_orm_crate_agrees_with_pgstack_gen_migrate() {
    // sea-orm-migration's own runner applies the committed fixture migrations ...
    let db = TestDb::new().await;
    migration::Migrator::up(&db.conn, None).await.unwrap();
    let tables = db
        .column("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
        .await;
    // Every table the spec asks for (and sea-orm's bookkeeping table), nothing else.
    let project = pgstack_gen::project::Project::open(&fixture_spec()).unwrap();
    let desired = pgstack_gen::facility::desired_schema(&project.spec).unwrap();
    let mut expected: Vec<String> = desired
        .tables
        .values()
        .map(|t| t.name.clone())
        .chain(["seaql_migrations".to_string()])
        .collect();
    expected.sort();
    assert_eq!(tables, expected);
    // ... and `pgstack-gen migrate` sees them as applied.
    let run = cli_ok(&["migrate", "--database-url", &db.url], &fixture_spec());
    assert!(run.stdout.contains("nothing to apply"), "{}", run.stdout);

    // The generated down migrations undo everything, and up works again after.
    migration::Migrator::down(&db.conn, None).await.unwrap();
    let tables = db
        .column("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
        .await;
    assert_eq!(tables, ["seaql_migrations"]);
    let functions = db
        .column("SELECT proname::text FROM pg_proc WHERE proname LIKE 'pgstack_%'")
        .await;
    assert!(functions.is_empty(), "{functions:?}");
    migration::Migrator::up(&db.conn, None).await.unwrap();
    let recorded = pgstack_gen::project::Project::open(&fixture_spec())
        .unwrap()
        .migrations()
        .unwrap()
        .len();
    assert_eq!(
        db.column("SELECT count(*)::text FROM seaql_migrations")
            .await,
        [recorded.to_string()]
    );
}

/// A syntax error points at the line PostgreSQL points at, inside a multi-line statement,
/// counted in the migration file.
#[tokio::test]
async fn a_syntax_error_names_its_own_line() {
    let db = TestDb::new().await;
    let sql = "-- header\nCREATE TABLE ok (x int);\n\nCREATE TABLE broken (\n    x int,\n    y int int\n);\n";
    let migration = pgstack::migrate::SqlMigration {
        name: "m1".into(),
        file: "sql/m1.up.sql".into(),
        up_sql: sql.into(),
    };
    let err = pgstack::migrate::apply(&db.conn, &[migration])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sql/m1.up.sql:6: `CREATE TABLE broken (`: syntax error"),
        "{err}"
    );
    assert_eq!(
        db.column("SELECT to_regclass('ok')::text").await,
        ["NULL"],
        "rolled back"
    );
}
