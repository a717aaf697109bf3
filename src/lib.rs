//! acquire-exporter: Acquire "On Chat Close" webhooks in, Prometheus histograms out.
//!
//! An event travels one way, one module per stage:
//! HTTP request ([`web`], [`server`]) -> [`decode`] (vendor shapes to one typed event) ->
//! admit ([`auth`], [`store`]: authenticate, de-duplicate, make durable) ->
//! [`record`] (histograms, counters, [`queue`], [`staffing`]) -> [`expose`] (`/metrics`).
#![deny(missing_docs)]

pub mod auth;
pub mod config;
pub mod decode;
pub mod expose;
pub mod histogram;
pub mod plan;
pub mod queue;
pub mod record;
pub mod server;
pub mod staffing;
pub mod store;
pub mod web;
pub mod webconfig;
