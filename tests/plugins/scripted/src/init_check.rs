//! The `init_check` config key: `init` asks `http://<authority>/` through
//! `wasi:http` and fails unless it answers 2xx, so that a test can make `init`
//! fail, and then succeed, with the plugin's file and config unchanged.

use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, OutgoingRequest, Scheme};

/// `Ok` if `http://{authority}/` answers 2xx; otherwise why not.
pub fn ask(authority: &str) -> Result<(), String> {
    let refused = |what: &str| format!("scripted: init_check: the host refused the {what}");
    let request = OutgoingRequest::new(Fields::new());
    request
        .set_scheme(Some(&Scheme::Http))
        .map_err(|()| refused("scheme"))?;
    request
        .set_authority(Some(authority))
        .map_err(|()| refused("authority"))?;
    request
        .set_path_with_query(Some("/"))
        .map_err(|()| refused("path"))?;
    let failed = |e: &dyn std::fmt::Debug| format!("scripted: init_check {authority}: {e:?}");
    let future = outgoing_handler::handle(request, None).map_err(|e| failed(&e))?;
    future.subscribe().block();
    let response = future
        .get()
        .ok_or_else(|| failed(&"no response"))?
        .map_err(|()| failed(&"response taken twice"))?
        .map_err(|e| failed(&e))?;
    match response.status() {
        200..=299 => Ok(()),
        status => Err(format!(
            "scripted: init_check {authority} answered {status}"
        )),
    }
}
