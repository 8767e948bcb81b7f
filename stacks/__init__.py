"""CDK for Terraform stacks for the TodoItem API (config model, constructs, policy aspects)."""

from stacks import bindings

bindings.prepare()
