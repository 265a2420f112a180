"""Adapters: the only modules that import clients and SDKs (Prometheus, Pulumi, Kubernetes, SQLite)."""
