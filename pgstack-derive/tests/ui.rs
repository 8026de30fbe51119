//! Compile-time behaviour of the derives: what compiles, and the errors (with their spans)
//! for each mistake, one file per mistake.

#[test]
fn ui() {
    let spec = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/pgstack.toml");
    // SAFETY: this is the only test in this binary, so no other thread reads the environment.
    unsafe { std::env::set_var("PGSTACK_SPEC", spec) };
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
