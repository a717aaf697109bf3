// Grafana panel building blocks (the JSON Grafana 12 writes), without grafonnet.
{
  ds:: { type: 'prometheus', uid: '${datasource}' },

  // A query. Range by default; `instant` for values over the dashboard's whole range.
  target(refId, expr, legend='__auto', instant=false, format='', exemplar=false, hide=false)::
    { datasource: $.ds, refId: refId, expr: expr, legendFormat: legend, range: !instant, instant: instant }
    + (if format != '' then { format: format } else {})
    + (if exemplar then { exemplar: true } else {})
    + (if hide then { hide: true } else {}),

  // A dashed line at a constant (a target, a threshold): `expr` has no series selector.
  line(refId, expr, legend):: $.target(refId, expr, legend),
  // Style for those lines, by refId.
  dashed(refIds):: [
    {
      matcher: { id: 'byFrameRefID', options: r },
      properties: [
        { id: 'custom.lineStyle', value: { fill: 'dash', dash: [10, 10] } },
        { id: 'custom.fillOpacity', value: 0 },
        { id: 'color', value: { mode: 'fixed', fixedColor: 'red' } },
      ],
    }
    for r in refIds
  ],

  local base(type, title, description, unit, targets, link) = {
    type: type,
    title: title,
    description: description,
    datasource: $.ds,
    targets: targets,
    fieldConfig: { defaults: { unit: unit }, overrides: [] },
    links: [{ title: link.title, url: link.url, targetBlank: true }],
  },

  stat(title, description, unit, targets, link, steps=[{ color: 'green', value: null }], mappings=[])::
    base('stat', title, description, unit, targets, link) + {
      fieldConfig+: {
        defaults+: {
          color: { mode: 'thresholds' },
          thresholds: { mode: 'absolute', steps: steps },
        } + (if mappings != [] then { mappings: mappings } else {}),
      },
      options: {
        reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
        colorMode: 'value',
        graphMode: 'none',
        justifyMode: 'auto',
        textMode: 'auto',
        orientation: 'auto',
      },
    },

  timeseries(title, description, unit, targets, link, lines=[])::
    base('timeseries', title, description, unit, targets, link) + {
      fieldConfig+: {
        defaults+: {
          custom: { drawStyle: 'line', lineWidth: 1, fillOpacity: 10, showPoints: 'never', spanNulls: false },
          color: { mode: 'palette-classic' },
        },
        overrides: $.dashed(lines),
      },
      options: {
        legend: { displayMode: 'list', placement: 'bottom', showLegend: true },
        tooltip: { mode: 'multi', sort: 'desc' },
      },
    },

  heatmap(title, description, targets, link, minInterval)::
    base('heatmap', title, description, 'short', targets, link) + {
      interval: minInterval,
      fieldConfig+: {
        defaults+: {
          custom: {
            scaleDistribution: { type: 'linear' },
            hideFrom: { legend: false, tooltip: false, viz: false },
          },
        },
      },
      options: {
        calculate: false,
        cellGap: 1,
        color: { mode: 'scheme', scheme: 'Oranges', fill: 'dark-orange', scale: 'exponential', exponent: 0.5, steps: 64, reverse: false },
        exemplars: { color: 'rgba(255,0,255,0.7)' },
        filterValues: { le: 1e-09 },
        legend: { show: true },
        rowsFrame: { layout: 'auto', value: 'Chats' },
        tooltip: { mode: 'single', yHistogram: true, showColorScale: false },
        yAxis: { axisPlacement: 'left', unit: 's', reverse: false },
        cellValues: { unit: 'short' },
      },
    },

  table(title, description, targets, link, columns, sortBy)::
    base('table', title, description, 'short', targets, link) + {
      transformations: [
        { id: 'merge', options: {} },
        { id: 'organize', options: { excludeByName: { Time: true }, renameByName: { agent_role: 'Agent role', alertname: 'Alert', department: 'Department', severity: 'Severity', category: 'Category' } } },
      ],
      fieldConfig+: {
        defaults+: { custom: { align: 'auto', cellOptions: { type: 'auto' } } },
        overrides: [
          {
            matcher: { id: 'byName', options: col.field },
            properties: [{ id: 'displayName', value: col.name }, { id: 'unit', value: col.unit }]
                        + (if std.objectHas(col, 'decimals') then [{ id: 'decimals', value: col.decimals }] else []),
          }
          for col in columns
        ],
      },
      options: {
        showHeader: true,
        cellHeight: 'sm',
        sortBy: [{ displayName: sortBy, desc: true }],
        footer: { show: false, reducer: ['sum'], fields: '' },
      },
    },

  // Colour thresholds taken from a query of the same panel ("Config from query results"): the
  // query `configRefId` (a constant for the chosen threshold) becomes the first threshold step,
  // so the colours follow the dashboard's variables.
  thresholdFromQuery(configRefId, color):: {
    transformations+: [
      {
        id: 'configFromData',
        options: {
          configRefId: configRefId,
          applyTo: { id: 'byType', options: 'number' },
          mappings: [
            {
              fieldName: configRefId,
              handlerKey: 'threshold1',
              reducerId: 'lastNotNull',
              handlerArguments: { threshold: { color: color } },
            },
          ],
        },
      },
    ],
  },

  row(title):: { type: 'row', title: title, collapsed: false, panels: [] },
}
