"""swell's Pulumi program for OVHcloud Public Cloud (OpenStack): config, components, policy pack, preview.

`pulumi up` runs `stacks/__main__.py`; `swell preview` and the tests run the same program offline under
Pulumi's mocks (`stacks/engine.py`).
"""
