// The one configuration of the kit: every rule, alert, annotation text and dashboard panel of
// acquire-mixin is generated from these values. Override them in your own jsonnet file:
//
//   (import 'acquire-mixin/mixin.libsonnet') + {
//     _config+:: { selector: 'job="support-chat"' },
//   }
//
// Durations are Prometheus durations ('90s', '5m', '1h', '1w').
{
  _config+:: {
    // The series of the exporter: every rule, alert and panel reads only series matching this
    // selector (without braces). prometheus-operator names jobs after the Service, so set it to
    // yours, e.g. 'job="acquire-exporter"', or 'namespace="support", job="acquire-exporter"'.
    selector: 'job="acquire"',

    // Labels that tell the replicas of one exporter apart. Every replica follows the same event
    // log and exposes the same chat families (histograms, counters derived from events, the live
    // queue, the staffing gauges), so rules and panels over them take `max without (...)` these
    // labels before summing or rating across series. Per-replica metrics (deliveries, refusals,
    // storage, process, `up`) are summed over them instead. With one replica both give the same
    // numbers. Two exporters of different Acquire accounts must therefore differ in a label that is
    // not listed here (their job, or a label such as `account` added to groupLabels).
    replicaLabels: ['instance', 'pod'],

    // Labels that tell exporters apart (one per Acquire account): every aggregation keeps them,
    // every alert carries them for routing, and recording rules are named after them
    // (`job_department:...`).
    groupLabels: ['job'],

    // The service-level objective on waits: the share of closed chats answered within
    // `thresholdSeconds`. A chat nobody answered (a close without a wait time) counts as a
    // failure. The threshold must be an exact bound of the exporter's `buckets.wait_time` (the
    // defaults include 15, 20, 30, 60, 120 and 300 s): a classic histogram knows "at most X
    // seconds" only at its bounds, and a threshold that is not a bound matches no series.
    slo: {
      thresholdSeconds: 60,
      objective: 0.80,
      // Multi-window, multi-burn-rate alerts (the SRE workbook, "Alerting on SLOs"): an alert
      // fires when the share of failed chats exceeds burnRate x (1 - objective) over both the
      // long and the short window. The workbook's 14.4 and 6 assume a 99.9 % objective; with
      // 80 % the error budget is 20 % of the chats, and no share can exceed 100 % = a burn rate
      // of 5, so the defaults are 2.5 (half the chats fail) and 1.5 (30 % fail). The mixin
      // refuses a burn rate that could never fire.
      fastBurn: { longWindow: '1h', shortWindow: '5m', burnRate: 2.5, 'for': '2m', severity: 'critical' },
      slowBurn: { longWindow: '6h', shortWindow: '30m', burnRate: 1.5, 'for': '15m', severity: 'warning' },
      // At least this many closed chats in the long window, so that at a quiet hour two late
      // chats out of three cannot page.
      minChats: 10,
    },

    // Service-level thresholds recorded for the dashboard and its colours, with the objective of
    // each (the exporter's default staffing targets, 90%/20s and 80%/60s). The SLO's threshold is
    // always recorded too.
    serviceLevelTargets: [
      { thresholdSeconds: 20, objective: 0.90 },
      { thresholdSeconds: 60, objective: 0.80 },
    ],

    // The share of closed chats nobody answered (visitors who left, chats closed unanswered).
    abandonment: { maxShare: 0.25, window: '30m', minChats: 10, 'for': '10m' },

    // A department closed no chat for `window` although it closed at least `minChats` in the same
    // window one `reference` ago. '1w' follows opening hours and weekends; use '1d' for a team
    // that works every day. `dstGuard` requires the traffic a reference ago to have been there
    // also that long before and after, so that the hour daylight saving time shifts the opening
    // hours by (the offset is in UTC, opening hours in local time) does not fire for a week after
    // each change; '' turns the guard off.
    noChatsClosed: { window: '30m', reference: '1w', dstGuard: '1h', minChats: 10, 'for': '15m' },

    // The live queue: the oldest chat waiting unaccepted (a gauge, exact to the second: any
    // threshold works). About twice the SLO threshold.
    oldestWait: { thresholdSeconds: 120, 'for': '2m' },

    // Chats that left the live queue after `queue.expire_after` without an accept or a close.
    expiring: { window: '1h' },

    // Agents seen (distinct agents who accepted or closed a chat in the staffing window) below
    // the agents the model requires for the SLO's target, for `for`; below the forecast for the
    // coming hour, for `forecastFor` (shorter: it warns ahead, while there is time to act).
    staffing: { 'for': '30m', forecastFor: '15m' },

    // Webhook deliveries: refused per event type, unreadable bodies, authentication failures,
    // starts without accepts.
    webhooks: {
      window: '15m',
      maxRejectedShare: 0.05,
      minRejected: 5,
      rejectedFor: '10m',
      minAuthFailures: 10,
      acceptsWindow: '30m',
      minStartsWithoutAccepts: 10,
      acceptsFor: '15m',
    },

    // The exporter itself.
    exporter: {
      downFor: '3m',  // above a restart: 12 failed scrapes at 15 s
      replicaDownFor: '5m',
      storageWindow: '5m',
      storageFor: '5m',
      // Snapshots fail and none succeeds within this window: pruning waits, the store grows.
      snapshotsWindow: '1h',
      restartsWindow: '1h',
      maxRestarts: 2,
      maxFdsShare: 0.8,
      fdsFor: '10m',
      labelOverflowWindow: '1h',
      // Scrapes: `sample_limit` must be the one in your scrape config (prometheus/prometheus.yml
      // ships 500000, above the worst case of the default label caps and buckets): past it
      // Prometheus drops the whole scrape.
      sampleLimit: 500000,
      maxSamplesShare: 0.8,
      samplesFor: '15m',
      maxScrapeSeconds: 5,
      scrapeFor: '15m',
    },

    // Labels added to every alert of each category, so Alertmanager can route them: `support`
    // alerts (service level, abandonment, live queue, staffing) go to the support team, `exporter`
    // alerts (scrapes, webhooks, storage, the process) to whoever runs the exporter. Add your own,
    // e.g. { category: 'support', team: 'customer-care' }.
    alertLabels: {
      support: { category: 'support' },
      exporter: { category: 'exporter' },
    },

    // Every alert's `runbook_url` and every panel's link: this base and the alert's name in lower
    // case (or the panel's section) as the anchor.
    runbookURL: 'https://github.com/acquire-exporter/acquire-exporter/blob/main/docs/runbook.md',

    // The dashboard.
    dashboard: {
      uid: 'acquire-chats',
      title: 'Acquire chats',
      tags: ['acquire', 'acquire-exporter', 'live-chat'],
      refresh: '30s',
      timeFrom: 'now-6h',
      // The default of the `job` variable (the job that scrapes the exporter).
      defaultJob: 'acquire',
      // Smallest step of the heatmaps (each chat in exactly one cell: increase over the step
      // itself) and of the concurrency panel (Little's law wants a window long against chats).
      heatmapMinInterval: '1m',
      concurrencyMinInterval: '15m',
    },
  },
}
