//! Compile-fail tests of `#[handler]`: each bad signature must be a spanned
//! error that says what the macro expected. Regenerate the expected output
//! with `TRYBUILD=overwrite cargo test -p spool-sdk --test ui` after a
//! deliberate message change. Each failing case allows `unused`, so the
//! snapshots hold only the macro's own errors, never rustc's warnings,
//! whose text changes between compiler versions (no toolchain is pinned:
//! these machines cannot fetch another one).

#[test]
fn handler_signatures() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
