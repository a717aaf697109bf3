//! The live queue and the staffing estimate on a page: a collector that reads the state when
//! scraped (the accept-time histogram, the expiry counter, the queue and staffing gauges), with
//! the scrape's time for what depends on it.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::record::Metrics;
use crate::staffing;
use crate::staffing::erlang_a::Model;
use crate::staffing::history::{PlanSettings, UtcOffset, forecast, hour_of};

/// Registers the live queue's families and gauges in `registry`.
pub fn register(registry: &mut Registry, metrics: &Arc<Metrics>) {
    registry.register_collector(Box::new(LiveCollector(metrics.clone())));
}

/// The gauges of the live queue and the staffing estimate.
#[derive(Debug)]
struct LiveCollector(Arc<Metrics>);

impl Collector for LiveCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let live = self.0.live();
        let now = live.now();
        let snap = live.snapshot(now);
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
                "acquire_chats_abandoned",
                "Chats closed without being answered (no wait and no accept), by department.",
                None,
                MetricType::Counter,
            )?;
            for (d, n) in &snap.abandoned {
                m.encode_family(&[("department", d.clone())])?
                    .encode_counter::<NoLabelSet, _, u64>(n, None)?;
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "acquire_visitor_patience_seconds",
                "Visitors' mean patience over the staffing window: the time in queue of every chat that queued divided by the number abandoned (exponential, maximum likelihood).",
                None,
                MetricType::Gauge,
            )?;
            for (d, p) in &snap.patience {
                m.encode_family(&[("department", d.clone())])?
                    .encode_gauge(p)?;
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
            "Agents needed to meet the service-level target over the staffing window, by model: Erlang C (nobody gives up), and Erlang A with the visitors' patience where it is known (load divided by the chats one agent handles at once).",
            None,
            MetricType::Gauge,
        )?;
        let patience = |d| snap.patience.iter().find(|(p, _)| p == d).map(|(_, p)| *p);
        for (d, rate, aht, _) in &snap.staffing {
            let Some(aht) = aht else { continue };
            let models = [
                Some(Model::ErlangC),
                Some(Model::for_patience(patience(d), *aht, live.concurrency()))
                    .filter(|m| *m != Model::ErlangC),
            ];
            for model in models.into_iter().flatten() {
                for t in live.targets() {
                    match model.agents_required(*rate, *aht, *t, live.concurrency()) {
                        Ok(n) => m
                            .encode_family(&[
                                ("department", d.0.to_string()),
                                ("model", model.label().to_owned()),
                                ("target", t.label()),
                            ])?
                            .encode_gauge(&(n as i64))?,
                        Err(e) => {
                            tracing::debug!(error = %e, department = %d.0, "no staffing estimate")
                        }
                    }
                }
            }
        }
        drop(m);
        // The coming hour, from the same hour of the previous weeks.
        let mut m = encoder.encode_descriptor(
            "acquire_agents_forecast",
            "Agents required for the coming hour, from the same hour of the previous four weeks (Erlang A where a patience is known, else Erlang C).",
            None,
            MetricType::Gauge,
        )?;
        let settings = PlanSettings {
            offset: UtcOffset::UTC,
            targets: live.targets().to_vec(),
            concurrency: live.concurrency(),
            ..PlanSettings::default()
        };
        if let Some(hour) = hour_of(now) {
            let forecasts = forecast(&self.0.history(), hour + 1, &settings);
            match forecasts {
                Ok(forecasts) => {
                    for f in forecasts {
                        for (t, n) in settings.targets.iter().zip(&f.cell.agents_required) {
                            if let Some(n) = n {
                                m.encode_family(&[
                                    ("department", f.department.clone()),
                                    ("target", t.label()),
                                ])?
                                .encode_gauge(&i64::from(*n))?;
                            }
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "no forecast"),
            }
        }
        Ok(())
    }
}
