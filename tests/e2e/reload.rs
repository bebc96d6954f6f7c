//! Hot reload: plugin files swapped under load, config changes, SIGHUP — nothing lost,
//! nothing handled twice, untouched pipelines undisturbed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lapin::BasicProperties;
use lapin::types::AMQPValue;

use crate::support::{
    Broker, TestConfig, header, replace_file, sample, scrape_of, start_at, test_plugin, unique,
    with_id, write_config, write_config_with,
};

/// Messages the swap test publishes at the least: it goes on until the last swap is done.
const MESSAGES: usize = 3000;
/// Swaps of the swap test (one more step writes the broken file), and the time between steps.
const SWAPS: usize = 10;
const SWAP_EVERY: Duration = Duration::from_millis(300);
/// The step of the swap test that writes a broken file instead of swapping.
const BROKEN_STEP: usize = 5;
/// The producers pause [`PAUSE`] every this many messages, so that the load is steady.
const BURST: usize = 10;
const PAUSE: Duration = Duration::from_millis(5);

/// Long enough for the daemon to notice a file written (the watch's debounce) and act on it.
const RELOAD_SETTLE: Duration = Duration::from_millis(400);
/// Long enough for a config reload to restart a pipeline.
const CONFIG_SETTLE: Duration = Duration::from_millis(800);

/// Under continuous load, the plugin file is replaced ten times (atomic `mv` and in-place
/// writes), alternating two builds that tag their output, with a broken file written in the
/// middle: every message is handled exactly once, none is redelivered, all are acked, and the
/// tag switches at every swap.
#[tokio::test]
async fn plugin_swaps_under_load_lose_and_duplicate_nothing() {
    let broker = Broker::connect().await;
    let queue = unique("swap");
    let out = unique("swap-out");
    broker.queue(&out).await;
    broker.forget_later_queue(&queue);
    let builds = [
        std::fs::read(test_plugin("tag_a")).expect("tag_a"),
        std::fs::read(test_plugin("tag_b")).expect("tag_b"),
    ];
    let config = TestConfig::new()
        .default_grace()
        .tagged_beside("swap", &queue, &out, "prefetch = 50\nconcurrency = 20")
        .build();
    let (dir, config_path) = write_config_with(&config, &[("tagged.wasm", &builds[0])]);
    let plugin = dir.path().join("tagged.wasm");
    let daemon = start_at(dir, &config_path).await;

    // The producer runs until the last swap is done, so every swap happens under load.
    let swapping = Arc::new(AtomicBool::new(true));
    let producer = {
        let queue = queue.clone();
        let swapping = swapping.clone();
        tokio::spawn(async move {
            let broker = Broker::connect().await;
            let mut sent = 0;
            while sent < MESSAGES || swapping.load(Ordering::Relaxed) {
                broker
                    .publish(&queue, b"payload", with_id(format!("m{sent}")))
                    .await;
                sent += 1;
                if sent % BURST == 0 {
                    tokio::time::sleep(PAUSE).await;
                }
            }
            sent
        })
    };
    // Ten real swaps, a <-> b, by atomic rename and by writing in place (as `cp` does), with
    // a broken deploy in the middle.
    let mut live = 0;
    for step in 0..=SWAPS {
        tokio::time::sleep(SWAP_EVERY).await;
        if step == BROKEN_STEP {
            // A broken deploy: not a component. The old version must keep serving.
            replace_file(&plugin, b"\0asm\x0d\0\x01\0 definitely not a component");
            continue;
        }
        live = 1 - live;
        if step % 2 == 0 {
            replace_file(&plugin, &builds[live]);
        } else {
            std::fs::write(&plugin, &builds[live]).expect("write in place");
        }
    }
    tokio::time::sleep(SWAP_EVERY).await;
    swapping.store(false, Ordering::Relaxed);
    let sent = producer.await.expect("producer");

    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut tags = Vec::new();
    for _ in 0..sent {
        let m = broker.next(&out).await;
        let p = &m.delivery.properties;
        let id = p
            .message_id()
            .as_ref()
            .map(|s| s.to_string())
            .expect("message id");
        *seen.entry(id).or_default() += 1;
        assert_eq!(
            header(p, "was-redelivered"),
            Some(&AMQPValue::Boolean(false)),
            "a reload released a delivery"
        );
        match header(p, "tag") {
            Some(AMQPValue::LongString(tag)) => tags.push(tag.to_string()),
            other => panic!("no tag: {other:?}"),
        }
    }
    let metrics = daemon.metrics.clone();
    daemon.stop().await.expect("clean stop");
    assert_eq!(seen.len(), sent, "every message handled");
    assert!(
        seen.values().all(|&n| n == 1),
        "a message was handled twice"
    );
    assert!(broker.get(&out).await.is_none(), "no extra message");
    assert_eq!(broker.ready(&queue).await, 0, "all acked");
    // Each of the ten swaps shows in the output (overlapping calls at a swap can add more).
    let switches = tags.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(switches >= SWAPS, "the tag switched only {switches} times");
    assert_eq!(
        tags.last().map(String::as_str),
        Some("a"),
        "the last build deployed serves"
    );
    let failed = [("plugin", "tagged"), ("result", "failed")];
    assert_eq!(
        sample(&scrape_of(&metrics), "warren_plugin_reloads_total", &failed),
        1.0,
        "the broken file is counted once"
    );
    broker.cleanup().await;
}

