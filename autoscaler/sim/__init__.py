"""Trace replay: demand traces in and out (`trace`), generated shapes (`generate`), the
simulator that runs every policy under identical conditions (`engine`), the elasticity metrics
(`metrics`), plots (`plot`) and the benchmark set (`bench`)."""
