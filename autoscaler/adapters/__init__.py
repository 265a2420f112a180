"""Adapters: the only code that imports clients and SDKs, each implementing a port of `autoscaler.ports`."""
