//! After a deploy, a rollback or an unpin: wait until every running worker
//! reports that it serves the change (or refused it), and say so. Workers
//! publish their state on every change, so this normally takes as long as
//! the slowest worker needs to compile the version.

use super::super::exit;
use super::super::fleet_wait::{State, WaitArgs, settle};
use crate::deploy::{FleetStore, WorkerStatus};
use crate::ids::{PluginName, Version};

/// Wait until every worker serves `digest` as the pinned `name`.
pub(crate) async fn pinned(
    store: &FleetStore,
    name: &PluginName,
    digest: &Version,
    wait: &WaitArgs,
) -> u8 {
    let short = digest.short();
    let refused_path = format!("redis:{name}@{short}");
    let name = name.to_string();
    let judge = |w: &WorkerStatus| {
        let serving = w.plugins.iter().find(|p| p.name == name);
        if serving.is_some_and(|p| p.version == *digest && p.source == "deployed") {
            return State::Done;
        }
        if let Some(r) = w.rejected.iter().find(|r| r.path == refused_path) {
            return State::Refused(r.why.clone());
        }
        let now = serving.map_or_else(
            || "serves nothing under that name".to_string(),
            |p| format!("still serves {} ({})", p.version.short(), p.source),
        );
        State::Pending(format!(
            "{now}; it may still be compiling (see `spool plugins list`)"
        ))
    };
    let idle = "no worker is running; each worker loads it when it starts";
    let code = settle(store, wait, &format!("serve {short}"), idle, judge).await;
    if code == exit::FAILED {
        eprintln!(
            "spool: the pin stays for workers that can serve it; `spool plugins rollback NAME` or `unpin NAME` undoes it"
        );
    }
    code
}

/// Wait until no worker serves a pinned version of `name`.
pub(crate) async fn unpinned(store: &FleetStore, name: &PluginName, wait: &WaitArgs) -> u8 {
    let name = name.to_string();
    let judge = |w: &WorkerStatus| match w
        .plugins
        .iter()
        .find(|p| p.name == name && p.source == "deployed")
    {
        None => State::Done,
        Some(p) => State::Pending(format!("still serves the pinned {}", p.version.short())),
    };
    let idle = "no worker is running";
    settle(store, wait, "serve their directory's file", idle, judge).await
}