/// Messages of the steady pipeline of the config-reload test.
const STEADY: usize = 600;
/// The prefetch the config reload changes the `new` pipeline to.
const NEW_PREFETCH: u32 = 3;
/// Messages that sleep (2 s) in the `new` pipeline after its prefetch changed.
const SLEEPING: u32 = 6;
/// Long enough for the sleeping messages to be delivered up to the prefetch.
const DELIVERED: Duration = Duration::from_millis(500);

/// Config reloads — a pipeline added, one removed, one's prefetch changed, then an invalid
/// config refused — while another pipeline keeps flowing untouched.
#[tokio::test]
async fn config_reload_changes_only_what_changed() {
    let broker = Broker::connect().await;
    let steady = unique("cfg-steady");
    let steady_out = unique("cfg-steady-out");
    let old = unique("cfg-old");
    let new = unique("cfg-new");
    broker.queue(&steady_out).await;
    for q in [&steady, &old, &new] {
        broker.forget_later_queue(q);
    }
    // The steady pipeline, and one more (`name` on `queue`) that the reloads change.
    let render = |name: &str, queue: &str, prefetch: u32| {
        TestConfig::new()
            .default_grace()
            .plugin(
                "tagged",
                &test_plugin("tag_a"),
                &format!("to = \"{steady_out}\""),
                "",
            )
            .plugin("scripted", &test_plugin("scripted"), "mode = \"body\"", "")
            .queue(&steady, "")
            .queue(&old, "")
            .queue(&new, "")
            .pipeline("steady", &steady, "tagged", "")
            .pipeline(
                name,
                queue,
                "scripted",
                &format!("prefetch = {prefetch}\nconcurrency = 50"),
            )
    };
    let (dir, config_path) = write_config(&render("old", &old, 10).build());
    let daemon = start_at(dir, &config_path).await;

    // The steady pipeline flows the whole time.
    let producer = {
        let steady = steady.clone();
        tokio::spawn(async move {
            let broker = Broker::connect().await;
            for i in 0..STEADY {
                broker
                    .publish(&steady, b"steady", with_id(format!("s{i}")))
                    .await;
                tokio::time::sleep(PAUSE).await;
            }
        })
    };

    // 1. Remove "old", add "new".
    replace_file(&config_path, render("new", &new, 10).build().as_bytes());
    broker.wait_consumers(&new, 1).await;
    broker.wait_consumers(&old, 0).await;
    broker
        .publish(&new, b"ack", BasicProperties::default())
        .await;
    broker.wait_ready(&new, 0).await;

    // 2. Change "new"'s prefetch: of the sleeping messages, all but that many stay ready.
    let prefetch = NEW_PREFETCH;
    replace_file(
        &config_path,
        render("new", &new, prefetch).build().as_bytes(),
    );
    tokio::time::sleep(CONFIG_SETTLE).await;
    broker.wait_consumers(&new, 1).await;
    for _ in 0..SLEEPING {
        broker
            .publish(&new, b"sleep:2000", BasicProperties::default())
            .await;
    }
    tokio::time::sleep(DELIVERED).await;
    assert_eq!(
        broker.ready(&new).await,
        SLEEPING - prefetch,
        "the new prefetch ({prefetch}) applies"
    );

    // 3. An invalid config is refused as a whole; everything keeps running as before.
    let invalid = render("new", &new, 1).top_level("bogus_key = 1");
    replace_file(&config_path, invalid.build().as_bytes());
    tokio::time::sleep(CONFIG_SETTLE).await;
    assert_eq!(broker.consumers(&new).await, 1);
    assert_eq!(broker.consumers(&steady).await, 1);
    let failed = [("result", "failed")];
    let refused = sample(&daemon.scrape(), "warren_config_reloads_total", &failed);
    assert!(refused >= 1.0, "the refused reload is counted");
    // A reload request (what SIGHUP sends) re-reads the file the same way: refused again.
    assert!(daemon.reload.reload());
    daemon
        .wait_metric("warren_config_reloads_total", &failed, refused + 1.0)
        .await;
    assert_eq!(broker.consumers(&new).await, 1);

    producer.await.expect("producer");
    // Every steady message once (a lost one fails `next`), none redelivered, none more.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..STEADY {
        let m = broker.next(&steady_out).await;
        let p = &m.delivery.properties;
        assert_eq!(
            header(p, "was-redelivered"),
            Some(&AMQPValue::Boolean(false))
        );
        let id = p.message_id().as_ref().map(|s| s.to_string()).expect("id");
        assert!(seen.insert(id), "a steady message was handled twice");
    }
    let metrics = daemon.metrics.clone();
    daemon.stop().await.expect("clean stop");
    assert!(broker.get(&steady_out).await.is_none());
    assert_eq!(broker.ready(&steady).await, 0);
    assert_eq!(broker.ready(&old).await, 0);
    let acks = [("pipeline", "new"), ("verdict", "ack")];
    assert_eq!(
        sample(&scrape_of(&metrics), "warren_messages_total", &acks),
        f64::from(1 + SLEEPING),
        "one ack and the sleeping ones, after the prefetch change applied"
    );
    broker.cleanup().await;
}

