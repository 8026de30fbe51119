//! The planner without a database: for each case in `specs/plan/<case>/`, the migration that
//! takes `old.toml` to `new.toml`, snapshotted as its up SQL, its down SQL and the changes it
//! flags as destructive, or the error a change pgstack cannot migrate is refused with.

use pgstack_gen::generate::{Allow, FileKind, Layout, generate};
use pgstack_spec::Spec;
use pgstack_tests::crate_dir;

/// Case folders, sorted.
fn cases() -> Vec<String> {
    let dir = crate_dir().join("specs/plan");
    let mut cases: Vec<String> = std::fs::read_dir(&dir)
        .expect("specs/plan exists")
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    cases.sort();
    cases
}

fn spec(case: &str, file: &str) -> Spec {
    let path = crate_dir().join("specs/plan").join(case).join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    Spec::parse("pgstack.toml", &text).unwrap_or_else(|e| panic!("{case}/{file}: {e}"))
}

#[test]
fn every_plan_case_renders_up_down_and_destructive() {
    let cases = cases();
    assert!(cases.len() >= 8, "found {} cases", cases.len());
    for case in cases {
        let (old, new) = (spec(&case, "old.toml"), spec(&case, "new.toml"));
        let first = generate(&old, &Layout::of(&old, "pgstack.toml"), None, Allow::ALL)
            .unwrap_or_else(|e| panic!("{case}: old.toml: {e}"));
        let next = match generate(
            &new,
            &Layout::of(&new, "pgstack.toml"),
            Some(&first.state),
            Allow::ALL,
        ) {
            Ok(next) => next,
            Err(e) => {
                insta::assert_snapshot!(case.clone(), format!("-- refused:\n{e}\n"));
                continue;
            }
        };
        assert!(
            !next.new_migrations.is_empty(),
            "{case}: new.toml should need a migration"
        );
        // Every migration the change needs: the transactional one, then concurrent builds.
        let migration = |direction: &str| {
            next.new_migrations
                .iter()
                .map(|name| {
                    next.files
                        .iter()
                        .find(|f| {
                            f.kind == FileKind::Migration
                                && f.path.ends_with(&format!("{name}.{direction}.sql"))
                        })
                        .map(|f| f.contents.clone())
                        .unwrap_or_else(|| panic!("{case}: no {direction} migration {name}"))
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        let blocking = next.plan.blocking();
        let destructive = next.plan.destructive();
        let report = format!(
            "-- blocking:\n{}\n-- destructive:\n{}\n\n{}\n{}",
            if blocking.is_empty() {
                "--   (none)".to_string()
            } else {
                blocking
                    .iter()
                    .flat_map(|b| b.lines().map(|l| format!("--   {l}")).collect::<Vec<_>>())
                    .collect::<Vec<_>>()
                    .join("\n")
            },
            if destructive.is_empty() {
                "--   (none)".to_string()
            } else {
                destructive
                    .iter()
                    .map(|d| format!("--   {d}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            },
            migration("up"),
            migration("down"),
        );
        insta::assert_snapshot!(case.clone(), report);
    }
}
