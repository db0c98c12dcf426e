//! The dashboard (issue 14) in real headless Chromium, driven over
//! WebDriver: a real `spool serve`, a real worker and Redis. Screenshots
//! of each page go to `target/screenshots/` for review.

use crate::api::{request, request_typed, serve, token};
use spool_runtime::queue::Status;
use spool_tests::fleet::Env;
use spool_tests::variant;
use spool_tests::webdriver::Browser;
use std::path::PathBuf;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn shot(browser: &Browser, name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/screenshots")
        .join(format!("dashboard-{name}.png"));
    browser.screenshot(&path);
    path
}

fn sign_in(browser: &Browser, base: &str, token: &str) {
    browser.goto(&format!("{base}/#/overview"));
    let field = browser.wait_for("#token", WAIT);
    browser.type_into(&field, token);
    browser.click(&browser.wait_for("#sign-in", WAIT));
    browser.wait_for("#summary", WAIT);
}

#[test]
fn a_tenant_watches_jobs_retries_a_dead_letter_and_rolls_back_in_the_browser() {
    let env = Env::new("dashboard");
    // The succeeded list is the --keep-succeeded set (on by default; the
    // test environment turns it off).
    let _worker = env.worker(
        &[("acme/echo", "introspect"), ("beta/echo", "introspect")],
        |c| c.queue.keep_succeeded = Some(1_000),
    );
    let server = serve(&env, &[]);
    let base = format!("http://{}", server.as_ref() as &str);
    let (acme, _) = token(
        &env,
        &["--tenant", "acme", "--scopes", "submit,read,deploy,admin"],
    );
    let (beta, _) = token(&env, &["--tenant", "beta", "--scopes", "read"]);
    // Two versions of a plugin, deployed over the API: something to roll back.
    for n in 0..2 {
        let r = request_typed(
            &server,
            "POST",
            "/v1/plugins/greet/deploy",
            Some(&acme),
            "application/wasm",
            &variant("hello", n),
        );
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    }
    let browser = Browser::start(&env.subdir("browser"));
    sign_in(&browser, &base, &acme);

    // A job enqueued now appears while it runs, then among the succeeded.
    let id = env.enqueue("acme/echo", r#"{"sleep_ms":1500,"echo":"from the test"}"#);
    browser.goto(&format!("{base}/#/jobs?status=running"));
    browser.wait_for(&format!("tr[data-job='{id}']"), WAIT);
    shot(&browser, "jobs");
    browser.goto(&format!("{base}/#/jobs?status=succeeded"));
    let row = browser.wait_for(&format!("tr[data-job='{id}'] a"), WAIT);
    browser.click(&row);
    browser.wait_text("#job-facts", WAIT, |t| t.contains("succeeded"));
    let output = browser.text("#job-output");
    assert!(
        output.contains("from the test") && output.contains(&id),
        "{output}"
    );
    shot(&browser, "job");

    // A dead letter, retried from the page: it runs again (and dies again:
    // the fixture fails for good), so its record shows a later death.
    let mut fatal = env.job("acme/echo", r#"{"fail":"fatal"}"#);
    fatal.max_attempts = 1;
    let dead = env.enqueue_job(fatal);
    let first = env.wait(&dead);
    assert_eq!(first.status, Some(Status::Dead));
    browser.goto(&format!("{base}/#/dead"));
    let retry = browser.wait_for(&format!("tr[data-job='{dead}'] button.retry"), WAIT);
    shot(&browser, "dead");
    browser.click(&retry);
    browser.wait_text("#toast", WAIT, |t| t.contains("retried 1"));
    env.wait_for("the retried dead letter to run again", || {
        env.record(&dead).finished_us > first.finished_us
    });

    // Roll the plugin back from its page.
    browser.goto(&format!("{base}/#/plugin/greet"));
    browser.click(&browser.wait_for("#rollback", WAIT));
    browser.wait_text("#toast", WAIT, |t| t.contains("rolled back from"));
    browser.wait_text("#history-table", WAIT, |t| t.contains("rollback"));
    shot(&browser, "plugin");

    // The overview charts the jobs: workers flush every 5 s, and the page
    // reads again as often.
    browser.goto(&format!("{base}/#/overview"));
    env.wait_for("a chart with data", || {
        browser
            .run("const c = document.querySelector('#chart-jobs'); return c ? Number(c.getAttribute('data-points')) : 0")
            .as_u64()
            .unwrap_or(0)
            > 0
    });
    assert!(browser.text("#per-plugin").contains("echo"));
    shot(&browser, "overview");
    // Each page with what it must show.
    for (page, shows) in [
        ("plugins", "acme/greet"),
        ("workers", "acme/echo"),
        ("cache", "plugin"),
        ("tenants", "acme"),
    ] {
        browser.goto(&format!("{base}/#/{page}"));
        browser.wait_text(&format!("#{page}-table"), WAIT, |t| t.contains(shows));
        shot(&browser, page);
    }

    // Beta, signed in on the same browser, sees none of it.
    browser.click(&browser.wait_for("#sign-out", WAIT));
    sign_in(&browser, &base, &beta);
    browser.goto(&format!("{base}/#/jobs?status=succeeded"));
    browser.wait_for("#jobs-table", WAIT);
    assert!(!browser.text("#jobs-table").contains(&id));
    browser.goto(&format!("{base}/#/job/{id}"));
    browser.wait_text("#job", WAIT, |t| t.contains("not found"));
    browser.goto(&format!("{base}/#/plugins"));
    browser.wait_for("#plugins-table", WAIT);
    assert!(!browser.text("#plugins-table").contains("greet"));
    // The page's script and style come from the binary, with a policy
    // that allows nothing else.
    let page = request(&server, "GET", "/", None, b"");
    assert_eq!(page.status, 200);
    let policy = page
        .headers
        .iter()
        .find(|(n, _)| n == "content-security-policy")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    assert!(policy.contains("script-src 'self'"), "{policy}");
}
