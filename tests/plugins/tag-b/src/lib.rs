//! Test-only plugin: republishes every message to config `to` with header `tag = "b"`.

const TAG: &str = "b";

include!("../../tagged.rs");
