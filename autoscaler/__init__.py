"""The surge-aware autoscaler: a pure decision core (`autoscaler.core`) and the trace simulator
that measures it against the baselines SREs use today (`autoscaler.sim`)."""
