// PromQL building blocks shared by the rules, the alerts and the dashboard.
local units = [['w', 604800], ['d', 86400], ['h', 3600], ['m', 60], ['s', 1]];
local unitSeconds = { [u[0]]: u[1] for u in units };

{
  // A Prometheus duration ('1w', '90s', '1h30m') in seconds.
  seconds(d)::
    local step(state, ch) =
      if std.member('0123456789', ch) then state { num: state.num * 10 + std.parseInt(ch) }
      else (
        assert std.objectHas(unitSeconds, ch) : 'duration %s: unit %s is not one of w, d, h, m, s' % [d, ch];
        state { total: state.total + state.num * unitSeconds[ch], num: 0 }
      );
    local r = std.foldl(step, std.stringChars(d), { total: 0, num: 0 });
    assert r.num == 0 && r.total > 0 : 'duration %s: not a Prometheus duration' % d;
    r.total,

  // Seconds as the shortest Prometheus duration ('6d23h').
  duration(s)::
    local go(rest, us) =
      if us == [] then ''
      else
        local n = std.floor(rest / us[0][1]);
        (if n > 0 then '%d%s' % [n, us[0][0]] else '') + go(rest - n * us[0][1], us[1:]);
    assert s > 0 && s == std.floor(s) : 'a duration of %s s' % s;
    go(s, units),

  // A duration as written in config, normalised ('60m' -> '1h').
  normal(d):: self.duration(self.seconds(d)),

  // A number as the shortest text, to six decimals (60, 0.25, 0.5 for 2.5 x 0.2).
  num(x)::
    local strip(s) =
      if std.endsWith(s, '0') then strip(std.substr(s, 0, std.length(s) - 1))
      else if std.endsWith(s, '.') then std.substr(s, 0, std.length(s) - 1)
      else s;
    if x == std.floor(x) then '%d' % x else strip('%.6f' % x),

  // A percentage for texts: 0.8 -> "80 %".
  percent(x):: '%s %%' % self.num(std.floor(x * 1000 + 0.5) / 10),

  // `{selector, matchers...}`.
  sel(c, matchers=[])::
    '{' + std.join(',', std.filter(function(m) m != '', [c.selector] + matchers)) + '}',

  // The group labels plus `extra`, for `by (...)` and `on (...)`.
  by(c, extra=[]):: std.join(', ', c.groupLabels + extra),

  // The replica labels, for `without (...)`.
  replicas(c):: std.join(', ', c.replicaLabels),

  // The level of a recording rule's name: the labels it keeps ('job_department').
  level(c, extra=[]):: std.join('_', c.groupLabels + extra),

  // The bucket matcher of a bound: `le=~"60(\\.0)?"` holds on Prometheus 2 (le="60") and 3
  // (le="60.0").
  le(seconds):: 'le=~"%s(\\\\.0)?"' % std.strReplace(self.num(seconds), '.', '\\\\.'),

  // `rate(metric{...}[w])` of a family that every replica exposes alike: de-duplicated with
  // `max without (replicas)`, then summed by the group labels and `extra`.
  derived(c, fn, metric, window, extra=[], matchers=[])::
    'sum by (%s) (max without (%s) (%s(%s%s[%s])))'
    % [self.by(c, extra), self.replicas(c), fn, metric, self.sel(c, matchers), window],

  // The same for a per-replica family: summed over replicas.
  perReplica(c, fn, metric, window, extra=[], matchers=[])::
    'sum by (%s) (%s(%s%s[%s]))' % [self.by(c, extra), fn, metric, self.sel(c, matchers), window],

  // A gauge every replica exposes alike, de-duplicated, then aggregated with `agg`.
  derivedGauge(c, agg, metric, extra=[], matchers=[])::
    '%s by (%s) (max without (%s) (%s%s))'
    % [agg, self.by(c, extra), self.replicas(c), metric, self.sel(c, matchers)],

  // Closed chats (answered, in the wait histogram, or unanswered) per group and department over
  // `window`, with `fn` rate or increase. The two families carry different labels (the
  // histogram also has agent_role), so `or` keeps every series of both and the sum adds them.
  closed(c, fn, window, extra=['department'])::
    'sum by (%s) (\n  max without (%s) (%s(acquire_chat_wait_time_seconds_count%s[%s]))\n  or\n  max without (%s) (%s(acquire_chats_unanswered_total%s[%s]))\n)'
    % [self.by(c, extra), self.replicas(c), fn, self.sel(c), window, self.replicas(c), fn, self.sel(c), window],

  // The staffing target label of a threshold and objective: "80%/60s".
  target(objective, seconds):: '%s%%/%ss' % [self.num(std.floor(objective * 1000 + 0.5) / 10), self.num(seconds)],

  // An alert's runbook link.
  runbook(c, alert):: '%s#%s' % [c.runbookURL, std.asciiLower(alert)],

  // A multi-line expression placed at column n of a text block: every line but the first
  // indented by n spaces.
  nest(text, n)::
    local lines = std.split(text, '\n');
    std.join('\n', [lines[0]] + [if l == '' then l else std.repeat(' ', n) + l for l in lines[1:]]),
}
