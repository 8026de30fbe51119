//! Spec validation: every error at once, as `path:line:column: message`, snapshotted per case
//! (one `specs/errors/<case>.toml` each); and a bad spec makes `generate` exit 2 writing nothing.

use pgstack_spec::Spec;
use pgstack_tests::{TempDir, cli, crate_dir};

fn cases() -> Vec<(String, String)> {
    let dir = crate_dir().join("specs/errors");
    let mut cases: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("specs/errors exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    cases.sort();
    cases
}

#[test]
fn every_error_case_is_reported_with_positions() {
    let cases = cases();
    assert!(
        cases.len() >= 8,
        "expected the error cases, found {}",
        cases.len()
    );
    for (name, text) in cases {
        let errors = match Spec::parse("pgstack.toml", &text) {
            Ok(_) => panic!("{name}.toml should not validate"),
            Err(errors) => errors,
        };
        for error in &errors.errors {
            // Every position points inside the file.
            let lines = text.lines().count();
            assert!(
                error.line >= 1 && error.line <= lines + 1,
                "{name}: {error}"
            );
        }
        insta::assert_snapshot!(name, errors.to_string());
    }
}

#[test]
fn all_errors_are_reported_not_only_the_first() {
    let text = std::fs::read_to_string(crate_dir().join("specs/errors/bad_values.toml")).unwrap();
    let errors = Spec::parse("pgstack.toml", &text).unwrap_err();
    assert!(errors.errors.len() >= 7, "{errors}");
    let mut positions: Vec<(usize, usize)> =
        errors.errors.iter().map(|e| (e.line, e.column)).collect();
    let sorted = {
        let mut p = positions.clone();
        p.sort();
        p
    };
    assert_eq!(positions, sorted, "errors come in source order");
    positions.dedup();
    assert_eq!(
        positions.len(),
        errors.errors.len(),
        "one error per position"
    );
}

#[test]
fn a_valid_spec_takes_defaults() {
    let spec = Spec::parse(
        "pgstack.toml",
        r#"
        [[kv]]
        name = "settings"

        [[document]]
        name = "profiles"
        [document.fields]
        nick = "text"
        country = { path = "address.country", index = true }
        "#,
    )
    .unwrap();
    assert_eq!(spec.project.schema, "public");
    assert_eq!(spec.project.migrations_dir, "migration");
    assert_eq!(spec.project.accessors_dir, "src/pgstack");
    assert_eq!(spec.kv[0].value, pgstack_spec::ValueType::Jsonb);
    assert!(!spec.kv[0].expiry);
    let doc = &spec.documents[0];
    assert_eq!(doc.gin, pgstack_spec::GinOps::JsonbPathOps);
    let names: Vec<&str> = doc.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["country", "nick"], "fields sorted by name");
    assert_eq!(doc.fields[0].path, ["address", "country"]);
    assert_eq!(doc.fields[0].ty, pgstack_spec::FieldType::Text);
    assert_eq!(doc.fields[1].path, ["nick"]);
}

#[test]
fn generate_with_a_bad_spec_exits_2_and_writes_nothing() {
    let dir = TempDir::new("bad-spec");
    let spec = dir.write_spec(
        r#"
        [[kv]]
        name = "settings"
        value = "json"

        [[document]]
        name = "Profiles"
        "#,
    );
    let spec_arg = spec.to_string_lossy().into_owned();
    for command in ["generate", "plan", "check"] {
        let run = cli(&[command, "--spec", &spec_arg]);
        assert_eq!(run.code, 2, "{command}: {run:?}");
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            3,
            "{command}: two errors and a summary:\n{}",
            run.stderr
        );
        assert!(lines[0].ends_with(
            "pgstack.toml:4:17: `value` in [[kv]] `settings` must be one of `jsonb` or `bytea`, found `json`"
        ), "{}", lines[0]);
        assert!(
            lines[1].contains("pgstack.toml:7:16: facility name `Profiles`"),
            "{}",
            lines[1]
        );
        assert_eq!(
            lines[2],
            "pgstack-gen: 2 errors in the spec; nothing was written"
        );
    }
    let files: Vec<String> = dir.files().into_iter().map(|(p, _)| p).collect();
    assert_eq!(files, ["pgstack.toml"], "nothing but the spec");
}

#[test]
fn a_missing_spec_file_is_a_clear_error() {
    let dir = TempDir::new("no-spec");
    let path = dir.join("pgstack.toml").to_string_lossy().into_owned();
    let run = cli(&["generate", "--spec", &path]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.starts_with("pgstack-gen: cannot read `"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("pgstack.toml`"), "{}", run.stderr);
}
