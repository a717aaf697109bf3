//! The live queue and the staffing estimate on a page: a collector that reads the state when
//! scraped (the accept-time histogram, the expiry counter, the queue and staffing gauges), with
//! the scrape's time for what depends on it.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::record::queue::Live;
use crate::staffing;

/// Registers the live queue's families and gauges in `registry`.
pub fn register(registry: &mut Registry, live: &Arc<Live>) {
    registry.register_collector(Box::new(LiveCollector(live.clone())));
}

/// The gauges of the live queue and the staffing estimate.
#[derive(Debug)]
struct LiveCollector(Arc<Live>);

impl Collector for LiveCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let live = &self.0;
        let snap = live.snapshot_now();
        {
            let mut m = encoder.encode_descriptor(
                "acquire_chat_accept_time_seconds",
                "Time from a chat's start to its accept by an agent.",
                None,
                MetricType::Histogram,
            )?;
            for (d, h) in &snap.accept_time {
                h.encode(m.encode_family(&[("department", d.clone())])?)?;
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "acquire_chats_expired",
                "Waiting chats dropped from the queue after the expiry time without an accept or a close.",
                None,
                MetricType::Counter,
            )?;
            for (d, n) in &snap.expired {
                m.encode_family(&[("department", d.clone())])?
                    .encode_counter::<NoLabelSet, _, u64>(n, None)?;
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "acquire_chats_waiting",
                "Chats started and not yet accepted or closed.",
                None,
                MetricType::Gauge,
            )?;
            for (d, n, _) in &snap.waiting {
                m.encode_family(&[("department", d.clone())])?
                    .encode_gauge(&(*n as i64))?;
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "acquire_chat_oldest_wait_seconds",
                "Age of the oldest chat waiting now (0 when none waits).",
                None,
                MetricType::Gauge,
            )?;
            for (d, _, oldest) in &snap.waiting {
                m.encode_family(&[("department", d.clone())])?
                    .encode_gauge(oldest)?;
            }
        }
        let gauge = |encoder: &mut DescriptorEncoder,
                     name: &str,
                     help: &str,
                     value: &dyn Fn(f64, Option<f64>, u64) -> Option<f64>|
         -> Result<(), std::fmt::Error> {
            let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (d, rate, aht, agents) in &snap.staffing {
                if let Some(v) = value(*rate, *aht, *agents) {
                    m.encode_family(&[("department", d.clone())])?
                        .encode_gauge(&v)?;
                }
            }
            Ok(())
        };
        gauge(
            &mut encoder,
            "acquire_chat_arrivals_per_second",
            "Chats closed per second over the staffing window (every chat, answered or not).",
            &|rate, _, _| Some(rate),
        )?;
        gauge(
            &mut encoder,
            "acquire_chat_mean_handle_time_seconds",
            "Mean duration of the chats an agent took, over the staffing window.",
            &|_, aht, _| aht,
        )?;
        gauge(
            &mut encoder,
            "acquire_offered_load_erlangs",
            "Offered load over the staffing window: arrival rate times mean handle time.",
            &|rate, aht, _| aht.map(|aht| staffing::offered_load(rate, aht)),
        )?;
        gauge(
            &mut encoder,
            "acquire_agents_seen",
            "Distinct agents who accepted or closed a chat in the staffing window.",
            &|_, _, agents| Some(agents as f64),
        )?;
        let mut m = encoder.encode_descriptor(
            "acquire_agents_required",
            "Agents needed to meet the service-level target (Erlang C over the staffing window, load divided by the chats one agent handles at once).",
            None,
            MetricType::Gauge,
        )?;
        for (d, rate, aht, _) in &snap.staffing {
            let Some(aht) = aht else { continue };
            for t in live.targets() {
                match staffing::agents_required(*rate, *aht, *t, live.concurrency()) {
                    Ok(n) => m
                        .encode_family(&[("department", d.0.to_string()), ("target", t.label())])?
                        .encode_gauge(&(n as i64))?,
                    Err(e) => {
                        tracing::debug!(error = %e, department = %d.0, "no staffing estimate")
                    }
                }
            }
        }
        Ok(())
    }
}
