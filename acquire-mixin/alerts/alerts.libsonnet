// Alerts. Every alert carries `severity` (`critical` pages, `warning` is a ticket or a channel
// message, `info` is for the dashboard), a routing category (`alertLabels`: `support` for the
// support team, `exporter` for whoever runs the exporter), the group labels (`job`) and the
// annotations `summary`, `description` and `runbook_url`; docs/runbook.md has one section per
// alert, under its name.
local p = import '../lib/promql.libsonnet';

{
  prometheusAlerts+:: {
    local c = $._config,
    local n = (import '../lib/names.libsonnet')(c),
    local by = p.by(c),
    local byDept = p.by(c, ['department']),
    local dept = ['department'],
    local r = p.replicas(c),
    local sel(m=[]) = p.sel(c, m),
    local T = p.num(c.slo.thresholdSeconds),
    local objective = p.percent(c.slo.objective),

    local alert(category, name, severity, expr, summary, description, forDuration='') =
      {
        alert: name,
        expr: expr,
      }
      + (if forDuration != '' then { 'for': p.normal(forDuration) } else {})
      + {
        labels: { severity: severity } + c.alertLabels[category],
        annotations: {
          summary: summary,
          description: description,
          runbook_url: p.runbook(c, name),
        },
      },

    local burn(b, name, what) =
      local limit = b.burnRate * (1 - c.slo.objective);
      assert limit < 1 : '%s: a burn rate of %s with an objective of %s needs more than 100 %% of the chats to fail: it could never fire' % [name, b.burnRate, c.slo.objective];
      alert(
        'support',
        name,
        b.severity,
        |||
          %s > %s
          and
          %s > %s
          and
          %s * %d >= %d
        ||| % [
          n.failed(b.longWindow),
          p.num(limit),
          n.failed(b.shortWindow),
          p.num(limit),
          n.closed(b.longWindow),
          p.seconds(b.longWindow),
          c.slo.minChats,
        ],
        'Department {{ $labels.department }} of {{ $labels.job }} %s its service level' % what,
        '{{ $value | humanizePercentage }} of the chats closed in department {{ $labels.department }} of {{ $labels.job }} in the last %s were not answered within %s s (late or unanswered), and so were those of the last %s: the error budget of the objective "%s answered within %s s" burns %s times too fast (the alert fires above %s).'
        % [p.normal(b.longWindow), T, p.normal(b.shortWindow), objective, T, p.num(b.burnRate), p.percent(limit)],
        b['for'],
      ),

    // The chats closed in `window` per group and department, `offset` ago.
    local closedIncrease(window, offset='') =
      local o = if offset == '' then '' else ' offset %s' % offset;
      'sum by (%s) (\n  max without (%s) (increase(acquire_chat_wait_time_seconds_count%s[%s]%s))\n  or\n  max without (%s) (increase(acquire_chats_unanswered_total%s[%s]%s))\n)'
      % [byDept, r, sel(), window, o, r, sel(), window, o],

    local nc = c.noChatsClosed,
    local reference = p.seconds(nc.reference),
    local guard = if nc.dstGuard == '' then 0 else p.seconds(nc.dstGuard),
    local references = [reference] + (if guard > 0 then [reference - guard, reference + guard] else []),

    local w = c.webhooks,
    // Deliveries refused before their event type was known, authentication failures aside (they
    // are refused before the body is read, as event "unknown" too).
    local unreadable = '(\n  %s\n  -\n  %s\n)' % [
      p.perReplica(c, 'increase', 'acquire_webhooks_received_total', w.window, [], ['event="unknown"', 'outcome="rejected"']),
      p.perReplica(c, 'increase', 'acquire_webhook_rejections_total', w.window, [], ['reason="unauthorized"']),
    ],
    local closes = p.perReplica(c, 'increase', 'acquire_webhooks_received_total', w.window, [], ['event="chat_close"']),
    local e = c.exporter,
    local ex = c.expiring,

    groups+: [
      {
        name: 'acquire-service-level',
        rules: [
          burn(c.slo.fastBurn, 'AcquireServiceLevelFastBurn', 'quickly misses') + { help:: |||
              Multi-window, multi-burn-rate alerts on the wait SLO (the SRE workbook): the share of
              closed chats not answered within the threshold (late, or never answered) above burn rate x
              the error budget over a long window and a short one. The long window says the budget
              really burns; the short one that it still does, so the alert resolves soon after the cause.
              The minimum volume keeps one late chat at a quiet hour from paging. The wait is known only
              when a chat closes: for the queue as it is now, see AcquireOldestWaitingChatTooOld.
            |||, },
          burn(c.slo.slowBurn, 'AcquireServiceLevelSlowBurn', 'steadily misses') + { help:: |||
              The slower burn over 6 hours: a ticket, not a page.
            |||, },
          alert(
            'support',
            'AcquireChatAbandonmentHigh',
            'warning',
            |||
              %s > %s
              and
              %s * %d >= %d
            ||| % [
              n.unansweredShare(c.abandonment.window),
              p.num(c.abandonment.maxShare),
              n.closed(c.abandonment.window),
              p.seconds(c.abandonment.window),
              c.abandonment.minChats,
            ],
            'Visitors of department {{ $labels.department }} of {{ $labels.job }} leave unanswered',
            '{{ $value | humanizePercentage }} of the chats closed in department {{ $labels.department }} of {{ $labels.job }} in the last %s were never answered (the alert fires above %s).'
            % [p.normal(c.abandonment.window), p.percent(c.abandonment.maxShare)],
            c.abandonment['for'],
          ) + { help:: |||
              The share of closed chats nobody answered: visitors who left, or chats closed unanswered.
              It works with the "On Chat Close" webhook alone.
            |||, },
          alert(
            'support',
            'AcquireNoChatsClosed',
            'warning',
            '%s == 0\n' % closedIncrease(nc.window)
            + std.join('', [
              'and on (%s)\n%s >= %d\n' % [byDept, closedIncrease(nc.window, p.duration(o)), nc.minChats]
              for o in references
            ]),
            'No chat of department {{ $labels.department }} of {{ $labels.job }} closed in the last %s' % p.normal(nc.window),
            'Department {{ $labels.department }} of {{ $labels.job }} closed no chat in the last %s, though it closed at least %d in the same %s %s ago%s: the webhooks may have stopped arriving.'
            % [
              p.normal(nc.window),
              nc.minChats,
              p.normal(nc.window),
              p.normal(nc.reference),
              if guard > 0 then ' (and %s before and after that)' % p.duration(guard) else '',
            ],
            nc['for'],
          ) + { help:: |||
              No chat of a department closed (answered or not), while the same window a reference ago
              (a week: it carries opening hours and closed weekends) had traffic, and so did the windows
              an hour before and after it: the week-ago offset is in UTC while opening hours are local, so
              for a week after a daylight-saving change the first and last opening hour would fire daily
              without that guard. It cannot fire in the first week of data, and fires on a public holiday
              (silence it).
            |||, },
        ],
      },
      {
        name: 'acquire-live-queue',
        rules: [
          alert(
            'support',
            'AcquireOldestWaitingChatTooOld',
            'warning',
            '%s > %s\n' % [p.derivedGauge(c, 'max', 'acquire_chat_oldest_wait_seconds', dept), p.num(c.oldestWait.thresholdSeconds)],
            'A chat in department {{ $labels.department }} of {{ $labels.job }} has waited more than %s' % p.duration(c.oldestWait.thresholdSeconds),
            'The oldest chat waiting in department {{ $labels.department }} of {{ $labels.job }} has waited {{ $value | humanizeDuration }} without being accepted (the alert fires above %s).'
            % p.duration(c.oldestWait.thresholdSeconds),
            c.oldestWait['for'],
          ) + { help:: |||
              A chat has waited unaccepted for longer than the threshold, for `for` more. The gauge is
              exact to the second (not bucketed): any threshold works. One chat is enough, hence a
              warning. Needs the "On Chat Start" and "On Chat Accept" webhooks.
            |||, },
          alert(
            'support',
            'AcquireChatsExpiring',
            'info',
            |||
              %s > 0
              or
              sum by (%s) (
                max without (%s) (
                  (
                    acquire_chats_expired_total%s
                    unless
                    acquire_chats_expired_total%s offset %s
                  )
                  and
                  (
                    count_over_time(acquire_chats_expired_total%s[%s]) + 1
                    < on (%s) group_left ()
                    count_over_time(process_start_time_seconds%s[%s])
                  )
                )
              ) > 0
            ||| % [
              p.derived(c, 'increase', 'acquire_chats_expired_total', p.normal(ex.window), dept),
              byDept,
              r,
              sel(),
              sel(),
              p.normal(ex.window),
              sel(),
              p.normal(ex.window),
              p.by(c, c.replicaLabels),
              sel(),
              p.normal(ex.window),
            ],
            'Waiting chats of department {{ $labels.department }} of {{ $labels.job }} expire',
            'Chats of department {{ $labels.department }} of {{ $labels.job }} that left the live queue in the last %s without an accept or a close event: {{ $value | humanize }}.' % p.normal(ex.window),
          ) + { help:: |||
              Waiting chats dropped after `queue.expire_after` with no accept or close: lost webhooks,
              rarely a chat left open for hours. An increase within the window; or a department's first
              expiry ever, whose counter appears already at 1 and so has no increase: a series absent a
              window ago that appeared at least two scrapes after its process was first scraped in the
              window. A new instance or a restart replays past expiries from the store: there the
              counter appears with the process (or existed before it), and after an hour without
              scrapes both look new at once, so none of them fires.
            |||, },
        ],
      },
      {
        name: 'acquire-staffing',
        rules: [
          alert(
            'support',
            'AcquireAgentsBelowRequired',
            'warning',
            '%s{target="%s"}\n> on (%s) group_left ()\n%s\n'
            % [n.agentsRequired, p.target(c.slo.objective, c.slo.thresholdSeconds), byDept, n.agentsSeen],
            'Department {{ $labels.department }} of {{ $labels.job }} has fewer agents than it needs',
            'Department {{ $labels.department }} of {{ $labels.job }} needs {{ $value | humanize }} agents for {{ $labels.target }} at the load of the staffing window, and fewer were seen taking chats.',
            c.staffing['for'],
          ) + { help:: |||
              Fewer agents seen (distinct agents who accepted or closed a chat in the staffing window)
              than the staffing model requires for the SLO's target (Erlang A when the exporter has a
              patience estimate, else Erlang C). The target label must be one of `staffing.targets`.
            |||, },
          alert(
            'support',
            'AcquireAgentsBelowForecast',
            'warning',
            // A department nobody works in yet (before opening) has no agents-seen series: it
            // counts as 0.
            local forecast = '%s{target="%s"}' % [n.agentsForecast, p.target(c.slo.objective, c.slo.thresholdSeconds)];
            '%s\n> on (%s) group_left ()\n(\n  %s\n  or on (%s)\n  0 * max by (%s) (%s)\n)\n'
            % [forecast, byDept, n.agentsSeen, byDept, byDept, forecast],
            'Department {{ $labels.department }} of {{ $labels.job }} has fewer agents than the coming hour needs',
            'The same hour of the previous weeks says department {{ $labels.department }} of {{ $labels.job }} needs {{ $value | humanize }} agents for {{ $labels.target }} in the coming hour, and fewer are taking chats now.',
            c.staffing.forecastFor,
          ) + { help:: |||
              Fewer agents seen now than the forecast for the coming hour requires (agents required
              at the same hour of the previous weeks, from the exporter's hour-of-week history): the
              lead time to call agents in before the demand arrives. Silent without weeks of
              history. The target label must be one of `staffing.targets`.
            |||, },
        ],
      },
      {
        name: 'acquire-webhooks',
        rules: [
          // Per event type: message webhooks (many per chat) must not dilute the refused closes.
          alert(
            'exporter',
            'AcquireWebhookRejectionsHigh',
            'warning',
            |||
              %s
              /
              %s
              > %s
              and
              %s >= %d
            ||| % [
              p.perReplica(c, 'rate', 'acquire_webhooks_received_total', w.window, ['event'], ['event!="unknown"', 'outcome="rejected"']),
              p.perReplica(c, 'rate', 'acquire_webhooks_received_total', w.window, ['event'], ['event!="unknown"']),
              p.num(w.maxRejectedShare),
              p.perReplica(c, 'increase', 'acquire_webhooks_received_total', w.window, ['event'], ['event!="unknown"', 'outcome="rejected"']),
              w.minRejected,
            ],
            'Webhook deliveries of {{ $labels.event }} to {{ $labels.job }} are refused',
            '{{ $value | humanizePercentage }} of the %s deliveries to {{ $labels.job }} in the last %s were refused (the alert fires above %s).'
            % ['{{ $labels.event }}', p.normal(w.window), p.percent(w.maxRejectedShare)],
            w.rejectedFor,
          ) + { help:: |||
              Refused deliveries per event type: message webhooks, many per chat, must not dilute the
              refused closes. Bodies whose event type is unknown have their own alert below.
            |||, },
          // Bodies refused before their event type is known (not JSON, too large, not a
          // supported media type), authentication failures aside. Each chat sends exactly one
          // close, so they are measured against the closes.
          alert(
            'exporter',
            'AcquireWebhookBodiesUnreadable',
            'warning',
            |||
              %s
              /
              (
                %s
                +
                %s
              )
              > %s
              and
              %s
              >= %d
            ||| % [unreadable, p.nest(unreadable, 2), closes, p.num(w.maxRejectedShare), unreadable, w.minRejected],
            'Webhook bodies sent to {{ $labels.job }} cannot be read',
            '{{ $value | humanizePercentage }} of the deliveries to {{ $labels.job }} in the last %s, counted against the close deliveries, were refused before their event type was known: not JSON, too large, or not a supported media type (the alert fires above %s).'
            % [p.normal(w.window), p.percent(w.maxRejectedShare)],
            w.rejectedFor,
          ) + { help:: |||
              Bodies refused before their event type is known (not JSON, too large, not a supported media
              type), authentication failures aside: those are refused before the body is read and are
              counted as event "unknown" too. Each chat sends exactly one close, so unreadable bodies are
              measured against the close deliveries, whatever else is enabled.
            |||, },
          alert(
            'exporter',
            'AcquireWebhookAuthFailures',
            'warning',
            '%s >= %d\n' % [p.perReplica(c, 'increase', 'acquire_webhook_rejections_total', w.window, [], ['reason="unauthorized"']), w.minAuthFailures],
            'Webhook deliveries to {{ $labels.job }} fail authentication',
            '{{ $value | humanize }} webhook deliveries to {{ $labels.job }} in the last %s had a missing or wrong token or signature.' % p.normal(w.window),
            '1m',
          ) + { help:: |||
              A token or secret that no longer matches the one in Acquire's settings refuses every event,
              which at business-hours volume passes the minimum quickly; a stray request from a scanner
              does not.
            |||, },
          // Starts arrive, chats are answered (their closes carry a wait), yet no accept arrives:
          // the live queue counts every answered chat as waiting until it closes.
          alert(
            'exporter',
            'AcquireAcceptEventsMissing',
            'warning',
            |||
              %s >= %d
              and on (%s)
              %s < 1
              and on (%s)
              %s >= 1
            ||| % [
              p.perReplica(c, 'increase', 'acquire_webhooks_received_total', w.acceptsWindow, [], ['event="chat_start"', 'outcome="observed"']),
              w.minStartsWithoutAccepts,
              by,
              p.perReplica(c, 'increase', 'acquire_webhooks_received_total', w.acceptsWindow, [], ['event="chat_accept"', 'outcome=~"observed|duplicate"']),
              by,
              p.derived(c, 'increase', 'acquire_chat_wait_time_seconds_count', w.acceptsWindow),
            ],
            'Chats start at {{ $labels.job }}, but no accept event arrives',
            '{{ $value | humanize }} chats started at {{ $labels.job }} in the last %s and answered chats closed, but no "On Chat Accept" webhook was received: the live queue counts every answered chat as waiting until it closes.'
            % p.normal(w.acceptsWindow),
            w.acceptsFor,
          ) + { help:: |||
              Starts arrive and answered chats close, yet no accept arrives: the "On Chat Accept" webhook
              is off or refused, and the live queue counts every answered chat as waiting until it
              closes.
            |||, },
        ],
      },
      {
        name: 'acquire-exporter',
        rules: [
          // No target of the job answers scrapes, or the job has none at all (gone from service
          // discovery). Without the exporter the webhooks fail and every other alert is blind.
          alert(
            'exporter',
            'AcquireExporterDown',
            'critical',
            'sum by (%s) (up%s) == 0\nor\nabsent(up%s)\n' % [by, sel(), sel()],
            'No acquire-exporter of {{ $labels.job }} can be scraped',
            'Prometheus has not scraped any target of {{ $labels.job }} successfully for %s: the chat metrics are stale and webhook deliveries are probably failing.' % p.normal(e.downFor),
            e.downFor,
          ) + { help:: |||
              No target of the job answers scrapes, or the job has none at all (gone from service
              discovery). Without the exporter the webhooks fail and every other alert is blind. `for`
              stays above a restart.
            |||, },
          alert(
            'exporter',
            'AcquireExporterReplicaDown',
            'warning',
            'up%s == 0\nand on (%s)\nsum by (%s) (up%s) > 0\n' % [sel(), by, by, sel()],
            'A replica of the acquire-exporter of {{ $labels.job }} cannot be scraped',
            'Prometheus has not scraped {{ $labels.instance }} of {{ $labels.job }} successfully for %s; other replicas answer.' % p.normal(e.replicaDownFor),
            e.replicaDownFor,
          ) + { help:: |||
              One replica cannot be scraped while others can.
            |||, },
          alert(
            'exporter',
            'AcquireExporterStorageFailing',
            'critical',
            '%s > 0\n' % p.perReplica(c, 'increase', 'acquire_webhooks_received_total', e.storageWindow, c.replicaLabels, ['outcome="error"']),
            'The acquire-exporter {{ $labels.instance }} of {{ $labels.job }} cannot store webhooks',
            '{{ $value | humanize }} webhook deliveries to {{ $labels.instance }} in the last %s could not be committed to the store and were answered 503: the sender retries, and events are lost once it gives up.' % p.normal(e.storageWindow),
            e.storageFor,
          ) + { help:: |||
              Deliveries the store could not commit: answered 503, and `/-/ready` answers 503 while it
              lasts. A full disk or an unwritable database otherwise drops every event unseen: `up`
              stays 1.
            |||, },
          alert(
            'exporter',
            'AcquireExporterSnapshotsFailing',
            'warning',
            'increase(acquire_exporter_storage_snapshot_failures_total%s[%s]) > 0\nunless\nincrease(acquire_exporter_storage_snapshots_total%s[%s]) > 0\n' % [sel(), p.normal(e.snapshotsWindow), sel(), p.normal(e.snapshotsWindow)],
            'The acquire-exporter {{ $labels.instance }} of {{ $labels.job }} cannot write snapshots',
            'The acquire-exporter {{ $labels.instance }} of {{ $labels.job }} failed to write a snapshot of its state {{ $value | humanize }} times in the last %s and wrote none: raw events are not pruned, so the store grows, and a restart replays every event since the last snapshot.' % p.normal(e.snapshotsWindow),
          ) + { help:: |||
              Snapshots fail and none succeeded within the window: webhooks are still stored and
              counted, but retention waits for a snapshot, so the store grows and starts get slower.
            |||, },
          alert(
            'exporter',
            'AcquireExporterRestarting',
            'warning',
            'changes(process_start_time_seconds%s[%s]) > %d\n' % [sel(), p.normal(e.restartsWindow), e.maxRestarts],
            'The acquire-exporter {{ $labels.instance }} of {{ $labels.job }} keeps restarting',
            'The acquire-exporter {{ $labels.instance }} of {{ $labels.job }} restarted {{ $value }} times in the last %s (the alert fires above %d).' % [p.normal(e.restartsWindow), e.maxRestarts],
          ) + { help:: |||
              The process start time changed more often than a deployment explains: a crash loop.
            |||, },
          alert(
            'exporter',
            'AcquireExporterFdsNearLimit',
            'warning',
            'process_open_fds%s / process_max_fds%s > %s\n' % [sel(), sel(), p.num(e.maxFdsShare)],
            'The acquire-exporter {{ $labels.instance }} of {{ $labels.job }} is running out of file descriptors',
            'The acquire-exporter {{ $labels.instance }} of {{ $labels.job }} uses {{ $value | humanizePercentage }} of its file descriptors (the alert fires above %s): past the limit it refuses connections.' % p.percent(e.maxFdsShare),
            e.fdsFor,
          ) + { help:: |||
              Open file descriptors near the process limit: past it, connections are refused.
            |||, },
          alert(
            'exporter',
            'AcquireLabelOverflow',
            'warning',
            '%s > 0\n' % p.derived(c, 'increase', 'acquire_label_overflow_total', p.normal(e.labelOverflowWindow), ['label']),
            'Values of {{ $labels.label }} at {{ $labels.job }} are recorded as "other"',
            '{{ $value | humanize }} events at {{ $labels.job }} in the last %s had a {{ $labels.label }} past the label cap (or longer than 128 bytes) and were recorded as "other".' % p.normal(e.labelOverflowWindow),
          ) + { help:: |||
              Events whose department or agent role was recorded as "other" because the label reached
              its cap (`limits` in the exporter's config) or was longer than 128 bytes.
            |||, },
          alert(
            'exporter',
            'AcquireExporterScrapeSlow',
            'warning',
            'avg_over_time(scrape_duration_seconds%s[%s]) > %s\n' % [sel(), p.normal(e.scrapeFor), p.num(e.maxScrapeSeconds)],
            'Scrapes of {{ $labels.instance }} of {{ $labels.job }} are slow',
            'Scraping {{ $labels.instance }} of {{ $labels.job }} took {{ $value | humanizeDuration }} on average over the last %s (the alert fires above %s s); past the scrape timeout the scrape fails.' % [p.normal(e.scrapeFor), p.num(e.maxScrapeSeconds)],
            e.scrapeFor,
          ) + { help:: |||
              Scrapes that take long (Prometheus's own scrape_duration_seconds): past the scrape
              timeout the scrape fails and the target is down.
            |||, },
          alert(
            'exporter',
            'AcquireExporterScrapeNearSampleLimit',
            'warning',
            'scrape_samples_scraped%s > %d\n' % [sel(), e.sampleLimit * e.maxSamplesShare],
            'The scrape of {{ $labels.instance }} of {{ $labels.job }} nears its sample limit',
            'A scrape of {{ $labels.instance }} of {{ $labels.job }} has {{ $value }} samples, more than %s of the sample limit of %d: past the limit Prometheus drops the whole scrape.' % [p.percent(e.maxSamplesShare), e.sampleLimit],
            e.samplesFor,
          ) + { help:: |||
              A scrape near the `sample_limit` of the scrape config: past it, Prometheus drops the whole
              scrape. The limit here must be the one in the scrape config.
            |||, },
        ],
      },
    ],
  },
}
