// The "Acquire chats" dashboard. It reads only the exporter's own metrics (and Prometheus's
// `up`, scrape metrics and ALERTS), so it works without the recording rules. Families every
// replica exposes alike are de-duplicated with `max without (replica labels)` before any sum;
// per-replica families (deliveries, refusals, storage, process) are summed.
local p = import '../lib/promql.libsonnet';
local g = import 'panels.libsonnet';

{
  grafanaDashboards+:: {
    local c = $._config,
    local d = c.dashboard,
    local r = p.replicas(c),
    local link(anchor, title) = { title: 'Runbook: ' + title, url: '%s#%s' % [c.runbookURL, anchor] },

    // Selectors: the exporter's job and instances, departments, roles.
    local f = 'job=~"$job",instance=~"$instance"',
    local fd = f + ',department=~"$department"',
    local fdr = fd + ',agent_role=~"$agent_role"',
    local le = 'le=~"$threshold(\\\\.0)?"',
    local dedup(e) = 'max without (%s) (%s)' % [r, e],

    // Closed chats (answered or not) and those answered within $threshold, over `window`,
    // summed by `by`. The SLO's own threshold for the burn rates.
    local closed(by, fn, window) =
      'sum%s (%s or %s)' % [
        if by == '' then '' else ' by (%s)' % by,
        dedup('%s(acquire_chat_wait_time_seconds_count{%s}[%s])' % [fn, fd, window]),
        dedup('%s(acquire_chats_unanswered_total{%s}[%s])' % [fn, fd, window]),
      ],
    local within(by, fn, window, matcher=le) =
      'sum%s (%s)' % [
        if by == '' then '' else ' by (%s)' % by,
        dedup('%s(acquire_chat_wait_time_seconds_bucket{%s,%s}[%s])' % [fn, fd, matcher, window]),
      ],
    // A share of the closed chats where some closed (no 0/0 for an idle department).
    local share(part, whole) = '(%s or 0 * %s) / (%s > 0)' % [part, whole, whole],

    // The objective of the chosen threshold (the configured targets; else the SLO's objective).
    local objective =
      std.join(' or ', [
        '(vector(%s) and on () (vector($threshold) == %s))' % [p.num(t.objective), p.num(t.thresholdSeconds)]
        for t in c.serviceLevelTargets
      ] + ['vector(%s)' % p.num(c.slo.objective)]),

    local quantiles(metric, qs, nativeLegend) =
      [
        g.target(q[0], 'histogram_quantile(%s, sum by (le) (%s))' % [q[1], dedup('rate(%s_bucket{%s}[$__rate_interval])' % [metric, fdr])], q[2])
        for q in qs
      ] + [
        // Only `sum` aggregates native histograms (Prometheus 2); a quantile of the sum of the
        // replicas' identical histograms is the quantile of one, so no de-duplication is needed.
        g.target('native_p90', 'histogram_quantile(0.9, sum(rate(%s{%s}[$__rate_interval])))' % [metric, fdr], nativeLegend, exemplar=true),
      ],

    local burn(window) =
      '(1 - %s) / %s' % [
        share(within('department', 'rate', window, p.le(c.slo.thresholdSeconds)), closed('department', 'rate', window)),
        p.num(1 - c.slo.objective),
      ],

    local rows = [
      {
        title: 'Overview',
        panels: [
          [4, 4, g.stat(
            'Exporter up',
            'Whether Prometheus reached each instance of the exporter at its last scrape (`up`).',
            'none',
            [g.target('A', 'up{%s}' % f, '{{instance}}', instant=true)],
            link('acquireexporterdown', 'AcquireExporterDown'),
            [{ color: 'red', value: null }, { color: 'green', value: 1 }],
            [{ type: 'value', options: { '0': { text: 'DOWN', color: 'red', index: 0 }, '1': { text: 'UP', color: 'green', index: 1 } } }],
          )],
          [4, 4, g.stat(
            'Exporter version',
            'Version and revision of the running exporters (the revision is set at build time by ACQUIRE_EXPORTER_REVISION).',
            'none',
            [g.target('A', 'max by (version, revision) (acquire_exporter_build_info{%s})' % f, '{{version}} ({{revision}})', instant=true)],
            link('the-exporter-process', 'the exporter process'),
          ) + { options+: { textMode: 'name' } }],
          [3, 4, g.stat(
            'Chats waiting now',
            'Chats started and not yet accepted or closed (the live queue; needs the start and accept webhooks).',
            'short',
            [g.target('A', 'sum(%s)' % dedup('acquire_chats_waiting{%s}' % fd), 'waiting', instant=true)],
            link('live-queue', 'live queue'),
          )],
          [3, 4, g.stat(
            'Oldest wait now',
            'How long the oldest waiting chat has waited. Orange from the chosen threshold on, red from the oldest-wait alert on.',
            's',
            [
              g.target('A', 'max(%s)' % dedup('acquire_chat_oldest_wait_seconds{%s}' % fd), 'oldest', instant=true),
              g.target('threshold', 'vector($threshold)', 'threshold', instant=true),
            ],
            link('acquireoldestwaitingchattooold', 'AcquireOldestWaitingChatTooOld'),
            [{ color: 'green', value: null }, { color: 'orange', value: c.slo.thresholdSeconds }, { color: 'red', value: c.oldestWait.thresholdSeconds }],
          ) + g.thresholdFromQuery('threshold', 'orange')],
          [4, 4, g.stat(
            'Answered within $threshold s',
            'Of the chats closed over the dashboard range, the share answered within the chosen threshold. Chats nobody answered count as not answered in time (the service level of the SLO). Green from the objective of that threshold on.',
            'percentunit',
            [
              g.target('A', share(within('', 'increase', '$__range'), closed('', 'increase', '$__range')), 'within threshold', instant=true),
              g.target('objective', objective, 'objective', instant=true),
            ],
            link('acquireservicelevelfastburn', 'AcquireServiceLevelFastBurn'),
            [{ color: 'red', value: null }, { color: 'green', value: c.slo.objective }],
          ) + g.thresholdFromQuery('objective', 'green') + { fieldConfig+: { defaults+: { min: 0, max: 1, decimals: 1 } } }],
          [3, 4, g.stat(
            'Unanswered share',
            'Of the chats closed over the dashboard range, the share nobody answered (visitors who left).',
            'percentunit',
            [g.target('A', share('sum(%s)' % dedup('increase(acquire_chats_unanswered_total{%s}[$__range])' % fd), closed('', 'increase', '$__range')), 'unanswered', instant=true)],
            link('acquirechatabandonmenthigh', 'AcquireChatAbandonmentHigh'),
            [{ color: 'green', value: null }, { color: 'orange', value: c.abandonment.maxShare / 2 }, { color: 'red', value: c.abandonment.maxShare }],
          ) + { fieldConfig+: { defaults+: { min: 0, max: 1, decimals: 1 } } }],
          [3, 4, g.stat(
            'Webhook authentication failures',
            'Deliveries refused with 401 over the dashboard range (missing or wrong token or signature).',
            'short',
            [g.target('A', 'sum(increase(acquire_webhook_rejections_total{%s,reason="unauthorized"}[$__range]))' % f, 'unauthorized', instant=true)],
            link('acquirewebhookauthfailures', 'AcquireWebhookAuthFailures'),
            [{ color: 'green', value: null }, { color: 'orange', value: 1 }, { color: 'red', value: c.webhooks.minAuthFailures }],
          ) + { fieldConfig+: { defaults+: { decimals: 0 } } }],
          [24, 5, g.table(
            'Firing alerts',
            "The kit's alerts firing now for the selected job (from Prometheus's ALERTS series).",
            [g.target('alerts', 'sum by (alertname, severity, category, department) (ALERTS{alertstate="firing",alertname=~"Acquire.+",job=~"$job"})', instant=true, format='table')],
            link('severities-and-routing', 'severities and routing'),
            [{ field: 'Value', name: 'Alerts', unit: 'short', decimals: 0 }],
            'Alerts',
          )],
        ],
      },
      {
        title: 'Live queue',
        panels: [
          [8, 8, g.timeseries(
            'Chats waiting now by department',
            'Chats started and not yet accepted or closed, per department.',
            'short',
            [g.target('A', 'sum by (department) (%s)' % dedup('acquire_chats_waiting{%s}' % fd), '{{department}}')],
            link('live-queue', 'live queue'),
          )],
          [8, 8, g.timeseries(
            'Oldest waiting chat by department',
            'How long the oldest waiting chat of each department has waited; the dashed line is the chosen threshold.',
            's',
            [
              g.target('A', 'max by (department) (%s)' % dedup('acquire_chat_oldest_wait_seconds{%s}' % fd), '{{department}}'),
              g.line('threshold', 'vector($threshold)', 'threshold'),
            ],
            link('acquireoldestwaitingchattooold', 'AcquireOldestWaitingChatTooOld'),
            ['threshold'],
          )],
          [8, 8, g.timeseries(
            'Time to accept p90 by department',
            "The 90th percentile of the time from a chat's start to its accept, per department.",
            's',
            [g.target('A', 'histogram_quantile(0.9, sum by (department, le) (%s))' % dedup('rate(acquire_chat_accept_time_seconds_bucket{%s}[$__rate_interval])' % fd), '{{department}}')],
            link('live-queue', 'live queue'),
          )],
          [12, 7, g.timeseries(
            'Unanswered chats per hour',
            'Closed chats without a wait time (nobody answered them), and chats closed without an accept seen by the live queue (abandoned, for the staffing model), per hour.',
            'short',
            [
              g.target('A', 'sum by (department) (%s) * 3600' % dedup('rate(acquire_chats_unanswered_total{%s}[$__rate_interval])' % fd), 'unanswered {{department}}'),
              g.target('abandoned', 'sum by (department) (%s) * 3600' % dedup('rate(acquire_chats_abandoned_total{%s}[$__rate_interval])' % fd), 'abandoned {{department}}'),
            ],
            link('acquirechatabandonmenthigh', 'AcquireChatAbandonmentHigh'),
          )],
          [12, 7, g.timeseries(
            'Expired chats per hour',
            'Waiting chats dropped after `queue.expire_after` without an accept or a close, per hour.',
            'short',
            [g.target('A', 'sum by (department) (%s) * 3600' % dedup('rate(acquire_chats_expired_total{%s}[$__rate_interval])' % fd), '{{department}}')],
            link('acquirechatsexpiring', 'AcquireChatsExpiring'),
          )],
        ],
      },
      {
        title: 'Service level and waits',
        panels: [
          [12, 8, g.timeseries(
            'Chats closed per minute by department',
            'Closed chats per minute: answered (they have a wait time) and unanswered.',
            'short',
            [
              g.target('A', 'sum by (department) (%s) * 60' % dedup('rate(acquire_chat_wait_time_seconds_count{%s}[$__rate_interval])' % fd), 'answered {{department}}'),
              g.target('B', 'sum by (department) (%s) * 60' % dedup('rate(acquire_chats_unanswered_total{%s}[$__rate_interval])' % fd), 'unanswered {{department}}'),
            ],
            link('service-level-and-waits', 'service level and waits'),
          )],
          [12, 8, g.timeseries(
            'Answered within $threshold s by department',
            'Of the closed chats, the share answered within the chosen threshold (unanswered chats count as not in time); the dashed line is the objective of that threshold.',
            'percentunit',
            [
              g.target('A', share(within('department', 'rate', '$__rate_interval'), closed('department', 'rate', '$__rate_interval')), '{{department}}'),
              g.line('objective', objective, 'objective'),
            ],
            link('acquireservicelevelfastburn', 'AcquireServiceLevelFastBurn'),
            ['objective'],
          ) + { fieldConfig+: { defaults+: { min: 0, max: 1 } } }],
          [12, 8, g.timeseries(
            'Unanswered share by department',
            'Of the closed chats, the share nobody answered; the dashed line is where the abandonment alert fires.',
            'percentunit',
            [
              g.target('A', share('sum by (department) (%s)' % dedup('rate(acquire_chats_unanswered_total{%s}[$__rate_interval])' % fd), closed('department', 'rate', '$__rate_interval')), '{{department}}'),
              g.line('alert', 'vector(%s)' % p.num(c.abandonment.maxShare), 'alert threshold'),
            ],
            link('acquirechatabandonmenthigh', 'AcquireChatAbandonmentHigh'),
            ['alert'],
          ) + { fieldConfig+: { defaults+: { min: 0, max: 1 } } }],
          [12, 8, g.timeseries(
            'Service-level burn rate by department',
            'How many times faster than the objective allows the error budget burns (late or unanswered chats over %s of the closed ones), over the long windows of the two SLO alerts; the dashed lines are their burn rates.' % p.percent(1 - c.slo.objective),
            'none',
            [
              g.target('fast', burn(c.slo.fastBurn.longWindow), '{{department}} (%s)' % p.normal(c.slo.fastBurn.longWindow)),
              g.target('slow', burn(c.slo.slowBurn.longWindow), '{{department}} (%s)' % p.normal(c.slo.slowBurn.longWindow)),
              g.line('fast_burn', 'vector(%s)' % p.num(c.slo.fastBurn.burnRate), 'page'),
              g.line('slow_burn', 'vector(%s)' % p.num(c.slo.slowBurn.burnRate), 'ticket'),
            ],
            link('acquireservicelevelslowburn', 'AcquireServiceLevelSlowBurn'),
            ['fast_burn', 'slow_burn'],
          )],
          [12, 8, g.timeseries(
            'Wait time p50 / p90 / p99',
            'Quantiles of the time visitors waited before an agent answered, for the chats closed in each interval (classic buckets, interpolated within a bucket); the dashed line is the chosen threshold. The `p90 (native)` line comes from the native histogram: empty on a Prometheus that does not scrape native histograms, with exemplars (the chat id of a recent wait) where exemplar storage is on.',
            's',
            quantiles('acquire_chat_wait_time_seconds', [['A', '0.5', 'p50'], ['B', '0.9', 'p90'], ['C', '0.99', 'p99']], 'p90 (native)')
            + [g.line('threshold', 'vector($threshold)', 'threshold')],
            link('service-level-and-waits', 'service level and waits'),
            ['threshold'],
          )],
          [12, 8, g.heatmap(
            'Wait time distribution',
            'How many chats waited how long, per interval: the increase over exactly one step, so that each chat is in one cell (classic buckets). Exemplars, where stored, carry the chat id of a recent wait in that bucket.',
            [g.target('A', 'sum by (le) (%s)' % dedup('increase(acquire_chat_wait_time_seconds_bucket{%s}[$__interval])' % fdr), '{{le}}', format='heatmap', exemplar=true)],
            link('service-level-and-waits', 'service level and waits'),
            d.heatmapMinInterval,
          )],
        ],
      },
      {
        title: 'Durations and concurrency',
        panels: [
          [8, 8, g.timeseries(
            'Chat duration p50 / p90',
            'Quantiles of the duration of closed chats (classic buckets); `p90 (native)` from the native histogram.',
            's',
            quantiles('acquire_chat_duration_seconds', [['A', '0.5', 'p50'], ['B', '0.9', 'p90']], 'p90 (native)'),
            link('durations-and-concurrency', 'durations and concurrency'),
          )],
          [8, 8, g.heatmap(
            'Chat duration distribution',
            'How many chats lasted how long, per interval (each chat in one cell).',
            [g.target('A', 'sum by (le) (%s)' % dedup('increase(acquire_chat_duration_seconds_bucket{%s}[$__interval])' % fdr), '{{le}}', format='heatmap', exemplar=true)],
            link('durations-and-concurrency', 'durations and concurrency'),
            d.heatmapMinInterval,
          )],
          [8, 8, g.timeseries(
            "Concurrent chats (Little's law)",
            "Chats in progress on average, per department: chat-seconds closed per second (Little's law), over a window of at least %s so that chats lasting many minutes do not make a sawtooth. Agent-handled chats only: unanswered chats are no agent's load." % d.concurrencyMinInterval,
            'short',
            [g.target('A', 'sum by (department) (%s)' % dedup('rate(acquire_chat_duration_seconds_sum{%s,agent_role!="none"}[$__interval])' % fdr), '{{department}}')],
            link('durations-and-concurrency', 'durations and concurrency'),
          ) + { interval: d.concurrencyMinInterval }],
        ],
      },
      {
        title: 'By agent role',
        panels: [
          [24, 7, g.table(
            'Per agent role',
            'Over the dashboard range, per agent role: chats answered, median and 90th percentile wait, share of the answered chats within the threshold, and mean chat duration. The role `none` (chats nobody answered) has durations only.',
            [
              g.target('A', 'sum by (agent_role) (%s)' % dedup('increase(acquire_chat_wait_time_seconds_count{%s}[$__range])' % fdr), instant=true, format='table'),
              g.target('B', 'histogram_quantile(0.5, sum by (agent_role, le) (%s))' % dedup('rate(acquire_chat_wait_time_seconds_bucket{%s}[$__range])' % fdr), instant=true, format='table'),
              g.target('C', 'histogram_quantile(0.9, sum by (agent_role, le) (%s))' % dedup('rate(acquire_chat_wait_time_seconds_bucket{%s}[$__range])' % fdr), instant=true, format='table'),
              g.target('D', 'sum by (agent_role) (%s) / (sum by (agent_role) (%s) > 0)' % [
                dedup('increase(acquire_chat_wait_time_seconds_bucket{%s,%s}[$__range])' % [fdr, le]),
                dedup('increase(acquire_chat_wait_time_seconds_count{%s}[$__range])' % fdr),
              ], instant=true, format='table'),
              g.target('E', 'sum by (agent_role) (%s) / (sum by (agent_role) (%s) > 0)' % [
                dedup('increase(acquire_chat_duration_seconds_sum{%s}[$__range])' % fdr),
                dedup('increase(acquire_chat_duration_seconds_count{%s}[$__range])' % fdr),
              ], instant=true, format='table'),
            ],
            link('by-agent-role', 'by agent role'),
            [
              { field: 'Value #A', name: 'Chats answered', unit: 'short', decimals: 0 },
              { field: 'Value #B', name: 'Wait p50', unit: 's' },
              { field: 'Value #C', name: 'Wait p90', unit: 's' },
              { field: 'Value #D', name: 'Within threshold', unit: 'percentunit' },
              { field: 'Value #E', name: 'Mean duration', unit: 's' },
            ],
            'Chats answered',
          )],
        ],
      },
      {
        title: "Staffing (over the exporter's staffing window)",
        panels: [
          [8, 8, g.timeseries(
            'Offered load',
            'Arrival rate times mean handle time: how many agents would be busy all the time, per department.',
            'short',
            [g.target('A', 'max by (department) (%s)' % dedup('acquire_offered_load_erlangs{%s}' % fd), '{{department}}')],
            link('staffing', 'staffing'),
          )],
          [8, 8, g.timeseries(
            'Agents required, forecast and seen',
            'Agents the model requires per target (Erlang A, which accounts for visitors who leave, where the exporter has a patience estimate; else Erlang C), the forecast for the coming hour from the same hour of previous weeks, and the distinct agents seen taking chats.',
            'short',
            [
              g.target('A', 'max by (department, target) (%s) or max by (department, target) (%s)' % [
                dedup('acquire_agents_required{%s,model="erlang_a"}' % fd),
                dedup('acquire_agents_required{%s,model!="erlang_a"}' % fd),
              ], 'required {{department}} ({{target}})'),
              g.target('B', 'max by (department) (%s)' % dedup('acquire_agents_seen{%s}' % fd), 'seen {{department}}'),
              g.target('forecast', 'max by (department, target) (%s)' % dedup('acquire_agents_forecast{%s}' % fd), 'forecast {{department}} ({{target}})'),
            ],
            link('acquireagentsbelowrequired', 'AcquireAgentsBelowRequired'),
          )],
          [8, 8, g.timeseries(
            'Arrivals and handle time',
            'Chats per hour over the staffing window, the mean handle time of agent-handled chats, and the time visitors wait before they leave (patience, once some left).',
            's',
            [
              g.target('A', 'max by (department) (%s) * 3600' % dedup('acquire_chat_arrivals_per_second{%s}' % fd), 'arrivals per hour {{department}}'),
              g.target('B', 'max by (department) (%s)' % dedup('acquire_chat_mean_handle_time_seconds{%s}' % fd), 'handle time {{department}}'),
              g.target('patience', 'max by (department) (%s)' % dedup('acquire_visitor_patience_seconds{%s}' % fd), 'patience {{department}}'),
            ],
            link('staffing', 'staffing'),
          ) + { fieldConfig+: { overrides+: [{ matcher: { id: 'byFrameRefID', options: 'A' }, properties: [{ id: 'unit', value: 'short' }] }] } }],
          [24, 8, g.timeseries(
            'Week plan: agents each hour needs',
            "The last 7 days, hour by hour, whatever the dashboard's range: the agents each hour needed by the forecast (the same hour of the previous 4 weeks, as the exporter forecast it an hour ahead; the cells of `acquire-exporter plan --history`), against the most agents seen in that hour. Weeks repeat: this is next week's roster by the history, Monday 9-10 where last Monday 9-10 is.",
            'short',
            [
              g.target('forecast', 'max by (department, target) (%s)' % dedup('max_over_time(acquire_agents_forecast{%s}[1h])' % fd), 'forecast {{department}} ({{target}})'),
              g.target('seen', 'max by (department) (%s)' % dedup('max_over_time(acquire_agents_seen{%s}[1h])' % fd), 'seen {{department}}'),
            ],
            link('acquireagentsbelowforecast', 'AcquireAgentsBelowForecast'),
          ) + {
            timeFrom: '7d',
            interval: '1h',
            fieldConfig+: { defaults+: { custom+: { drawStyle: 'bars', fillOpacity: 40 } } },
          }],
        ],
      },
      {
        title: 'Webhooks and storage',
        panels: [
          [8, 8, g.timeseries(
            'Deliveries by event and outcome',
            'Webhook deliveries per second by event type and outcome, summed over replicas.',
            'reqps',
            [g.target('A', 'sum by (event, outcome) (rate(acquire_webhooks_received_total{%s}[$__rate_interval]))' % f, '{{event}} {{outcome}}')],
            link('acquirewebhookrejectionshigh', 'AcquireWebhookRejectionsHigh'),
          )],
          [8, 8, g.timeseries(
            'Rejections by reason',
            'Refused deliveries per second by reason.',
            'reqps',
            [g.target('A', 'sum by (reason) (rate(acquire_webhook_rejections_total{%s}[$__rate_interval]))' % f, '{{reason}}')],
            link('acquirewebhookbodiesunreadable', 'AcquireWebhookBodiesUnreadable'),
          )],
          [8, 8, g.timeseries(
            'Duplicate deliveries',
            "Deliveries of events already stored (the sender's retries), per second.",
            'reqps',
            [g.target('A', 'sum by (event) (rate(acquire_webhooks_received_total{%s,outcome="duplicate"}[$__rate_interval]))' % f, '{{event}}')],
            link('webhooks-and-storage', 'webhooks and storage'),
          )],
          [6, 5, g.timeseries(
            'Storage failures',
            'Deliveries per minute that the store could not commit (answered 503; `/-/ready` answers 503 meanwhile), per instance.',
            'short',
            [g.target('A', 'sum by (instance) (rate(acquire_webhooks_received_total{%s,outcome="error"}[$__rate_interval])) * 60' % f, '{{instance}}')],
            link('acquireexporterstoragefailing', 'AcquireExporterStorageFailing'),
          )],
          [6, 5, g.stat(
            'Label overflow',
            'Events recorded under department or agent_role `other` over the dashboard range, because the label reached its cap (`limits` in the config): raise the cap or check the sender.',
            'short',
            [g.target('A', 'sum by (label) (%s)' % dedup('increase(acquire_label_overflow_total{%s}[$__range])' % f), '{{label}}', instant=true)],
            link('acquirelabeloverflow', 'AcquireLabelOverflow'),
            [{ color: 'green', value: null }, { color: 'orange', value: 1 }],
          ) + { fieldConfig+: { defaults+: { decimals: 0 } } }],
          [6, 5, g.stat(
            'Events in the store',
            'Admitted chat starts, accepts and closes held in the store, per instance.',
            'short',
            [g.target('A', 'sum by (instance) (acquire_exporter_storage_events{%s})' % f, '{{instance}}', instant=true)],
            link('webhooks-and-storage', 'webhooks and storage'),
          )],
          [6, 5, g.timeseries(
            'Store commit time p99',
            "The 99th percentile of the store's group commits.",
            's',
            [g.target('A', 'histogram_quantile(0.99, sum by (instance, le) (rate(acquire_exporter_storage_commit_duration_seconds_bucket{%s}[$__rate_interval])))' % f, '{{instance}}')],
            link('webhooks-and-storage', 'webhooks and storage'),
          )],
        ],
      },
      {
        title: 'The exporter process',
        panels: [
          [6, 7, g.timeseries(
            'CPU',
            'CPU time of each exporter process, in cores.',
            'percentunit',
            [g.target('A', 'rate(process_cpu_seconds_total{%s}[$__rate_interval])' % f, '{{instance}}')],
            link('the-exporter-process', 'the exporter process'),
          )],
          [6, 7, g.timeseries(
            'Resident memory',
            'Resident memory of each exporter process.',
            'bytes',
            [g.target('A', 'process_resident_memory_bytes{%s}' % f, '{{instance}}')],
            link('the-exporter-process', 'the exporter process'),
          )],
          [6, 7, g.timeseries(
            'Open file descriptors',
            'Open file descriptors of each exporter process, as a share of its limit.',
            'percentunit',
            [
              g.target('A', 'process_open_fds{%s} / process_max_fds{%s}' % [f, f], '{{instance}}'),
              g.line('alert', 'vector(%s)' % p.num(c.exporter.maxFdsShare), 'alert threshold'),
            ],
            link('acquireexporterfdsnearlimit', 'AcquireExporterFdsNearLimit'),
            ['alert'],
          ) + { fieldConfig+: { defaults+: { min: 0, max: 1 } } }],
          [6, 7, g.stat(
            'Uptime',
            'Time since each exporter process started; restarts reset it.',
            's',
            [g.target('A', 'time() - process_start_time_seconds{%s}' % f, '{{instance}}', instant=true)],
            link('acquireexporterrestarting', 'AcquireExporterRestarting'),
          )],
          [12, 7, g.timeseries(
            'Scrape duration',
            "How long Prometheus's scrapes of each instance take (`scrape_duration_seconds`); the dashed line is where the slow-scrape alert fires.",
            's',
            [
              g.target('A', 'scrape_duration_seconds{%s}' % f, '{{instance}}'),
              g.line('alert', 'vector(%s)' % p.num(c.exporter.maxScrapeSeconds), 'alert threshold'),
            ],
            link('acquireexporterscrapeslow', 'AcquireExporterScrapeSlow'),
            ['alert'],
          )],
          [12, 7, g.timeseries(
            'Samples per scrape',
            'Samples in each scrape (`scrape_samples_scraped`); the dashed line is the `sample_limit` of the scrape config, past which Prometheus drops the whole scrape.',
            'short',
            [
              g.target('A', 'scrape_samples_scraped{%s}' % f, '{{instance}}'),
              g.line('limit', 'vector(%d)' % c.exporter.sampleLimit, 'sample_limit'),
            ],
            link('acquireexporterscrapenearsamplelimit', 'AcquireExporterScrapeNearSampleLimit'),
            ['limit'],
          )],
        ],
      },
    ],

    // Rows and panels laid out left to right, wrapping at 24 columns; ids in order.
    local layout = std.foldl(
      function(acc, row)
        local rowPanel = g.row(row.title) { id: acc.id, gridPos: { x: 0, y: acc.y, w: 24, h: 1 } };
        local placed = std.foldl(
          function(st, item)
            local w = item[0];
            local h = item[1];
            local wrap = st.x + w > 24;
            local x = if wrap then 0 else st.x;
            local y = if wrap then st.y + st.lineH else st.y;
            st {
              x: x + w,
              y: y,
              lineH: if wrap then h else std.max(st.lineH, h),
              id: st.id + 1,
              panels: st.panels + [item[2] { id: st.id, gridPos: { x: x, y: y, w: w, h: h } }],
            },
          row.panels,
          { x: 0, y: acc.y + 1, lineH: 0, id: acc.id + 1, panels: [] }
        );
        { y: placed.y + placed.lineH, id: placed.id, panels: acc.panels + [rowPanel] + placed.panels },
      rows,
      { y: 0, id: 1, panels: [] }
    ),

    local variable(name, label, query, multi) = {
      type: 'query',
      name: name,
      label: label,
      datasource: g.ds,
      definition: query,
      query: query,
      refresh: 2,
      regex: '',
      sort: 1,
      multi: multi,
      includeAll: multi,
      current: if multi then { selected: true, text: ['All'], value: ['$__all'] } else {},
      options: [],
      hide: 0,
    },

    'acquire-chats.json': {
      uid: d.uid,
      title: d.title,
      description: 'Wait and duration of Acquire live chats by department and agent role, the service level against its objective, the live queue, staffing estimates, the webhook receiver and the exporter process, from acquire-exporter.',
      tags: d.tags,
      editable: true,
      graphTooltip: 1,
      timezone: 'browser',
      time: { from: d.timeFrom, to: 'now' },
      refresh: d.refresh,
      fiscalYearStartMonth: 0,
      liveNow: false,
      weekStart: '',
      links: [{ title: 'Runbook', type: 'link', url: c.runbookURL, targetBlank: true, icon: 'doc' }],
      annotations: {
        list: [
          {
            builtIn: 1,
            datasource: { type: 'grafana', uid: '-- Grafana --' },
            enable: true,
            hide: true,
            iconColor: 'rgba(0, 211, 255, 1)',
            name: 'Annotations & Alerts',
            type: 'dashboard',
          },
        ],
      },
      schemaVersion: 42,
      version: 1,
      panels: layout.panels,
      templating: {
        list: [
          { type: 'datasource', name: 'datasource', label: 'Data source', query: 'prometheus', refresh: 1, regex: '', current: {}, options: [], hide: 0, includeAll: false, multi: false },
          variable('job', 'Job', 'label_values(acquire_exporter_build_info%s, job)' % p.sel(c), false)
          + { current: { selected: true, text: d.defaultJob, value: d.defaultJob } },
          variable('instance', 'Instance', 'label_values(acquire_exporter_build_info{job=~"$job"}, instance)', true),
          variable('department', 'Department', 'label_values({__name__=~"acquire_chat_duration_seconds(_count)?|acquire_chats_unanswered_total|acquire_chats_waiting",job=~"$job",instance=~"$instance"}, department)', true)
          + { allValue: '.*' },
          variable('agent_role', 'Agent role', 'label_values({__name__=~"acquire_chat_duration_seconds(_count)?",job=~"$job",instance=~"$instance"}, agent_role)', true)
          + { allValue: '.*' },
          variable('threshold', 'Wait threshold (s)', 'label_values(acquire_chat_wait_time_seconds_bucket{job=~"$job"}, le)', false)
          + {
            description: 'Service-level wait threshold: the bounds of the wait buckets the exporter exposes (`buckets.wait_time`), so custom buckets appear here too.',
            // The finite bounds, "60.0" (Prometheus 3) shown as "60".
            regex: '/^([0-9]+(?:\\.[0-9]*[1-9])?)(?:\\.0+)?$/',
            sort: 3,
            current: { selected: true, text: p.num(c.slo.thresholdSeconds), value: p.num(c.slo.thresholdSeconds) },
          },
        ],
      },
    },
  },
}
