//! Incremental migrations, end to end against PostgreSQL: each spec change becomes a new
//! migration holding only that change; old migrations never change; destructive changes are
//! refused unless acknowledged; `check` catches every kind of drift.

use pgstack_tests::{CliRun, TempDir, TestDb, cli, cli_ok};

const V1: &str = r#"
[[kv]]
name = "settings"

[[document]]
name = "profiles"
[document.fields]
email = { path = "email", type = "text", unique = true }
"#;

/// V1 plus a declared field with an index.
const V2: &str = r#"
[[kv]]
name = "settings"

[[document]]
name = "profiles"
[document.fields]
email = { path = "email", type = "text", unique = true }
country = { path = "address.country", type = "text", index = true }
"#;

/// V2 plus an index on an existing field and a changed option.
const V3: &str = r#"
[[kv]]
name = "settings"
expiry = true

[[document]]
name = "profiles"
gin = "jsonb_ops"
[document.fields]
email = { path = "email", type = "text", unique = true }
country = { path = "address.country", type = "text", index = true }
"#;

fn migrate(dir: &TempDir, db: &TestDb) -> CliRun {
    cli_ok(
        &["migrate", "--database-url", &db.url],
        &dir.join("pgstack.toml"),
    )
}

fn migration_names(dir: &TempDir) -> Vec<String> {
    let mut names: Vec<String> = dir
        .files()
        .into_iter()
        .map(|(p, _)| p)
        .filter_map(|p| p.strip_prefix("migration/sql/").map(str::to_string))
        .filter_map(|p| p.strip_suffix(".up.sql").map(str::to_string))
        .collect();
    names.sort();
    names
}