/// Broken deploys change nothing: an empty file, a truncated one, random bytes, a component of
/// another contract version, and deleting the file each leave the loaded version serving;
/// each bad file is counted as one failed reload.
#[tokio::test]
async fn broken_deploys_and_deletion_keep_the_old_version() {
    let broker = Broker::connect().await;
    let queue = unique("broken");
    let out = unique("broken-out");
    broker.queue(&out).await;
    broker.forget_later_queue(&queue);
    let good = std::fs::read(test_plugin("tag_a")).expect("tag_a");
    let config = TestConfig::new()
        .default_grace()
        .tagged_beside("broken", &queue, &out, "")
        .build();
    let (dir, config_path) = write_config_with(&config, &[("tagged.wasm", &good)]);
    let plugin = dir.path().join("tagged.wasm");
    let daemon = start_at(dir, &config_path).await;
    let other_contract = std::fs::read(test_plugin("contract_v2")).expect("contract_v2");
    let bad: [(&str, Vec<u8>); 4] = [
        ("empty", Vec::new()),
        ("truncated", good[..good.len() / 2].to_vec()),
        (
            "random",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect(),
        ),
        ("other contract", other_contract),
    ];
    for (what, bytes) in &bad {
        replace_file(&plugin, bytes);
        tokio::time::sleep(RELOAD_SETTLE).await;
        broker
            .publish(&queue, what.as_bytes(), BasicProperties::default())
            .await;
        let m = broker.next(&out).await;
        assert_eq!(
            header(&m.delivery.properties, "tag"),
            Some(&AMQPValue::LongString("a".into())),
            "after the {what} file the old version serves"
        );
    }
    std::fs::remove_file(&plugin).expect("delete");
    tokio::time::sleep(RELOAD_SETTLE).await;
    broker
        .publish(&queue, b"deleted", BasicProperties::default())
        .await;
    let m = broker.next(&out).await;
    assert_eq!(m.delivery.data, b"deleted");
    let failed = [("plugin", "tagged"), ("result", "failed")];
    let failures = daemon.metric("warren_plugin_reloads_total", &failed);
    daemon.stop().await.expect("clean stop");
    assert_eq!(
        failures,
        bad.len() as f64,
        "one failure per bad file, and deletion is not a failure"
    );
    broker.cleanup().await;
}

