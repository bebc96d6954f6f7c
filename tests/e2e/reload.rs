//! Hot reload: plugin files swapped under load, config changes, SIGHUP — nothing lost,
//! nothing handled twice, untouched pipelines undisturbed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lapin::BasicProperties;
use lapin::types::AMQPValue;

use crate::harness::{
    Broker, QUEUE_EXPIRES_MS, broker_url, header, replace_file, sample, start_at, test_plugin,
    unique,
};

const MESSAGES: usize = 3000;

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
    let dir = tempfile::tempdir().expect("tmp");
    let plugin = dir.path().join("tagged.wasm");
    let builds = [
        std::fs::read(test_plugin("tag_a")).expect("tag_a"),
        std::fs::read(test_plugin("tag_b")).expect("tag_b"),
    ];
    std::fs::write(&plugin, &builds[0]).expect("install tag_a");
    let config_path = dir.path().join("warren.toml");
    std::fs::write(
        &config_path,
        format!(
            r#"[broker]
url = "{url}"

[plugins.tagged]
path = "tagged.wasm"
config = {{ to = "{out}" }}

[[queues]]
name = "{queue}"
arguments = {{ "x-expires" = {expires} }}

[[pipelines]]
name = "swap"
queue = "{queue}"
plugin = "tagged"
prefetch = 50
concurrency = 20
"#,
            url = broker_url(),
            expires = QUEUE_EXPIRES_MS,
        ),
    )
    .expect("config");
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
                    .publish(
                        &queue,
                        b"payload",
                        BasicProperties::default().with_message_id(format!("m{sent}").into()),
                    )
                    .await;
                sent += 1;
                if sent % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            sent
        })
    };
    // Ten real swaps, a <-> b, by atomic rename and by writing in place (as `cp` does), with
    // a broken deploy in the middle.
    let mut live = 0;
    for step in 0..11 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if step == 5 {
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
    tokio::time::sleep(Duration::from_millis(300)).await;
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
    assert!(switches >= 10, "the tag switched only {switches} times");
    assert_eq!(
        tags.last().map(String::as_str),
        Some("a"),
        "the last build deployed serves"
    );
    let metrics = metrics.render();
    assert!(
        metrics.contains(r#"warren_plugin_reloads_total{plugin="tagged",result="failed"} 1"#),
        "the broken file is counted once:\n{metrics}"
    );
    broker.cleanup().await;
}

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
    let dir = tempfile::tempdir().expect("tmp");
    let config_path = dir.path().join("warren.toml");
    let render = |pipelines: &str, extra: &str| {
        format!(
            r#"[broker]
url = "{url}"
{extra}
[plugins.tagged]
path = "{tagged}"
config = {{ to = "{steady_out}" }}

[plugins.scripted]
path = "{scripted}"
config = {{ mode = "body" }}

[[queues]]
name = "{steady}"
arguments = {{ "x-expires" = {expires} }}

[[queues]]
name = "{old}"
arguments = {{ "x-expires" = {expires} }}

[[queues]]
name = "{new}"
arguments = {{ "x-expires" = {expires} }}

[[pipelines]]
name = "steady"
queue = "{steady}"
plugin = "tagged"
{pipelines}"#,
            url = broker_url(),
            tagged = test_plugin("tag_a").display(),
            scripted = test_plugin("scripted").display(),
            expires = QUEUE_EXPIRES_MS,
        )
    };
    let pipeline = |name: &str, queue: &str, prefetch: u32| {
        format!(
            "\n[[pipelines]]\nname = \"{name}\"\nqueue = \"{queue}\"\nplugin = \"scripted\"\nprefetch = {prefetch}\nconcurrency = 50\n"
        )
    };
    std::fs::write(&config_path, render(&pipeline("old", &old, 10), "")).expect("config");
    let daemon = start_at(dir, &config_path).await;

    // The steady pipeline flows the whole time.
    let producer = {
        let steady = steady.clone();
        tokio::spawn(async move {
            let broker = Broker::connect().await;
            for i in 0..600 {
                broker
                    .publish(
                        &steady,
                        b"steady",
                        BasicProperties::default().with_message_id(format!("s{i}").into()),
                    )
                    .await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    // 1. Remove "old", add "new".
    replace_file(
        &config_path,
        render(&pipeline("new", &new, 10), "").as_bytes(),
    );
    broker.wait_consumers(&new, 1).await;
    broker.wait_consumers(&old, 0).await;
    broker
        .publish(&new, b"ack", BasicProperties::default())
        .await;
    broker.wait_ready(&new, 0).await;

    // 2. Change "new"'s prefetch to 3: of 6 sleeping messages, 3 stay ready.
    replace_file(
        &config_path,
        render(&pipeline("new", &new, 3), "").as_bytes(),
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    broker.wait_consumers(&new, 1).await;
    for _ in 0..6 {
        broker
            .publish(&new, b"sleep:2000", BasicProperties::default())
            .await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(broker.ready(&new).await, 3, "the new prefetch (3) applies");

    // 3. An invalid config is refused as a whole; everything keeps running as before.
    replace_file(
        &config_path,
        render(&pipeline("new", &new, 1), "bogus_key = 1\n").as_bytes(),
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
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
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..600 {
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
    assert_eq!(seen.len(), 600);
    assert!(broker.get(&steady_out).await.is_none());
    assert_eq!(broker.ready(&steady).await, 0);
    assert_eq!(broker.ready(&old).await, 0);
    let text = metrics.render();
    assert!(
        text.contains(r#"warren_messages_total{pipeline="new",verdict="ack"} 7"#),
        "one ack and six sleeps, after the prefetch change applied:\n{text}"
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
    let dir = tempfile::tempdir().expect("tmp");
    let plugin = dir.path().join("tagged.wasm");
    let good = std::fs::read(test_plugin("tag_a")).expect("tag_a");
    std::fs::write(&plugin, &good).expect("install");
    let config_path = dir.path().join("warren.toml");
    std::fs::write(
        &config_path,
        format!(
            "[broker]\nurl = \"{url}\"\n\n[plugins.tagged]\npath = \"tagged.wasm\"\nconfig = {{ to = \"{out}\" }}\n\n\
             [[queues]]\nname = \"{queue}\"\narguments = {{ \"x-expires\" = {QUEUE_EXPIRES_MS} }}\n\n\
             [[pipelines]]\nname = \"broken\"\nqueue = \"{queue}\"\nplugin = \"tagged\"\n",
            url = broker_url(),
        ),
    )
    .expect("config");
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
        tokio::time::sleep(Duration::from_millis(400)).await;
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
    tokio::time::sleep(Duration::from_millis(400)).await;
    broker
        .publish(&queue, b"deleted", BasicProperties::default())
        .await;
    let m = broker.next(&out).await;
    assert_eq!(m.delivery.data, b"deleted");
    let metrics = daemon.metrics.render();
    daemon.stop().await.expect("clean stop");
    assert!(
        metrics.contains(r#"warren_plugin_reloads_total{plugin="tagged",result="failed"} 4"#),
        "four bad files, four failures, deletion is not a failure:\n{metrics}"
    );
    broker.cleanup().await;
}
