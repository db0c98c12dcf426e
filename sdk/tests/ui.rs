//! Compile-fail tests of `#[handler]`: each bad signature must be a spanned
//! error that says what the macro expected. Regenerate the expected output
//! with `TRYBUILD=overwrite cargo test -p spool-sdk --test ui` after a
//! deliberate message change.

#[test]
fn handler_signatures() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
