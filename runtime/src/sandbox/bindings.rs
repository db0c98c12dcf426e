//! Host bindings for the `spool:job/handler` world, generated from `wit/`.
//!
//! Kept in a file of its own: the generated code is large, and keeping it
//! apart makes clear that nothing here is hand-written.

wasmtime::component::bindgen!({
    world: "handler",
    path: "../wit",
});
