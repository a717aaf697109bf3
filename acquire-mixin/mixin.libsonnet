// acquire-mixin: the Prometheus rules, alerts and Grafana dashboard of acquire-exporter, all
// generated from one `_config` (config.libsonnet). Import it as a library and override
// `_config` to change the job selector, the thresholds or the runbook's address; the README's
// "Alerts" section shows how.
(import 'config.libsonnet')
+ (import 'rules/rules.libsonnet')
+ (import 'alerts/alerts.libsonnet')
+ (import 'dashboards/dashboards.libsonnet')
