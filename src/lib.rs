//! acquire-exporter: Acquire chat webhooks in, Prometheus metrics out.
//!
//! An event travels one way, one folder per stage (see ARCHITECTURE.md):
//! [`http`] (the request) -> [`decode`] (vendor shapes to one typed [`event`]) ->
//! [`admit`] (authenticate, normalise, de-duplicate, make durable) -> [`record`] (histograms,
//! counters, the live queue, the staffing window) -> [`expose`] (`/metrics`). [`staffing`] holds
//! the queueing maths that [`record`] and [`plan`] use; [`run`] starts it all.
#![deny(missing_docs)]

pub mod admit;
pub mod checkpoint;
pub mod config;
pub mod decode;
pub mod event;
pub mod expose;
pub mod healthcheck;
pub mod http;
pub mod layout;
pub mod logthrottle;
pub mod niceness;
pub mod plan;
pub mod record;
pub mod run;
pub mod staffing;

pub use crate::http::{AppState, app};
pub use crate::run::main;
