"""Python the workflows, operators and developers run, grouped by who runs it:

- `tools.delivery`: the workflows' delivery steps (plan comment and bundle, stack outputs,
  package, release driver, smoke checks, drift, the GitHub API);
- `tools.operations`: what an operator runs against a deployed environment (preflight, load
  tests and drills, the failover workbook link);
- `tools.development`: developers' aids (certificates, flake hunt, checkov, the diagram).

`tools.cli` (one-line errors) and `tools.process_groups` serve all three.
"""
