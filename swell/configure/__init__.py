"""Host configuration: inventory from the stack outputs, and site.yml run through ansible-runner.

`outputs` reads and validates `pulumi stack output --json`; `inventory` turns it into an Ansible
inventory grouped by tier; `progress` folds ansible-runner events into per-host state (pure);
`runner` is the adapter around ansible-runner; `command` wires them for `swell configure`.
"""
