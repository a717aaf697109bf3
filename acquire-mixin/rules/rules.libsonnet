// Recording rules: per-department rates, quantiles and service levels, de-duplicated over
// replicas and kept apart per exporter (the group labels), for the alerts, the runbook's queries
// and ad-hoc dashboards. Names follow level:metric:operations (lib/names.libsonnet).
local p = import '../lib/promql.libsonnet';

{
  prometheusRules+:: {
    local c = $._config,
    local n = (import '../lib/names.libsonnet')(c),
    local dept = ['department'],
    local T = p.num(c.slo.thresholdSeconds),

    // `share` of the closed chats over `window`, with a department that has no series of
    // `share` (its chats were all unanswered, so it has no wait histogram at all) at 0, and none
    // for a department that closed nothing in the window (rather than 0/0).
    local perClosed(share, window) = |||
      (
        %s
        or
        0 * %s
      )
      /
      (%s > 0)
    ||| % [share, n.closed(window), n.closed(window)],

    groups+: [
      {
        help:: |||
          The service level: of the chats a department closed, the share answered within a
          threshold, the share not answered within the SLO's threshold (late or unanswered: the
          SLO alerts' error ratio) and the share unanswered, over every window an alert needs.
          A closed chat is an answered one (counted in the wait histogram) or an unanswered one
          (acquire_chats_unanswered_total, a close without a wait time).
        |||,
        name: 'acquire-service-level.rules',
        rules: std.flattenArrays([
          [
            { record: n.closed(window), expr: p.closed(c, 'rate', window) + '\n' },
            {
              record: n.failed(window),
              expr: '1 - (\n  %s)\n' % p.nest(perClosed(p.derived(c, 'rate', 'acquire_chat_wait_time_seconds_bucket', window, dept, [p.le(c.slo.thresholdSeconds)]), window), 2),
            },
            {
              record: n.unansweredShare(window),
              expr: perClosed(p.derived(c, 'rate', 'acquire_chats_unanswered_total', window, dept), window),
            },
          ]
          for window in n.windows
        ]) + [
          {
            help:: |||
              The share of closed chats answered within %s s, for the dashboard. The bound must be
              an exact bucket bound of `buckets.wait_time`.
            ||| % p.num(seconds),
            record: n.within(seconds),
            expr: perClosed(p.derived(c, 'rate', 'acquire_chat_wait_time_seconds_bucket', '5m', dept, [p.le(seconds)]), '5m'),
          }
          for seconds in n.thresholds
        ],
      },
      {
        help:: 'Waits of answered chats, and the chat counts behind the service level.',
        name: 'acquire-waits.rules',
        rules: [
          {
            help:: 'Wait buckets per department, all roles together: the input of the quantiles below.',
            record: n.waitBuckets,
            expr: p.derived(c, 'rate', 'acquire_chat_wait_time_seconds_bucket', '5m', ['department', 'le']) + '\n',
          },
        ] + [
          { record: n.waitQuantile(q[0]), expr: 'histogram_quantile(%s, %s)\n' % [q[1], n.waitBuckets] }
          for q in [['50', '0.5'], ['90', '0.9'], ['99', '0.99']]
        ] + [
          {
            help:: 'The 90th percentile per department and agent role (administrators against operators).',
            record: n.waitP90ByRole,
            expr: 'histogram_quantile(0.9, %s)\n' % p.derived(c, 'rate', 'acquire_chat_wait_time_seconds_bucket', '5m', ['department', 'agent_role', 'le']),
          },
          {
            help:: 'Mean wait of the answered chats.',
            record: n.waitMean,
            expr: '%s\n/\n%s\n' % [
              p.derived(c, 'rate', 'acquire_chat_wait_time_seconds_sum', '5m', dept),
              p.derived(c, 'rate', 'acquire_chat_wait_time_seconds_count', '5m', dept),
            ],
          },
          {
            help:: 'Chats per second: answered, unanswered (closes without a wait time), and abandoned (closed without an accept, seen by the live queue; for the staffing model).',
            record: n.answered,
            expr: p.derived(c, 'rate', 'acquire_chat_wait_time_seconds_count', '5m', dept) + '\n',
          },
          { record: n.unanswered, expr: p.derived(c, 'rate', 'acquire_chats_unanswered_total', '5m', dept) + '\n' },
          { record: n.abandoned, expr: p.derived(c, 'rate', 'acquire_chats_abandoned_total', '5m', dept) + '\n' },
        ],
      },
      {
        help:: 'The live queue (needs the "On Chat Start" and "On Chat Accept" webhooks).',
        name: 'acquire-live-queue.rules',
        rules: [
          { record: n.waiting, expr: p.derivedGauge(c, 'sum', 'acquire_chats_waiting', dept) + '\n' },
          { record: n.oldestWait, expr: p.derivedGauge(c, 'max', 'acquire_chat_oldest_wait_seconds', dept) + '\n' },
          {
            record: n.acceptP90,
            expr: 'histogram_quantile(0.9, %s)\n' % p.derived(c, 'rate', 'acquire_chat_accept_time_seconds_bucket', '5m', ['department', 'le']),
          },
        ],
      },
      {
        help:: "The staffing gauges, over the exporter's staffing window.",
        name: 'acquire-staffing.rules',
        rules: [
          { record: n.offeredLoad, expr: p.derivedGauge(c, 'max', 'acquire_offered_load_erlangs', dept) + '\n' },
          {
            help:: |||
              Agents required per target: the Erlang A estimate (which accounts for visitors who
              leave) where the exporter has one, else Erlang C (also from exporters that do not
              label the model yet).
            |||,
            record: n.agentsRequired,
            expr: '%s\nor\n%s\n' % [
              p.derivedGauge(c, 'max', 'acquire_agents_required', ['department', 'target'], ['model="erlang_a"']),
              p.derivedGauge(c, 'max', 'acquire_agents_required', ['department', 'target'], ['model!="erlang_a"']),
            ],
          },
          { record: n.agentsSeen, expr: p.derivedGauge(c, 'max', 'acquire_agents_seen', dept) + '\n' },
          {
            help:: 'Agents required in the coming hour, from the same hour of the previous weeks.',
            record: n.agentsForecast,
            expr: p.derivedGauge(c, 'max', 'acquire_agents_forecast', ['department', 'target']) + '\n',
          },
          {
            help:: 'How long visitors wait before they leave (absent while none left).',
            record: n.patience,
            expr: p.derivedGauge(c, 'max', 'acquire_visitor_patience_seconds', dept) + '\n',
          },
        ],
      },
      {
        help:: 'Deliveries and refusals are counted by the replica that received them: summed, not de-duplicated.',
        name: 'acquire-webhooks.rules',
        rules: [
          { record: n.received, expr: p.perReplica(c, 'rate', 'acquire_webhooks_received_total', '5m', ['event', 'outcome']) + '\n' },
          { record: n.rejections, expr: p.perReplica(c, 'rate', 'acquire_webhook_rejections_total', '5m', ['reason']) + '\n' },
        ],
      },
    ],
  },
}
