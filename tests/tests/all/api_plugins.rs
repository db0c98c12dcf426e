//! `/v1/plugins` of `spool serve` (issue 14): deploy, rollback, unpin and
//! history over HTTP with tenant tokens, against a real `spool worker`
//! process that serves what the fleet store pins.

use crate::SPOOL;
use crate::api::{Reply, get, request, request_typed, serve, token};
use spool_runtime::ids::Version;
use spool_tests::fleet::Env;
use spool_tests::variant;

fn digest(bytes: &[u8]) -> String {
    Version::of(bytes).as_str().to_string()
}

fn post(server: &impl AsRef<str>, path: &str, token: &str, body: &[u8]) -> Reply {
    request(server, "POST", path, Some(token), body)
}

fn deploy_raw(server: &impl AsRef<str>, name: &str, token: &str, bytes: &[u8]) -> Reply {
    request_typed(
        server,
        "POST",
        &format!("/v1/plugins/{name}/deploy"),
        Some(token),
        "application/wasm",
        bytes,
    )
}

fn shown(reply: &Reply) -> String {
    format!("{} {}", reply.status, String::from_utf8_lossy(&reply.body))
}

/// The version of acme/hello that new jobs run on.
fn version_run(env: &Env) -> String {
    let id = env.enqueue("acme/hello", r#"{"name":"v"}"#);
    env.wait(&id).version.expect("a version in the record")
}

/// Wait until the worker serves acme/hello at `version`, as the API shows.
fn wait_serving(env: &Env, server: &impl AsRef<str>, token: &str, version: &str) {
    env.wait_for(&format!("the worker serving {version}"), || {
        let list = get(server, "/v1/plugins", Some(token)).json();
        list["plugins"].as_array().unwrap().iter().any(|p| {
            p["name"] == "acme/hello"
                && p["version"] == version
                && !p["workers"].as_array().unwrap().is_empty()
        })
    });
}

#[test]
fn a_tenant_deploys_rolls_back_and_unpins_its_plugin_over_http() {
    let env = Env::new("api-deploy");
    let (v0, v1) = (variant("hello", 0), variant("hello", 1));
    let (d0, d1) = (digest(&v0), digest(&v1));
    let dir = env.subdir("plugins");
    std::fs::create_dir_all(dir.join("acme")).unwrap();
    std::fs::write(dir.join("acme/hello.wasm"), &v0).unwrap();
    let _worker = env.worker_process(SPOOL, &dir, &["--id", "w1"]);
    let server = serve(&env, &[]);
    let (acme, acme_id) = token(&env, &["--tenant", "acme", "--scopes", "read,deploy"]);
    let (reader, _) = token(&env, &["--tenant", "acme", "--scopes", "read"]);
    wait_serving(&env, &server, &acme, &d0);

    // A reader may look but not deploy.
    assert_eq!(deploy_raw(&server, "hello", &reader, &v1).status, 403);
    let done = deploy_raw(&server, "hello", &acme, &v1);
    assert_eq!(done.status, 201, "{}", shown(&done));
    let done = done.json();
    assert_eq!(done["name"], "acme/hello");
    assert_eq!(done["version"]["digest"], d1.as_str());
    assert_eq!(done["version"]["action"], "deploy");
    assert!(
        done["version"]["by"].as_str().unwrap().contains(&acme_id),
        "{done}"
    );
    wait_serving(&env, &server, &acme, &d1);
    assert_eq!(version_run(&env), d1);
    // The same bytes again change nothing.
    let again = deploy_raw(&server, "hello", &acme, &v1);
    assert_eq!(again.status, 200, "{}", shown(&again));
    assert_eq!(again.json()["created"], false);

    let back = post(&server, "/v1/plugins/hello/rollback", &acme, b"");
    assert_eq!(back.status, 200, "{}", shown(&back));
    let back = back.json();
    assert_eq!(back["from"]["digest"], d1.as_str());
    assert_eq!(back["to"]["digest"], d0.as_str());
    wait_serving(&env, &server, &acme, &d0);
    assert_eq!(version_run(&env), d0);

    let history = get(&server, "/v1/plugins/hello/history", Some(&acme));
    assert_eq!(history.status, 200, "{}", shown(&history));
    let history = history.json();
    let entries: Vec<(&str, &str)> = history["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["digest"].as_str().unwrap()))
        .collect();
    assert_eq!(
        entries,
        [
            ("rollback", d0.as_str()),
            ("deploy", &d1),
            ("directory", &d0)
        ]
    );
    assert_eq!(history["current"], d0.as_str());
    assert_eq!(history["pinned"]["digest"], d0.as_str());
    // The directory version names its file, not where the worker keeps it.
    let by = history["versions"][2]["by"].as_str().unwrap();
    assert!(by.ends_with(": acme/hello.wasm"), "{by}");
    assert!(
        !history.to_string().contains(&dir.display().to_string()),
        "{history}"
    );

    // A digest that is in no history is the field's fault.
    let bad = post(
        &server,
        "/v1/plugins/hello/rollback",
        &acme,
        br#"{"to":"ffff"}"#,
    );
    assert_eq!(bad.status, 400, "{}", shown(&bad));
    assert_eq!(bad.json()["error"]["field"], "to");

    let unpinned = post(&server, "/v1/plugins/hello/unpin", &acme, b"");
    assert_eq!(unpinned.status, 200, "{}", shown(&unpinned));
    assert_eq!(unpinned.json()["unpinned"]["digest"], d0.as_str());
    let list = get(&server, "/v1/plugins", Some(&acme)).json();
    assert!(list["pinned"].as_object().unwrap().is_empty(), "{list}");
    let twice = post(&server, "/v1/plugins/hello/unpin", &acme, b"").json();
    assert_eq!(twice["unpinned"], serde_json::Value::Null);
}

#[test]
fn a_deploy_that_does_not_load_is_refused_and_other_tenants_are_out_of_reach() {
    let env = Env::new("api-deploy-refused");
    let server = serve(&env, &[]);
    let (acme, _) = token(&env, &["--tenant", "acme", "--scopes", "read,deploy"]);
    let (beta, _) = token(&env, &["--tenant", "beta", "--scopes", "read,deploy"]);
    let (operator, _) = token(&env, &["--all-tenants", "--scopes", "read,deploy"]);
    let v0 = variant("hello", 0);
    let d0 = digest(&v0);

    // Not wasm, a core module's header cut short, a bad manifest: each is
    // refused naming the field, and nothing is recorded.
    let junk = deploy_raw(&server, "hello", &acme, b"#!/bin/sh\necho hi\n");
    assert_eq!(junk.status, 400, "{}", shown(&junk));
    let junk = junk.json();
    assert_eq!(junk["error"]["kind"], "invalid-plugin");
    assert_eq!(junk["error"]["field"], "component");
    assert!(
        junk["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a WebAssembly file"),
        "{junk}"
    );
    let cut = deploy_raw(&server, "hello", &acme, &v0[..v0.len() / 2]);
    assert_eq!(cut.status, 400, "{}", shown(&cut));
    assert_eq!(cut.json()["error"]["field"], "component");
    use base64::Engine as _;
    let with_manifest = |manifest: &str| {
        serde_json::json!({
            "component_base64": base64::engine::general_purpose::STANDARD.encode(&v0),
            "manifest": manifest,
        })
        .to_string()
    };
    let bad = post(
        &server,
        "/v1/plugins/hello/deploy",
        &acme,
        with_manifest("memory = \"lots\"\n").as_bytes(),
    );
    assert_eq!(bad.status, 400, "{}", shown(&bad));
    assert_eq!(bad.json()["error"]["field"], "manifest");
    // A deadline past the workers' ceiling is refused; a tenant cannot
    // grant itself a capability.
    let long = post(
        &server,
        "/v1/plugins/hello/deploy",
        &acme,
        with_manifest("timeout = \"100y\"\n").as_bytes(),
    );
    assert_eq!(long.status, 400, "{}", shown(&long));
    assert!(
        long.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("above this worker's limit"),
        "{}",
        shown(&long)
    );
    let grant = post(
        &server,
        "/v1/plugins/hello/deploy",
        &acme,
        with_manifest("[capabilities]\nnetwork = true\n").as_bytes(),
    );
    assert_eq!(grant.status, 403, "{}", shown(&grant));
    assert_eq!(grant.json()["error"]["field"], "manifest");
    let huge = post(
        &server,
        "/v1/plugins/hello/deploy",
        &acme,
        with_manifest(&format!("# {}\n", "x".repeat(70_000))).as_bytes(),
    );
    assert_eq!(huge.status, 413, "{}", shown(&huge));
    assert_eq!(huge.json()["error"]["field"], "manifest");
    let none = get(&server, "/v1/plugins/hello/history", Some(&acme));
    assert_eq!(none.status, 404, "{}", shown(&none));

    // With a good manifest it lands, and the manifest is kept with it.
    let good = post(
        &server,
        "/v1/plugins/hello/deploy",
        &acme,
        with_manifest("timeout = \"2s\"\n").as_bytes(),
    );
    assert_eq!(good.status, 201, "{}", shown(&good));
    assert_eq!(good.json()["version"]["manifest"], "timeout = \"2s\"\n");
    // One version only: nothing to roll back to.
    let lone = post(&server, "/v1/plugins/hello/rollback", &acme, b"");
    assert_eq!(lone.status, 409, "{}", shown(&lone));
    assert_eq!(lone.json()["error"]["retryable"], false);

    // Beta can neither change nor read acme's plugin, nor see it listed.
    for path in [
        "/v1/plugins/acme%2Fhello/deploy",
        "/v1/plugins/acme%2Fhello/rollback",
        "/v1/plugins/acme%2Fhello/unpin",
    ] {
        let r = post(&server, path, &beta, &v0);
        assert_eq!(r.status, 403, "{path}: {}", shown(&r));
    }
    let r = get(&server, "/v1/plugins/acme%2Fhello/history", Some(&beta));
    assert_eq!(r.status, 403, "{}", shown(&r));
    let list = get(&server, "/v1/plugins", Some(&beta)).json();
    assert_eq!(list["plugins"], serde_json::json!([]), "{list}");
    assert!(list["pinned"].as_object().unwrap().is_empty(), "{list}");
    // The operator names it in full, and sees it.
    let op = get(&server, "/v1/plugins/acme%2Fhello/history", Some(&operator));
    assert_eq!(op.status, 200, "{}", shown(&op));
    assert_eq!(op.json()["current"], d0.as_str());
    let list = get(&server, "/v1/plugins", Some(&operator)).json();
    assert_eq!(
        list["pinned"]["acme/hello"]["digest"],
        d0.as_str(),
        "{list}"
    );

    // A component over the deploy cap is refused before it is all read.
    let huge = vec![0u8; (64 << 20) + 1];
    let r = deploy_raw(&server, "big", &acme, &huge);
    assert_eq!(r.status, 413, "{}", shown(&r));
}