/// The statements of a migration file, without comments and blank lines.
fn statements(sql: &str) -> Vec<String> {
    sql.split(";\n")
        .map(|s| {
            s.lines()
                .filter(|l| !l.trim_start().starts_with("--") && !l.trim().is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|s| !s.trim().is_empty())
        .collect()
}

#[tokio::test]
async fn each_spec_change_becomes_a_migration_holding_only_that_change() {
    let dir = TempDir::new("incremental");
    let db = TestDb::new().await;
    let spec = dir.write_spec(V1);

    let run = cli_ok(&["generate"], &spec);
    assert!(
        run.stdout.contains("new migration pgstack_0001_initial"),
        "{}",
        run.stdout
    );
    migrate(&dir, &db);
    let first_up = dir.read("migration/sql/pgstack_0001_initial.up.sql");
    let first_rs = dir.read("migration/src/pgstack/pgstack_0001_initial.rs");

    // No change: nothing written, nothing planned, check agrees.
    let run = cli_ok(&["generate"], &spec);
    assert_eq!(
        run.stdout.trim(),
        "pgstack-gen: everything is up to date; nothing written"
    );
    let run = cli_ok(&["plan"], &spec);
    assert!(run.stdout.starts_with("-- no changes"), "{}", run.stdout);
    cli_ok(&["check"], &spec);

    // Add a field: `plan` shows the SQL and writes nothing.
    std::fs::write(&spec, V2).unwrap();
    let before = dir.files();
    let run = cli_ok(&["plan"], &spec);
    assert!(
        run.stdout.contains("ADD COLUMN \"country\""),
        "{}",
        run.stdout
    );
    assert_eq!(dir.files(), before, "plan writes nothing");
    // check sees the pending change.
    let run = cli(&["check", "--spec", &spec.to_string_lossy()]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("no migration holds yet"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("add column `country`"),
        "{}",
        run.stderr
    );

    // A field added to a collection that holds documents: no rewrite under lock. A plain
    // column and the trigger that keeps it (catalog changes) in one migration; the backfill
    // in committed batches and the index, CONCURRENTLY, in a second run outside a
    // transaction. Every step is marked with its lock.
    let run = cli_ok(&["plan"], &spec);
    assert!(
        run.stdout.contains(
            "-- lock: ACCESS EXCLUSIVE on `profiles`, catalog only (brief; waits at most lock_timeout)"
        ),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("BLOCKING"), "{}", run.stdout);
    let run = cli_ok(&["generate"], &spec);
    assert!(
        run.stdout.contains(
            "new migration pgstack_0002_alter_profiles and pgstack_0003_alter_profiles_indexes"
        ),
        "{}",
        run.stdout
    );
    assert_eq!(
        migration_names(&dir),
        [
            "pgstack_0001_initial",
            "pgstack_0002_alter_profiles",
            "pgstack_0003_alter_profiles_indexes"
        ]
    );
    let up = dir.read("migration/sql/pgstack_0002_alter_profiles.up.sql");
    // (The function's body holds `;` too: look for each step rather than counting.)
    let steps = statements(&up);
    assert!(
        steps[0].starts_with("CREATE OR REPLACE FUNCTION \"public\".\"profiles_keep_fields\"()"),
        "{up}"
    );
    assert!(
        up.contains("NEW.\"country\" := NEW.\"doc\" #>> '{address,country}';"),
        "{up}"
    );
    assert!(
        steps.contains(
            &"ALTER TABLE \"public\".\"profiles\"     ADD COLUMN \"country\" text".to_string()
        ),
        "a plain column, no rewrite:\n{up}"
    );
    assert!(!up.contains("GENERATED ALWAYS"), "{up}");
    assert!(
        steps
            .last()
            .is_some_and(|s| s.starts_with("CREATE TRIGGER \"profiles_keep_fields\"")
                && s.contains("BEFORE INSERT OR UPDATE OF \"doc\" ON")),
        "{up}"
    );
    assert!(
        !up.contains("-- pgstack:no-transaction"),
        "transactional: {up}"
    );
    let down = dir.read("migration/sql/pgstack_0002_alter_profiles.down.sql");
    assert!(
        statements(&down).contains(
            &"ALTER TABLE \"public\".\"profiles\"     DROP COLUMN \"country\"".to_string()
        ),
        "{down}"
    );
    let up = dir.read("migration/sql/pgstack_0003_alter_profiles_indexes.up.sql");
    assert!(up.contains("\n-- pgstack:no-transaction"), "{up}");
    assert!(up.contains("DO $backfill$"), "{up}");
    assert!(up.contains("COMMIT;"), "each batch commits: {up}");
    assert!(
        up.contains(
            "DROP INDEX CONCURRENTLY IF EXISTS \"public\".\"profiles_country_idx\";\nCREATE INDEX CONCURRENTLY \"profiles_country_idx\""
        ),
        "{up}"
    );
    assert!(
        up.find("DO $backfill$") < up.find("CREATE INDEX CONCURRENTLY \"profiles"),
        "filled, then indexed: {up}"
    );
    let rs = dir.read("migration/src/pgstack/pgstack_0003_alter_profiles_indexes.rs");
    assert!(
        rs.contains("Some(false)"),
        "sea-orm runs it outside a transaction: {rs}"
    );
    assert_eq!(
        dir.read("migration/sql/pgstack_0001_initial.up.sql"),
        first_up,
        "never rewritten"
    );
    assert!(
        dir.read("migration/src/pgstack/pgstack_0001_initial.rs")
            .contains("SET LOCAL lock_timeout = '5s'"),
        "{first_rs}"
    );
    // A document written before the field existed is filled by the backfill.
    db.exec(r#"INSERT INTO profiles (doc) VALUES ('{"email": "old@b.c", "address": {"country": "SE"}}')"#)
        .await;
    let run = migrate(&dir, &db);
    assert_eq!(
        run.stdout.trim(),
        "applied pgstack_0002_alter_profiles\napplied pgstack_0003_alter_profiles_indexes"
    );
    assert_eq!(
        db.column("SELECT indisvalid::text FROM pg_index WHERE indexrelid = 'profiles_country_idx'::regclass")
            .await,
        ["true"]
    );
    db.exec(
        r#"INSERT INTO profiles (doc) VALUES ('{"email": "a@b.c", "address": {"country": "NO"}}')"#,
    )
    .await;
    assert_eq!(
        db.column("SELECT country FROM profiles ORDER BY id").await,
        ["SE", "NO"],
        "the old document backfilled, the new one set by the trigger"
    );
    db.exec(r#"UPDATE profiles SET doc = '{"email": "a@b.c", "address": {"country": "DK"}}' WHERE country = 'NO'"#)
        .await;
    assert_eq!(
        db.column("SELECT country FROM profiles ORDER BY id").await,
        ["SE", "DK"]
    );
    let drift = cli(&[
        "check",
        "--spec",
        &spec.to_string_lossy(),
        "--database-url",
        &db.url,
    ]);
    assert_eq!(drift.code, 0, "no drift: {drift:?}");

    // An index on an existing facility and changed options: the old index dropped in one
    // migration, the indexes built concurrently in the next.
    std::fs::write(&spec, V3).unwrap();
    cli_ok(&["generate"], &spec);
    let names = migration_names(&dir);
    assert_eq!(names.len(), 5, "{names:?}");
    let up = dir.read(&format!("migration/sql/{}.up.sql", names[3]));
    assert_eq!(
        statements(&up),
        ["DROP INDEX \"public\".\"profiles_doc_idx\"",],
        "{up}"
    );
    let up = dir.read(&format!("migration/sql/{}.up.sql", names[4]));
    assert_eq!(
        statements(&up),
        [
            "DROP INDEX CONCURRENTLY IF EXISTS \"public\".\"profiles_doc_idx\"",
            "CREATE INDEX CONCURRENTLY \"profiles_doc_idx\"     ON \"public\".\"profiles\" USING gin (\"doc\")",
            "DROP INDEX CONCURRENTLY IF EXISTS \"public\".\"settings_expires_at_idx\"",
            "CREATE INDEX CONCURRENTLY \"settings_expires_at_idx\"     ON \"public\".\"settings\" (\"expires_at\")     WHERE \"expires_at\" IS NOT NULL",
        ],
        "{up}"
    );
    migrate(&dir, &db);
    let indexes = db
        .column("SELECT indexdef FROM pg_indexes WHERE indexname IN ('profiles_doc_idx', 'settings_expires_at_idx') ORDER BY 1")
        .await;
    assert_eq!(indexes.len(), 2);
    assert!(indexes[0].contains("USING gin (doc)"), "{indexes:?}");
    cli_ok(&["check"], &spec);
}

#[tokio::test]
async fn destructive_changes_are_refused_unless_allowed() {
    let dir = TempDir::new("destructive");
    let db = TestDb::new().await;
    let spec = dir.write_spec(V2);
    cli_ok(&["generate"], &spec);
    migrate(&dir, &db);
    db.exec(r#"INSERT INTO settings (key, value) VALUES ('k', '1')"#)
        .await;

    // Drop a field, drop a facility, change a type: each refused, listed, nothing written.
    let v_destructive = r#"
[[document]]
name = "profiles"
[document.fields]
email = { path = "email", type = "bigint", unique = true }
"#;
    std::fs::write(&spec, v_destructive).unwrap();
    let before = dir.files();
    let run = cli(&["generate", "--spec", &spec.to_string_lossy()]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("refusing destructive changes; nothing was written"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(
            "drop table `settings` (kv `settings` removed): every row in the table is lost"
        ),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("--allow-destructive"), "{}", run.stderr);
    assert_eq!(dir.files(), before, "nothing written");
    // Dropping or retyping a *generated* column loses nothing, so it is not in the refusal.
    assert!(!run.stderr.contains("`country`"), "{}", run.stderr);

    // plan still shows what would happen, flagged.
    let run = cli_ok(&["plan"], &spec);
    assert!(
        run.stdout.contains("\n-- destructive changes"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("DROP TABLE \"public\".\"settings\";"),
        "{}",
        run.stdout
    );

    // Acknowledged: written, applied, and the stale accessor module removed.
    let run = cli_ok(
        &["generate", "--allow-destructive", "--allow-blocking"],
        &spec,
    );
    assert!(run.stdout.contains("removed "), "{}", run.stdout);
    assert!(!dir.join("src/pgstack/settings.rs").exists());
    migrate(&dir, &db);
    assert!(db.column("SELECT to_regclass('settings')::text").await == ["NULL"]);
    db.exec(r#"INSERT INTO profiles (doc) VALUES ('{"email": "42"}')"#)
        .await;
    assert_eq!(
        db.column("SELECT pg_typeof(email)::text FROM profiles")
            .await,
        ["bigint"]
    );
    cli_ok(&["check"], &spec);
}

#[tokio::test]
async fn changing_a_stored_column_type_is_destructive() {
    let dir = TempDir::new("retype");
    let db = TestDb::new().await;
    let spec = dir.write_spec("[[kv]]\nname = \"blobs\"\nvalue = \"jsonb\"\n");
    cli_ok(&["generate"], &spec);
    migrate(&dir, &db);
    db.exec(r#"INSERT INTO blobs (key, value) VALUES ('k', '{"a": 1}')"#)
        .await;
    std::fs::write(&spec, "[[kv]]\nname = \"blobs\"\nvalue = \"bytea\"\n").unwrap();
    let run = cli(&["generate", "--spec", &spec.to_string_lossy()]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("change type of `blobs.value` from jsonb to bytea"),
        "{}",
        run.stderr
    );
    cli_ok(
        &["generate", "--allow-destructive", "--allow-blocking"],
        &spec,
    );
    migrate(&dir, &db);
    // The conversion keeps the JSON text as bytes.
    assert_eq!(
        db.column("SELECT convert_from(value, 'UTF8') FROM blobs")
            .await,
        [r#"{"a": 1}"#]
    );
}

#[test]
fn check_catches_drift_in_every_generated_file() {
    let dir = TempDir::new("drift");
    let spec = dir.write_spec(V2);
    cli_ok(&["generate"], &spec);
    cli_ok(&["check"], &spec);
    let spec_arg = spec.to_string_lossy().into_owned();

    // An edited migration: caught by its checksum, and migrate refuses it.
    let up = "migration/sql/pgstack_0001_initial.up.sql";
    let original = dir.read(up);
    std::fs::write(
        dir.join(up),
        original.replace("jsonb_path_ops", "jsonb_ops"),
    )
    .unwrap();
    let run = cli(&["check", "--spec", &spec_arg]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("was changed after it was generated"),
        "{}",
        run.stderr
    );
    // The help names what fixes it: restoring the file, not `generate` (which has nothing to
    // write and would say so).
    assert!(
        run.stderr
            .contains("help: restore the migration files from version control")
            && run.stderr.contains("git checkout -- ")
            && run.stderr.contains("pgstack_0001_initial.up.sql"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("help: run `pgstack-gen generate"),
        "{}",
        run.stderr
    );
    let run = cli(&[
        "migrate",
        "--spec",
        &spec_arg,
        "--database-url",
        "postgres://unused",
    ]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("refusing to apply it"),
        "{}",
        run.stderr
    );
    // generate will not overwrite it either.
    std::fs::write(&spec, V3).unwrap();
    std::fs::remove_file(dir.join(up)).unwrap();
    let run = cli(&["check", "--spec", &spec_arg]);
    assert!(
        run.stderr
            .contains("pgstack_0001_initial.up.sql` is missing"),
        "{}",
        run.stderr
    );
    std::fs::write(dir.join(up), &original).unwrap();
    std::fs::write(&spec, V2).unwrap();
    cli_ok(&["check"], &spec);

    // An edited accessor: a readable diff and the command that fixes it.
    let accessor = "src/pgstack/settings.rs";
    let text = dir.read(accessor);
    std::fs::write(
        dir.join(accessor),
        text.replace("expiry: false", "expiry: true"),
    )
    .unwrap();
    let run = cli(&["check", "--spec", &spec_arg]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("`src/pgstack/settings.rs` is out of date"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("-    expiry: true,"), "{}", run.stderr);
    assert!(run.stderr.contains("+    expiry: false,"), "{}", run.stderr);
    assert!(
        run.stderr.contains("help: run `pgstack-gen generate"),
        "{}",
        run.stderr
    );
    cli_ok(&["generate"], &spec);
    cli_ok(&["check"], &spec);

    // A leftover module for a facility that no longer exists.
    std::fs::write(
        dir.join("src/pgstack/old.rs"),
        "// @generated by pgstack-gen from pgstack.toml; do not edit.\n",
    )
    .unwrap();
    let run = cli(&["check", "--spec", &spec_arg]);
    assert!(
        run.stderr
            .contains("`src/pgstack/old.rs` was generated for a facility no longer in the spec"),
        "{}",
        run.stderr
    );
    cli_ok(&["generate"], &spec);
    assert!(!dir.join("src/pgstack/old.rs").exists());

    // A corrupt state file is named.
    std::fs::write(dir.join("migration/pgstack-state.json"), "{").unwrap();
    let run = cli(&["check", "--spec", &spec_arg]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("`migration/pgstack-state.json` is not a valid pgstack state file"),
        "{}",
        run.stderr
    );
}

#[test]
fn moving_to_another_schema_is_refused() {
    let dir = TempDir::new("schema-move");
    let spec = dir.write_spec(V1);
    cli_ok(&["generate"], &spec);
    std::fs::write(&spec, format!("[project]\nschema = \"app\"\n{V1}")).unwrap();
    let run = cli(&[
        "generate",
        "--spec",
        &spec.to_string_lossy(),
        "--allow-destructive",
    ]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("changed from `public` to `app`"),
        "{}",
        run.stderr
    );
}

const VECTOR_V1: &str = r#"
[[vector]]
name = "docs"
dimensions = 8
index = { method = "hnsw", m = 16, ef_construction = 64 }
[vector.fields]
title = "text"
"#;

/// New HNSW parameters, a new field, full-text search added.
const VECTOR_V2: &str = r#"
[[vector]]
name = "docs"
dimensions = 8
index = { method = "hnsw", m = 24, ef_construction = 100 }
full_text = ["title", "body"]
[vector.fields]
title = "text"
body = "text"
"#;

/// Other dimensions: the stored embeddings cannot follow.
const VECTOR_V3: &str = r#"
[[vector]]
name = "docs"
dimensions = 16
index = { method = "hnsw", m = 24, ef_construction = 100 }
full_text = ["title", "body"]
[vector.fields]
title = "text"
body = "text"
"#;

#[tokio::test]
async fn vector_collections_evolve_through_migrations() {
    let dir = TempDir::new("vector-incremental");
    let db = TestDb::new().await;
    let spec = dir.write_spec(VECTOR_V1);
    cli_ok(&["generate"], &spec);
    migrate(&dir, &db);
    db.exec("INSERT INTO docs (id, embedding, title) VALUES (1, '[1,2,3,4,5,6,7,8]', 'kept')")
        .await;

    dir.write_spec(VECTOR_V2);
    let run = cli_ok(&["generate"], &spec);
    assert!(run.stdout.contains("alter_docs"), "{}", run.stdout);
    let names = migration_names(&dir);
    assert_eq!(
        names.len(),
        3,
        "the change, then its concurrent index builds: {names:?}"
    );
    let sql = dir.read(&format!("migration/sql/{}.up.sql", names[1]))
        + &dir.read(&format!("migration/sql/{}.up.sql", names[2]));
    let statements = statements(&sql);
    assert!(
        statements
            .iter()
            .any(|s| s.starts_with("DROP INDEX") && s.contains("docs_embedding_idx")),
        "{sql}"
    );
    assert!(
        statements
            .iter()
            .any(|s| s.contains("USING hnsw") && s.contains("ef_construction = 100, m = 24")),
        "{sql}"
    );
    assert!(
        statements
            .iter()
            .any(|s| s.ends_with("ADD COLUMN \"fts\" tsvector")),
        "{sql}"
    );
    assert!(
        !sql.contains("CREATE EXTENSION"),
        "the extension step runs once: {sql}"
    );
    migrate(&dir, &db);
    assert_eq!(
        db.column("SELECT title FROM docs WHERE fts @@ to_tsquery('english', 'kept')")
            .await,
        vec!["kept"]
    );
    assert_eq!(
        db.column("SELECT indexdef FROM pg_indexes WHERE indexname = 'docs_embedding_idx'")
            .await,
        vec![
            "CREATE INDEX docs_embedding_idx ON public.docs USING hnsw (embedding vector_cosine_ops) WITH (ef_construction='100', m='24')"
        ]
    );

    dir.write_spec(VECTOR_V3);
    let run = cli(&["generate", "--spec", &spec.to_string_lossy()]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("vector(8) to vector(16)"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn a_missing_pgvector_extension_fails_the_migration_with_the_command_to_run() {
    let dir = TempDir::new("vector-no-extension");
    let db = TestDb::new().await;
    let spec = dir.write_spec(VECTOR_V1);
    cli_ok(&["generate"], &spec);
    // A role that may not create extensions: the migration stops, naming what to run.
    let role = format!("no_ext_{}", db.name.rsplit('_').next().unwrap_or("x"));
    db.exec(&format!("DROP ROLE IF EXISTS {role}")).await;
    db.exec(&format!("CREATE ROLE {role} LOGIN")).await;
    db.exec(&format!("GRANT ALL ON SCHEMA public TO {role}"))
        .await;
    let url = db.url.replacen("postgres@", &format!("{role}@"), 1);
    let run = cli(&[
        "migrate",
        "--spec",
        &spec.to_string_lossy(),
        "--database-url",
        &url,
    ]);
    db.exec(&format!("DROP OWNED BY {role}")).await;
    db.exec(&format!("DROP ROLE {role}")).await;
    assert_eq!(run.code, 1, "{run:?}");
    let output = format!("{}{}", run.stdout, run.stderr);
    assert!(
        output.contains("may not create the extension \"vector\""),
        "{output}"
    );
    assert!(output.contains("CREATE EXTENSION vector"), "{output}");
    assert_eq!(
        db.column("SELECT count(*)::text FROM pg_tables WHERE tablename = 'docs'")
            .await,
        vec!["0"],
        "nothing was created"
    );
}
