//! Per-job sandbox cost: a fresh store, instantiate, call `handle` and drop,
//! for the `hello` plugin, beside the same work done natively.
//!
//! ```text
//! cargo bench -p spool-tests --bench sandbox
//! ```

use criterion::{Criterion, criterion_group, criterion_main};
use serde::{Deserialize, Serialize};
use spool_runtime::sandbox::{JobInput, Limits, PluginConfig};
use std::hint::black_box;

const PAYLOAD: &[u8] = br#"{"name":"Ada"}"#;

fn job() -> JobInput {
    JobInput {
        id: "bench".into(),
        tenant: "default".into(),
        plugin: "hello".into(),
        attempt: 1,
        content_type: "application/json".into(),
        payload: PAYLOAD.to_vec(),
    }
}

#[derive(Deserialize)]
struct Input {
    name: String,
}

#[derive(Serialize)]
struct Output {
    greeting: String,
}

fn native(payload: &[u8]) -> Vec<u8> {
    let input: Input = serde_json::from_slice(payload).unwrap();
    serde_json::to_vec(&Output {
        greeting: format!("Hello, {}!", input.name),
    })
    .unwrap()
}

fn per_job(c: &mut Criterion) {
    let plugin = spool_tests::plugin("hello");
    let limits = Limits::default();
    let config = PluginConfig::default();
    assert!(plugin.run(job(), &limits, config.clone()).result.is_ok());

    let mut group = c.benchmark_group("per_job");
    group.bench_function("hello_wasm", |b| {
        b.iter(|| black_box(plugin.run(job(), &limits, config.clone()).result.unwrap()));
    });
    group.bench_function("hello_native", |b| {
        b.iter(|| black_box(native(black_box(PAYLOAD))));
    });
    group.finish();
}

criterion_group!(benches, per_job);
criterion_main!(benches);
