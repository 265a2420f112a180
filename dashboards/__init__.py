"""Monitoring as code: Prometheus recording rules, alerts and the Grafana dashboard, from one place."""
