"""`swell plan`: from calibrations and today's peak demand to instances, quota, EUR/month and the
configuration changes for x2, x4, ... (docs/planning.md).

- `inputs`: the command's inputs, checked (calibration files, peaks as numbers, traces or a
  Prometheus range query, factors); every error names its option.
- `model`: the plan itself (instances per tier and factor, through the simulator when a trace is
  given; vCPU/RAM against the stack's quota; prices; the split across regions).
- `edits`: the changes to `Pulumi.<stack>.yaml` and the autoscaler's configuration, as a diff,
  written with `--write` (comments kept: ruamel.yaml).
- `report`: the table, JSON, Markdown and the picture.
- `command`: the `swell plan` command's body (swell/cli.py wires it).
"""
