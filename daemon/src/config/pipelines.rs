//! The `[[pipelines]]` sections, and the queues warren derives for them: delayed-retry
//! queues and `<queue>.dead`, of the source queue's durability and type.

use std::collections::{BTreeMap, BTreeSet};
use std::num::{NonZeroU16, NonZeroU32, NonZeroUsize};

use super::raw::RawPipeline;
use super::validate::Problems;
use super::{
    ArgValue, Arguments, DEAD_LETTER_SUFFIX, DEFAULT_PREFETCH, DeadLetter, PipelineSettings,
    QueueSettings, RETRY_STEPS, retry_queue_name,
};
use crate::plugin::spec::PluginSettings;

/// The pipelines; the queues warren derives for them (retry queues, `<queue>.dead`) are
/// added to `queues`.
pub(super) fn validate(
    raw: Vec<RawPipeline>,
    plugins: &BTreeMap<String, PluginSettings>,
    queues: &mut Vec<QueueSettings>,
    problems: &mut Problems,
) -> Vec<PipelineSettings> {
    let mut names = BTreeSet::new();
    let mut pipelines = Vec::new();
    for (i, p) in raw.into_iter().enumerate() {
        let key = format!("pipelines[{i}]");
        if !names.insert(p.name.clone()) {
            problems.push(format!(
                "{key}.name: pipeline {:?} is defined twice",
                p.name
            ));
        }
        let source = queues.iter().find(|q| q.name == p.queue).cloned();
        if source.is_none() {
            problems.push(format!(
                "{key}.queue: {:?} is not a declared queue; add a [[queues]] entry with name = {:?}",
                p.queue, p.queue
            ));
        }
        if !plugins.contains_key(&p.plugin) {
            let known: Vec<&str> = plugins.keys().map(String::as_str).collect();
            problems.push(format!(
                "{key}.plugin: no plugin named {:?}; defined plugins: [{}]",
                p.plugin,
                known.join(", ")
            ));
        }
        let source = source.unwrap_or_else(|| QueueSettings {
            name: p.queue.clone(),
            durable: true,
            auto_delete: false,
            arguments: Arguments::new(),
        });
        pipelines.push(pipeline(&key, p, &source, queues, problems));
    }
    pipelines
}

fn pipeline(
    key: &str,
    p: RawPipeline,
    source: &QueueSettings,
    queues: &mut Vec<QueueSettings>,
    problems: &mut Problems,
) -> PipelineSettings {
    let prefetch = NonZeroU16::new(p.prefetch.unwrap_or(DEFAULT_PREFETCH)).unwrap_or_else(|| {
        problems.push(format!(
            "{key}.prefetch: must be at least 1 (0 would mean unlimited unacked messages)"
        ));
        NonZeroU16::MIN
    });
    let concurrency = match p.concurrency {
        None => NonZeroUsize::from(prefetch),
        Some(c) => NonZeroUsize::new(c).unwrap_or_else(|| {
            problems.push(format!("{key}.concurrency: must be at least 1"));
            NonZeroUsize::MIN
        }),
    };
    let max_deliveries = p.max_deliveries.map(|n| {
        NonZeroU32::new(n).unwrap_or_else(|| {
            problems.push(format!("{key}.max_deliveries: must be at least 1"));
            NonZeroU32::MIN
        })
    });
    let retry_queues = match p.retry_delay_ms {
        Some(0) => {
            problems.push(format!("{key}.retry_delay_ms: must be at least 1"));
            Vec::new()
        }
        Some(delay) => retry_queues(source, delay, queues),
        None => Vec::new(),
    };
    let dead_letter = dead_letter(key, source, p.dead_letter_queue, queues, problems);
    PipelineSettings {
        name: p.name,
        queue: p.queue,
        plugin: p.plugin,
        prefetch,
        concurrency,
        on_error: p.on_error.unwrap_or_default(),
        max_deliveries,
        retry_queues,
        coalesce_acks: p.coalesce_acks.unwrap_or(true),
        dead_letter,
        quorum: source.is_quorum(),
    }
}

/// The delayed-retry queues of `source` (each delay twice the one before), declared in
/// `queues` unless they are already: of the source's durability and type; for a quorum
/// source, dead-lettered back at least once and refusing rather than dropping when full, so
/// that a delayed retry survives a node loss.
fn retry_queues(
    source: &QueueSettings,
    delay: u64,
    queues: &mut Vec<QueueSettings>,
) -> Vec<String> {
    let mut names = Vec::new();
    for step in 0..RETRY_STEPS {
        let delay_ms = delay.saturating_mul(1 << step);
        let name = retry_queue_name(&source.name, delay_ms);
        let mut arguments = source.same_type_arguments();
        arguments.insert(
            "x-message-ttl".into(),
            ArgValue::Int(i64::try_from(delay_ms).unwrap_or(i64::MAX)),
        );
        arguments.insert(
            "x-dead-letter-exchange".into(),
            ArgValue::Text(String::new()),
        );
        arguments.insert(
            "x-dead-letter-routing-key".into(),
            ArgValue::Text(source.name.clone()),
        );
        if source.is_quorum() {
            arguments.insert(
                "x-dead-letter-strategy".into(),
                ArgValue::Text("at-least-once".into()),
            );
            arguments.insert("x-overflow".into(), ArgValue::Text("reject-publish".into()));
        }
        declare_derived(queues, &name, source.durable, arguments);
        names.push(name);
    }
    names
}

/// Where the pipeline's rejected messages go; `<queue>.dead` is declared in `queues` when
/// warren moves them there.
fn dead_letter(
    key: &str,
    source: &QueueSettings,
    dead_letter_queue: Option<bool>,
    queues: &mut Vec<QueueSettings>,
    problems: &mut Problems,
) -> DeadLetter {
    if source.has_dead_letter_exchange() {
        if dead_letter_queue == Some(false) {
            problems.push(format!(
                "{key}.dead_letter_queue: queue {:?} has a dead_letter_exchange, which takes its rejected messages; remove dead_letter_queue = false",
                source.name
            ));
        }
        return DeadLetter::Broker;
    }
    if dead_letter_queue == Some(false) {
        return DeadLetter::Drop;
    }
    let name = format!("{}{DEAD_LETTER_SUFFIX}", source.name);
    declare_derived(queues, &name, source.durable, source.same_type_arguments());
    DeadLetter::Queue(name)
}

/// Adds a queue warren derives from a configured one, unless one of that name is declared.
fn declare_derived(
    queues: &mut Vec<QueueSettings>,
    name: &str,
    durable: bool,
    arguments: Arguments,
) {
    if !queues.iter().any(|q| q.name == name) {
        queues.push(QueueSettings {
            name: name.to_owned(),
            durable,
            auto_delete: false,
            arguments,
        });
    }
}