/// A plugin whose `init` failed for a reason outside its file and its config (here: the HTTP
/// service its `init` asks is down) is tried again on the next reload request (SIGHUP), not
/// remembered as failed for ever: once the service is up, the new version serves.
#[tokio::test]
async fn sighup_retries_a_plugin_whose_init_failed() {
    let broker = Broker::connect().await;
    let queue = unique("init-retry");
    let out = unique("init-retry-out");
    broker.queue(&out).await;
    broker.forget_later_queue(&queue);
    // A port nothing listens on yet: the service the new version's `init` asks.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let service = format!("127.0.0.1:{port}");
    let config = TestConfig::new()
        .plugin(
            "tagged",
            std::path::Path::new("tagged.wasm"),
            &format!(r#"to = "{out}", mode = "republish", init_check = "{service}""#),
            &format!(r#"allowed_hosts = ["{service}"]"#),
        )
        .queue(&queue, "")
        .pipeline("tagged", &queue, "tagged", "")
        .build();
    let tag_a = std::fs::read(test_plugin("tag_a")).expect("tag_a");
    let (dir, config_path) = write_config_with(&config, &[("tagged.wasm", &tag_a)]);
    let plugin = dir.path().join("tagged.wasm");
    let daemon = start_at(dir, &config_path).await;

    // The new version (scripted, republishing untagged) cannot start: its service is down.
    replace_file(
        &plugin,
        &std::fs::read(test_plugin("scripted")).expect("scripted"),
    );
    let failed = [("plugin", "tagged"), ("result", "failed")];
    daemon
        .wait_metric("warren_plugin_reloads_total", &failed, 1.0)
        .await;
    let tag = |m: &lapin::message::BasicGetMessage| header(&m.delivery.properties, "tag").cloned();
    broker
        .publish(&queue, b"before", BasicProperties::default())
        .await;
    let m = broker.next(&out).await;
    assert_eq!(
        tag(&m),
        Some(AMQPValue::LongString("a".into())),
        "the old version serves"
    );

    // The service comes up; nothing about the file or the config changed. A SIGHUP tries the
    // new version again, and it serves.
    let _service = crate::http::serve(&service).await;
    assert!(daemon.reload.reload());
    let ok = [("plugin", "tagged"), ("result", "ok")];
    daemon
        .wait_metric("warren_plugin_reloads_total", &ok, 1.0)
        .await;
    broker
        .publish(&queue, b"after", BasicProperties::default())
        .await;
    let m = broker.next(&out).await;
    assert_eq!(m.delivery.data, b"after");
    assert_eq!(tag(&m), None, "the new version serves");
    daemon.stop().await.expect("clean stop");
    broker.cleanup().await;
}
