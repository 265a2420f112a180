"""The autoscaler: a pure decision core, and the adapters and service that run it against real systems."""
