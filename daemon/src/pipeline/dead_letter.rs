//! The copy of a message warren puts in `<queue>.dead`: the message as it arrived, with the
//! headers that say why, where and by which plugin version it was dead-lettered.

use crate::decision::Reason;
use crate::message::{HeaderValue, Message, Outgoing, scalar_header, text_header};

/// The headers warren adds to a message it dead-letters.
pub const REASON_HEADER: &str = "x-warren-reason";
/// The pipeline that dead-lettered the message.
pub const PIPELINE_HEADER: &str = "x-warren-pipeline";
/// The version of the plugin that handled it.
pub const PLUGIN_VERSION_HEADER: &str = "x-warren-plugin-version";
/// When it was dead-lettered (a timestamp, seconds since the Unix epoch).
pub const TIME_HEADER: &str = "x-warren-time";

/// The headers warren adds to a dead-lettered message (and `warren dlq replay` removes).
pub const DEAD_LETTER_HEADERS: [&str; 4] = [
    REASON_HEADER,
    PIPELINE_HEADER,
    PLUGIN_VERSION_HEADER,
    TIME_HEADER,
];

/// The message as it arrived — body, properties, headers — for the dead-letter queue, with
/// why, where and by which plugin version. Its `expiration` is dropped (as the broker does
/// when it dead-letters), so that it does not expire in the dead-letter queue.
pub(super) fn dead_letter_copy(
    message: &Message,
    queue: &str,
    reason: &Reason,
    pipeline: &str,
    version: &str,
) -> Outgoing {
    let mut properties = message.properties.clone();
    properties.expiration = None;
    properties
        .headers
        .retain(|h| !DEAD_LETTER_HEADERS.contains(&h.key.as_str()));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    properties.headers.extend([
        text_header(REASON_HEADER, &reason.to_string()),
        text_header(PIPELINE_HEADER, pipeline),
        text_header(PLUGIN_VERSION_HEADER, version),
        scalar_header(TIME_HEADER, HeaderValue::Timestamp(now)),
    ]);
    Outgoing {
        exchange: String::new(),
        routing_key: queue.to_owned(),
        body: message.body.clone(),
        properties,
    }
}
