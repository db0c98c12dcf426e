//! What a handler may know about the job it runs.

/// The running job's identity and metadata (the payload goes to the handler
/// as its input argument).
#[derive(Debug, Clone)]
pub struct Job {
    /// Job id, unique per enqueue.
    pub id: String,
    /// Tenant that owns the plugin.
    pub tenant: String,
    /// Plugin name within the tenant.
    pub plugin: String,
    /// 1 for the first run, 2 for the first retry, and so on.
    pub attempt: u32,
    /// MIME type of the payload.
    pub content_type: String,
}
