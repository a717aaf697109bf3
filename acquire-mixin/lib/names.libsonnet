// Names of the recording rules, shared by the rules that record them and the alerts that read
// them. They follow level:metric:operations (https://prometheus.io/docs/practices/rules/): the
// level is the labels kept, the metric the exporter's name without `_total`, the operations
// what was applied, newest first.
local p = import 'promql.libsonnet';

function(c) {
  local L = p.level(c, ['department']),
  local w(window) = p.normal(window),
  local t(seconds) = p.num(seconds),

  level: L,
  // The windows the service-level rules are recorded over: 5m for dashboards, the SLO alerts'
  // windows and the abandonment alert's.
  windows:
    local all = ['5m', c.slo.fastBurn.longWindow, c.slo.fastBurn.shortWindow, c.slo.slowBurn.longWindow, c.slo.slowBurn.shortWindow, c.abandonment.window];
    std.map(p.duration, std.uniq(std.sort(std.map(p.seconds, all)))),
  // The thresholds recorded for the dashboard: the targets' and the SLO's.
  thresholds:
    std.uniq(std.sort([x.thresholdSeconds for x in c.serviceLevelTargets] + [c.slo.thresholdSeconds])),

  closed(window): '%s:acquire_chats_closed:rate%s' % [L, w(window)],
  failed(window): '%s:acquire_chats_not_answered_within_%ss_per_closed:ratio_rate%s' % [L, t(c.slo.thresholdSeconds), w(window)],
  unansweredShare(window): '%s:acquire_chats_unanswered_per_closed:ratio_rate%s' % [L, w(window)],
  within(seconds): '%s:acquire_chats_answered_within_%ss_per_closed:ratio_rate5m' % [L, t(seconds)],

  waitBuckets: '%s:acquire_chat_wait_time_seconds_bucket:rate5m' % p.level(c, ['department', 'le']),
  waitQuantile(q): '%s:acquire_chat_wait_time_seconds:p%s_rate5m' % [L, q],
  waitP90ByRole: '%s:acquire_chat_wait_time_seconds:p90_rate5m' % p.level(c, ['department', 'agent_role']),
  waitMean: '%s:acquire_chat_wait_time_seconds:mean_rate5m' % L,
  answered: '%s:acquire_chats_answered:rate5m' % L,
  unanswered: '%s:acquire_chats_unanswered:rate5m' % L,
  abandoned: '%s:acquire_chats_abandoned:rate5m' % L,

  waiting: '%s:acquire_chats_waiting:sum' % L,
  oldestWait: '%s:acquire_chat_oldest_wait_seconds:max' % L,
  acceptP90: '%s:acquire_chat_accept_time_seconds:p90_rate5m' % L,

  offeredLoad: '%s:acquire_offered_load_erlangs:max' % L,
  agentsRequired: '%s:acquire_agents_required:erlang_a_else_c' % p.level(c, ['department', 'target']),
  agentsSeen: '%s:acquire_agents_seen:max' % L,
  agentsForecast: '%s:acquire_agents_forecast:max' % p.level(c, ['department', 'target']),
  patience: '%s:acquire_visitor_patience_seconds:max' % L,

  received: '%s:acquire_webhooks_received:rate5m' % p.level(c, ['event', 'outcome']),
  rejections: '%s:acquire_webhook_rejections:rate5m' % p.level(c, ['reason']),
}
