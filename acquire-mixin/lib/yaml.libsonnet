// A Prometheus rule file as people write it: keys in the usual order (alert or record, expr,
// for, labels, annotations), every expression as a `|` block, and each rule's hidden `help`
// text as a comment above it. std.manifestYamlDoc sorts keys and cannot write comments.
local quote(s) = std.escapeStringJson(s);
local lines(text) =
  local all = std.split(text, '\n');
  if std.length(all) > 0 && all[std.length(all) - 1] == '' then all[:std.length(all) - 1] else all;
local comment(text, ind) =
  std.join('', [ind + (if l == '' then '#' else '# ' + l) + '\n' for l in lines(text)]);
local block(key, text, ind) =
  ind + key + ': |\n' + std.join('', [(if l == '' then '' else ind + '  ' + l) + '\n' for l in lines(text)]);
local map(key, m, ind, order=[]) =
  local keys = order + std.filter(function(k) !std.member(order, k), std.objectFields(m));
  ind + key + ':\n' + std.join('', [ind + '  ' + k + ': ' + quote(m[k]) + '\n' for k in keys if std.objectHas(m, k)]);

local rule(r, ind) =
  (if std.objectHasAll(r, 'help') then comment(r.help, ind) else '')
  + (if std.objectHas(r, 'alert') then ind + '- alert: ' + r.alert + '\n' else ind + '- record: ' + r.record + '\n')
  + block('expr', r.expr, ind + '  ')
  + (if std.objectHas(r, 'for') then ind + '  for: ' + r['for'] + '\n' else '')
  + (if std.objectHas(r, 'labels') then map('labels', r.labels, ind + '  ', ['severity']) else '')
  + (if std.objectHas(r, 'annotations') then map('annotations', r.annotations, ind + '  ', ['summary', 'description', 'runbook_url']) else '');

local group(g) =
  (if std.objectHasAll(g, 'help') then '\n' + comment(g.help, '  ') else '')
  + '  - name: ' + g.name + '\n'
  + (if std.objectHas(g, 'interval') then '    interval: ' + g.interval + '\n' else '')
  + '    rules:\n'
  + std.join('', [rule(r, '      ') for r in g.rules]);

{
  // The rule file of `doc` ({groups: [...]}) after a `header` comment.
  ruleFile(doc, header):: comment(header, '') + 'groups:\n' + std.join('', [group(g) for g in doc.groups]),
}
