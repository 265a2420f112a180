"""swell's CrossGuard policy pack: the checks (checks.py) and the pack's entry point (__main__.py)."""
