//! Enqueue a job from Rust and wait for its result.
//!
//! ```text
//! spool dev --plugins target/plugins            # in one terminal (or any worker)
//! cargo run -p spool-runtime --example enqueue -- hello '{"name":"Ada"}'
//! ```
//!
//! The Redis URL comes from `SPOOL_REDIS`, else `redis://127.0.0.1:6379`
//! (`spool dev` prints the URL of its private Redis).

use spool_runtime::ids::PluginName;
use spool_runtime::queue::{NewJob, Queue, QueueConfig, Status};
use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let plugin = PluginName::parse(&args.next().unwrap_or_else(|| "hello".into()))?;
    let input = args.next().unwrap_or_else(|| r#"{"name":"Ada"}"#.into());
    let url = std::env::var("SPOOL_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());

    let queue = Queue::connect(QueueConfig::new(url)).await?;
    let mut job = NewJob::new(plugin, input.into_bytes());
    job.wait = true; // ask for a completion notice
    let enqueued = queue.enqueue(&job).await?;
    println!("enqueued {}", enqueued.id);

    let record = queue
        .wait_for(&job.plugin.tenant, &enqueued.id, Duration::from_secs(60))
        .await?;
    match record.status {
        Some(Status::Succeeded) => println!("{}", record.output.unwrap_or_default()),
        _ => println!("job {} is dead: {:?}", record.id, record.error),
    }
    Ok(())
}
