//! Test-only plugin: republishes every message to config `to` with header `tag = "a"`.

const TAG: &str = "a";

include!("../../tagged.rs");
