"""The program `pulumi up` runs (Pulumi.yaml: `main: stacks/`); everything lives in stacks.program."""

from stacks.program import main

main()
