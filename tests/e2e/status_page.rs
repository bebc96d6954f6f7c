//! The status page (`/`) in a real headless Chromium, driven through chromedriver: its rows
//! appear and its counts move while messages flow, without a reload.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::operations::free_port;
use crate::support::{Broker, KillOnDrop, PATIENCE, eventually, unique, with_id};

/// How often the test's producer publishes while the page is watched.
const PUBLISH_EVERY: Duration = Duration::from_millis(20);
/// Every this many messages the producer sends one that traps, so failures show too.
const TRAP_EVERY: usize = 25;

/// chromedriver on a free port, killed when dropped.
struct Driver {
    port: u16,
    _process: KillOnDrop,
}

impl Driver {
    /// Starts chromedriver (Debian's `chromium-driver`, for Debian's `chromium`); the test
    /// fails, saying how to install them, if they are missing.
    async fn start() -> Self {
        for (tool, package) in [
            ("chromedriver", "chromium-driver"),
            ("chromium", "chromium"),
        ] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                found,
                "{tool} is missing: the status page test needs a headless browser \
                 (Debian's {package}: `apt-get install chromium chromium-driver`; .ci/run \
                 installs them)"
            );
        }
        let port = free_port();
        let process = KillOnDrop::spawn(
            Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        let listening = || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(drop)
        };
        eventually("chromedriver listening", PATIENCE, listening).await;
        Self {
            port,
            _process: process,
        }
    }

    /// A new headless Chromium session.
    async fn browser(&self) -> Client {
        let options = json!({
            "args": [
                "--headless=new",
                // Root in CI: Chromium's sandbox needs a user namespace it may not get.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--window-size=1600,1200",
            ]
        });
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".into(), options);
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a Chromium session through chromedriver")
    }
}

/// The number in the cell `field` of the pipeline's row in `table`, once it shows one.
async fn cell(browser: &Client, table: &str, pipeline: &str, field: &str) -> Option<f64> {
    let css = format!("#{table} tr[data-pipeline=\"{pipeline}\"] td[data-field=\"{field}\"]");
    let text = browser
        .find(Locator::Css(&css))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.trim().parse().ok()
}

/// Where the screenshot goes: the target dir's scratch folder.
fn screenshot_path() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-page.png")
}

/// The page loaded in Chromium while messages flow: the pipeline's rows appear, its counts
/// and rate rise without a reload (a value the test leaves in the page survives), the tables
/// are marked up for reading without a mouse; a screenshot is saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_updates_live_in_a_browser() {
    let driver = Driver::start().await;
    let (broker, queue) = (Broker::connect().await, unique("status-page"));
    let (daemon, port) = crate::status::with_body_pipeline(&broker, &queue, "live", "").await;

    let flowing = Arc::new(AtomicBool::new(true));
    let producer = tokio::spawn(produce(queue.clone(), flowing.clone()));

    let browser = driver.browser().await;
    browser
        .goto(&format!("http://127.0.0.1:{port}/"))
        .await
        .expect("load the page");
    let first = eventually("the pipeline's row with acks", PATIENCE, || async {
        cell(&browser, "outcomes", "live", "ack")
            .await
            .filter(|n| *n > 0.0)
    })
    .await;
    let marker = json!("still the same page");
    browser
        .execute(
            "window.warrenTestMarker = arguments[0];",
            vec![marker.clone()],
        )
        .await
        .expect("leave a marker in the page");
    eventually(
        "the ack count rising without a reload",
        PATIENCE,
        || async {
            cell(&browser, "outcomes", "live", "ack")
                .await
                .filter(|n| *n > first)
        },
    )
    .await;
    eventually("a rate in over the last 10 s", PATIENCE, || async {
        cell(&browser, "pipelines", "live", "rate_in_10s")
            .await
            .filter(|r| *r > 0.0)
    })
    .await;
    eventually("a failure listed", PATIENCE, || async {
        let text = browser
            .find(Locator::Css("#failures tbody"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.contains("plugin trapped").then_some(())
    })
    .await;
    let kept = browser
        .execute("return window.warrenTestMarker ?? null;", vec![])
        .await
        .expect("read the marker");
    assert_eq!(kept, marker, "the page was reloaded");

    assert_tables_marked_up(&browser).await;
    save_screenshot(&browser).await;
    browser.close().await.expect("close the browser");

    flowing.store(false, Ordering::Relaxed);
    producer.await.expect("producer");
    daemon.stop().await.expect("clean stop");
    broker.cleanup().await;
}

/// Publishes to `queue` every [`PUBLISH_EVERY`] while `flowing`: acks, and every
/// [`TRAP_EVERY`]th a message that traps.
async fn produce(queue: String, flowing: Arc<AtomicBool>) {
    let broker = Broker::connect().await;
    let mut sent = 0;
    while flowing.load(Ordering::Relaxed) {
        let body: &[u8] = if sent % TRAP_EVERY == TRAP_EVERY - 1 {
            b"trap"
        } else {
            b"ack"
        };
        let id = with_id(format!("page-{sent}"));
        broker.publish(&queue, body, id).await;
        sent += 1;
        tokio::time::sleep(PUBLISH_EVERY).await;
    }
}

/// Every table has a caption, header cells with `scope="col"`, and each pipeline row a row
/// header with `scope="row"`.
async fn assert_tables_marked_up(browser: &Client) {
    let markup = browser
        .execute(
            "return [...document.querySelectorAll('table')].map(t => ({ \
               id: t.id, caption: t.caption ? t.caption.textContent.trim() : '', \
               cols: [...t.tHead.rows[0].cells].every(c => c.tagName === 'TH' && c.scope === 'col'), \
               rows: [...t.tBodies[0].rows].every(r => r.cells.length < 2 \
                 || !r.dataset.pipeline || (r.cells[0].tagName === 'TH' && r.cells[0].scope === 'row')) }));",
            vec![],
        )
        .await
        .expect("inspect the tables");
    let tables = markup.as_array().expect("a list");
    assert!(tables.len() >= 5, "{markup}");
    for table in tables {
        assert_ne!(table["caption"], "", "a table without a caption: {table}");
        assert_eq!(table["cols"], true, "{table}");
        assert_eq!(table["rows"], true, "{table}");
    }
}

/// Saves a screenshot of the page in the target dir and prints where.
async fn save_screenshot(browser: &Client) {
    let png = browser.screenshot().await.expect("screenshot");
    let path = screenshot_path();
    std::fs::write(&path, &png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    println!("status page screenshot: {}", path.display());
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
}
