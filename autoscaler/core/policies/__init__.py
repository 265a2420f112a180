"""The scaling policies: `swell` and the baselines it is measured against, one module each."""
