//! `spool plugins list` and `spool plugins history`: read-only views of the
//! fleet store and of the workers' reports.

use super::super::exit;
use super::super::job::time;
use super::super::shown::shown;
use super::fail;
use crate::deploy::{FleetStore, Served, VersionEntry, WorkerStatus, served};
use crate::ids::PluginName;
use std::collections::BTreeMap;

pub(super) async fn list(store: &FleetStore, json: bool) -> u8 {
    let (workers, pinned) = match tokio::try_join!(store.workers(), store.pinned()) {
        Ok(both) => both,
        Err(e) => return fail(&e),
    };
    let rows = served(&workers, &pinned);
    if json {
        print_list_json(&rows, &pinned, &workers);
        return exit::OK;
    }
    if workers.is_empty() {
        println!("no worker is running (workers report what they serve every few seconds)");
    } else {
        print_rows(&rows, &workers);
    }
    let refused: Vec<_> = workers
        .iter()
        .flat_map(|w| w.rejected.iter().map(move |r| (w, r)))
        .collect();
    if !refused.is_empty() {
        println!("refused (the version serving before stays):");
        for (w, r) in refused {
            println!("  worker {}: {}", shown(&w.worker), shown(&r.why));
        }
    }
    print_wedged(&workers);
    exit::OK
}

/// Job threads the workers' watchdogs gave up on and that are not back:
/// capacity lost until they return.
fn print_wedged(workers: &[WorkerStatus]) {
    let wedged: Vec<_> = workers
        .iter()
        .flat_map(|w| w.wedged.iter().map(move |j| (w, j)))
        .collect();
    if wedged.is_empty() {
        return;
    }
    println!(
        "wedged job threads (a host call did not return; each holds a thread until it does, its job was released):"
    );
    for (w, j) in wedged {
        println!(
            "  worker {}: job {} ({}) since {}",
            shown(&w.worker),
            shown(&j.job),
            shown(&j.plugin),
            time(j.since_us)
        );
    }
}

/// `spool plugins list --json`: rows, pins, refusals and the raw reports.
fn print_list_json(
    rows: &[Served],
    pinned: &BTreeMap<PluginName, VersionEntry>,
    workers: &[WorkerStatus],
) {
    let refused: Vec<_> = workers
        .iter()
        .flat_map(|w| {
            w.rejected
                .iter()
                .map(|r| serde_json::json!({"worker": w.worker, "path": r.path, "why": r.why}))
        })
        .collect();
    let value = serde_json::json!({
        "plugins": rows,
        "pinned": pinned.iter().map(|(n, e)| (n.to_string(), e)).collect::<BTreeMap<_, _>>(),
        "rejected": refused,
        "workers": workers,
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&value).unwrap_or_default()
    );
}

/// The table of what the workers serve, and which pins shadow a file.
fn print_rows(rows: &[Served], workers: &[WorkerStatus]) {
    println!(
        "{:<24} {:<12}  {:<7} {:<9} {:<8} LOADED AT",
        "PLUGIN", "VERSION", "SDK", "SOURCE", "WORKERS"
    );
    for row in rows {
        println!(
            "{:<24} {:<12}  {:<7} {:<9} {:<8} {}",
            row.name,
            &row.version[..12.min(row.version.len())],
            row.sdk.as_deref().unwrap_or("-"),
            row.source,
            format!("{} of {}", row.workers.len(), workers.len()),
            if row.loaded_us == 0 {
                "-".to_string()
            } else {
                time(row.loaded_us)
            },
        );
    }
    for w in workers {
        for p in w.plugins.iter().filter(|p| p.shadowed.is_some()) {
            println!(
                "  {}: worker {} has {} in its directory; the pinned version wins (`spool plugins unpin {}` serves the file)",
                p.name,
                w.worker,
                p.shadowed.as_deref().unwrap_or_default(),
                p.name
            );
        }
    }
}

pub(super) async fn history(store: &FleetStore, name: &PluginName, json: bool) -> u8 {
    let (history, mut pinned) = match tokio::try_join!(store.history(name), store.pinned()) {
        Ok(both) => both,
        Err(e) => return fail(&e),
    };
    let pin = pinned.remove(name);
    // What serves: the pin, else the newest version loaded from a directory.
    let current = crate::deploy::current(pin.clone(), &history).map(|e| e.digest);
    if json {
        let value = serde_json::json!({
            "name": name.to_string(),
            "pinned": pin,
            "current": current,
            "versions": history,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
        return exit::OK;
    }
    if history.is_empty() {
        println!(
            "{name}: no recorded versions (no worker has loaded it and it was never deployed)"
        );
        return exit::OK;
    }
    println!(
        "{name}: {} entries, newest first; * serves{}",
        history.len(),
        if pin.is_some() {
            " (pinned)"
        } else {
            " (from the workers' directories)"
        }
    );
    println!(
        "  {:<12}  {:<9} {:<24} {:>9}  {:<7} BY",
        "VERSION", "ACTION", "AT", "BYTES", "SDK"
    );
    let mut marked = false;
    for e in &history {
        let here = !marked && current.as_ref() == Some(&e.digest);
        marked |= here;
        println!(
            "{} {:<12}  {:<9} {:<24} {:>9}  {:<7} {}",
            if here { "*" } else { " " },
            e.short(),
            e.action.as_str(),
            time(e.at_us),
            e.size,
            e.sdk.as_deref().unwrap_or("-"),
            e.by
        );
    }
    exit::OK
}
