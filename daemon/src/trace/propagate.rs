//! W3C trace context in AMQP headers: `traceparent` and `tracestate` read from a delivery's
//! headers, and written into a message warren publishes.

use opentelemetry::propagation::{Extractor, Injector};

use crate::message::{Header, HeaderValue};

/// A delivery's headers, as the trace context propagator reads them. A header is found
/// whatever the case of its key; its value counts if it is text (a byte array holding UTF-8
/// too, as some clients send strings).
pub(super) struct Reader<'a>(pub &'a [Header]);

impl Extractor for Reader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let header = self.0.iter().find(|h| h.key.eq_ignore_ascii_case(key))?;
        match &header.value {
            HeaderValue::Text(text) => Some(text),
            HeaderValue::Bytes(bytes) | HeaderValue::TextBytes(bytes) => {
                std::str::from_utf8(bytes).ok()
            }
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|h| h.key.as_str()).collect()
    }
}

/// An outgoing message's headers, as the propagator writes them: the header replaces any of
/// the same key (whatever its case); an empty value (no `tracestate`) removes it.
pub(super) struct Writer<'a>(pub &'a mut Vec<Header>);

impl Injector for Writer<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.retain(|h| !h.key.eq_ignore_ascii_case(key));
        if !value.is_empty() {
            self.0.push(Header {
                key: key.to_owned(),
                value: HeaderValue::Text(value),
                nested: Vec::new(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TraceState};
    use opentelemetry::{Context, SpanId, TraceId};
    use opentelemetry_sdk::propagation::TraceContextPropagator;

    use super::*;
    use crate::message::{int_header, scalar_header, text_header};

    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn extracted(headers: &[Header]) -> SpanContext {
        let cx = TraceContextPropagator::new().extract(&Reader(headers));
        cx.span().span_context().clone()
    }

    #[test]
    fn reads_traceparent_and_tracestate_as_text_or_utf8_bytes() {
        let parent = extracted(&[
            int_header("x-other", 1),
            text_header("traceparent", TRACEPARENT),
            text_header("tracestate", "vendor=a,other=b"),
        ]);
        assert!(parent.is_valid() && parent.is_remote());
        assert_eq!(
            parent.trace_id(),
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").expect("hex")
        );
        assert_eq!(
            parent.span_id(),
            SpanId::from_hex("00f067aa0ba902b7").expect("hex")
        );
        assert!(parent.is_sampled());
        assert_eq!(parent.trace_state().header(), "vendor=a,other=b");

        let as_bytes = extracted(&[scalar_header(
            "TraceParent",
            HeaderValue::Bytes(TRACEPARENT.as_bytes().to_vec()),
        )]);
        assert_eq!(as_bytes.trace_id(), parent.trace_id(), "bytes, any case");
    }

    #[test]
    fn a_missing_or_malformed_traceparent_is_no_parent() {
        assert!(!extracted(&[]).is_valid());
        for bad in [
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert!(
                !extracted(&[text_header("traceparent", bad)]).is_valid(),
                "{bad}"
            );
        }
        let number = scalar_header("traceparent", HeaderValue::Int32(7));
        assert!(!extracted(&[number]).is_valid());
    }

    #[test]
    fn writes_replace_earlier_headers_and_keep_the_rest() {
        let mut headers = vec![
            text_header("Traceparent", TRACEPARENT),
            text_header("tracestate", "stale=1"),
            text_header("keep", "me"),
        ];
        let child = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").expect("hex"),
            SpanId::from_hex("b7ad6b7169203331").expect("hex"),
            TraceFlags::SAMPLED,
            false,
            TraceState::from_key_value([("vendor", "a")]).expect("trace state"),
        );
        let cx = Context::new().with_remote_span_context(child);
        TraceContextPropagator::new().inject_context(&cx, &mut Writer(&mut headers));
        let keys: Vec<&str> = headers.iter().map(|h| h.key.as_str()).collect();
        assert_eq!(keys, ["keep", "traceparent", "tracestate"]);
        assert_eq!(
            headers[1].value,
            HeaderValue::Text("00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01".into())
        );
        assert_eq!(headers[2].value, HeaderValue::Text("vendor=a".into()));

        // No trace state: an earlier `tracestate` goes, none is written.
        let bare = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").expect("hex"),
            SpanId::from_hex("b7ad6b7169203331").expect("hex"),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        );
        let cx = Context::new().with_remote_span_context(bare);
        TraceContextPropagator::new().inject_context(&cx, &mut Writer(&mut headers));
        let keys: Vec<&str> = headers.iter().map(|h| h.key.as_str()).collect();
        assert_eq!(keys, ["keep", "traceparent"]);
    }
}
