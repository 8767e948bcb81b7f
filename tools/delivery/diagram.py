"""Mermaid topology diagram of a synthesized stack (cdktf.out/stacks/<stack>/cdk.tf.json).

    python -m tools.delivery.diagram cdktf.out/stacks/*/cdk.tf.json [--out diagram.md | --append FILE]

Nothing is hard-coded about the topology: the nodes are the resources of the kinds below, the
regions come from their `location` (literal or a reference to a resource group), and the edges
come from the `${azurerm_x.y...}` references in the JSON:

- a node that references another node links to it (web app -> Key Vault secret -> Key Vault);
- a "connector" resource links the node in its source attribute to the nodes in its other
  attributes (a Traffic Manager endpoint links its profile to its target, an API Management
  backend links the gateway to its URL, an access policy links the identity to the vault);
- only edges along the request path or towards secrets/monitoring are drawn (an IP allow-rule
  on a web app that references the gateway's IPs is not a call from the web app);
- the client calls every request-path node that nothing else on the request path calls.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tools.cli import CliError, read_json, run_cli, write_atomic

KINDS = {
    "azurerm_linux_web_app": "App Service",
    "azurerm_traffic_manager_profile": "Traffic Manager",
    "azurerm_api_management": "API Management",
    "azurerm_key_vault": "Key Vault",
    "azurerm_application_insights": "Application Insights",
    "azurerm_log_analytics_workspace": "Log Analytics",
}
REQUEST_PATH = {
    "azurerm_api_management",
    "azurerm_traffic_manager_profile",
    "azurerm_linux_web_app",
}
# (from kind, to kind) -> edge label. Only these pairs are drawn.
FLOWS = {
    ("azurerm_api_management", "azurerm_traffic_manager_profile"): "mTLS",
    ("azurerm_api_management", "azurerm_linux_web_app"): "mTLS",
    ("azurerm_traffic_manager_profile", "azurerm_linux_web_app"): "DNS failover",
    ("azurerm_traffic_manager_profile", "azurerm_api_management"): "DNS failover",
    ("azurerm_linux_web_app", "azurerm_key_vault"): "secrets",
    ("azurerm_api_management", "azurerm_key_vault"): "secrets",
    ("azurerm_linux_web_app", "azurerm_application_insights"): "telemetry",
    ("azurerm_api_management", "azurerm_application_insights"): "telemetry",
    ("azurerm_application_insights", "azurerm_log_analytics_workspace"): "logs",
    ("azurerm_linux_web_app", "azurerm_log_analytics_workspace"): "logs",
    ("azurerm_api_management", "azurerm_log_analytics_workspace"): "logs",
    ("azurerm_key_vault", "azurerm_log_analytics_workspace"): "logs",
    ("azurerm_traffic_manager_profile", "azurerm_log_analytics_workspace"): "logs",
}
# Connector resource type prefix -> the attributes naming the source node.
CONNECTOR_SOURCES = {
    "azurerm_traffic_manager_": ("profile_id",),
    "azurerm_api_management_": ("api_management_name", "api_management_id"),
    "azurerm_key_vault_access_policy": ("object_id",),
    "azurerm_role_assignment": ("principal_id",),
    "azurerm_monitor_diagnostic_setting": ("target_resource_id",),
}
# Non-node resources whose references lead on to a node (a secret lives in a vault).
CONTAINERS = {
    "azurerm_key_vault_secret": "key_vault_id",
    "azurerm_key_vault_certificate": "key_vault_id",
    "azurerm_key_vault_key": "key_vault_id",
}
REFERENCE = re.compile(r"\b(azurerm_[a-z0-9_]+)\.([A-Za-z0-9_-]+)")
GLOBAL = "global"


@dataclass
class Node:
    key: str  # "type.name"
    kind: str
    label: str
    regions: list[str]
    id: str = ""  # short Mermaid id, n0, n1, ... in key order


@dataclass
class Topology:
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: dict[tuple[str, str], str] = field(default_factory=dict)  # (from, to) -> label

    def entry_points(self) -> list[Node]:
        called = {to for (frm, to) in self.edges if self.nodes[frm].kind in REQUEST_PATH}
        return [n for n in self.nodes.values() if n.kind in REQUEST_PATH and n.key not in called]


def resources(synth: dict) -> dict[str, tuple[str, dict]]:
    if not isinstance(synth, dict) or not isinstance(synth.get("resource"), dict):
        raise CliError("synthesized stack has no 'resource' section: is it a cdk.tf.json?")
    return {
        f"{rtype}.{name}": (rtype, body)
        for rtype, by_name in synth["resource"].items()
        for name, body in by_name.items()
    }


def references(value, known: dict) -> list[str]:
    """Resource keys referenced by `${...}` expressions anywhere inside `value`."""
    found: list[str] = []
    for text in _strings(value):
        if "${" not in text:
            continue
        for rtype, name in REFERENCE.findall(text):
            key = f"{rtype}.{name}"
            if key in known and key not in found:
                found.append(key)
    return found


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, inner in value.items():
            if key != "//":
                yield from _strings(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _strings(inner)


def build(synth: dict) -> Topology:
    known = resources(synth)
    topology = Topology()
    for key, (rtype, body) in sorted(known.items()):
        if rtype in KINDS:
            topology.nodes[key] = Node(key, rtype, _label(rtype, body, key), _regions(body, known),
                                       f"n{len(topology.nodes)}")
    for key, (rtype, body) in known.items():
        sources = _connector_sources(rtype)
        if rtype in KINDS:
            _link(topology, [key], _node_refs(body, known, topology), known)
        elif sources:
            source_refs = _node_refs({a: body.get(a) for a in sources}, known, topology)
            rest = {a: v for a, v in body.items() if a not in sources}
            _link(topology, source_refs, _node_refs(rest, known, topology), known)
    return topology


def _connector_sources(rtype: str) -> tuple[str, ...]:
    for prefix, attributes in CONNECTOR_SOURCES.items():
        if rtype.startswith(prefix):
            return attributes
    return ()


def _node_refs(value, known: dict, topology: Topology) -> list[str]:
    """Node keys referenced by `value`, following secrets on to their vault."""
    found = []
    for key in references(value, known):
        rtype, body = known[key]
        if key in topology.nodes:
            found.append(key)
        elif rtype in CONTAINERS:
            found += [k for k in references(body.get(CONTAINERS[rtype]), known)
                      if k in topology.nodes]
    return found


def _link(topology: Topology, sources: list[str], targets: list[str], known: dict) -> None:
    for source in sources:
        for target in targets:
            pair = (known[source][0], known[target][0])
            if source != target and pair in FLOWS:
                topology.edges[(source, target)] = FLOWS[pair]


def _label(rtype: str, body: dict, key: str) -> str:
    name = body.get("name")
    if not isinstance(name, str) or "${" in name:
        path = (body.get("//") or {}).get("metadata", {}).get("path", "")
        name = path.split("/", 1)[-1] if path else key.split(".", 1)[1]
    return f"{KINDS[rtype]}<br/>{name}"


def _regions(body: dict, known: dict) -> list[str]:
    primary = _location(body.get("location"), known)
    extra = [_location(block.get("location"), known) for block in _blocks(body, "additional_location")]
    regions = [r for r in [primary, *extra] if r]
    return regions or [GLOBAL]


def _blocks(body: dict, name: str) -> list[dict]:
    value = body.get(name) or []
    return [value] if isinstance(value, dict) else [v for v in value if isinstance(v, dict)]


def _location(value, known: dict) -> str | None:
    if not isinstance(value, str):
        return None
    if "${" not in value:
        return value.lower().replace(" ", "")
    for key in references(value, known):
        rtype, body = known[key]
        if rtype == "azurerm_resource_group":
            return _location(body.get("location"), known)
    return None


def mermaid(synth: dict) -> str:
    topology = build(synth)
    lines = ["flowchart LR", '  client(["Client"])']
    by_region: dict[str, list[Node]] = {}
    for node in topology.nodes.values():
        single = len(node.regions) == 1 and node.regions[0] != GLOBAL
        by_region.setdefault(node.regions[0] if single else GLOBAL, []).append(node)
    for region in sorted(by_region, key=lambda r: (r != GLOBAL, r)):
        indent = "  " if region == GLOBAL else "    "
        if region != GLOBAL:
            lines.append(f'  subgraph region_{_ident(region)}["{region}"]')
        for node in sorted(by_region[region], key=lambda n: n.key):
            lines.append(f"{indent}{node.id}{_shape(node)}")
        if region != GLOBAL:
            lines.append("  end")
    for node in sorted(topology.entry_points(), key=lambda n: n.key):
        lines.append(f"  client -->|subscription key| {node.id}")
    for (source, target), label in sorted(topology.edges.items()):
        arrow = "-->" if topology.nodes[target].kind in REQUEST_PATH else "-.->"
        lines.append(f"  {topology.nodes[source].id} {arrow}|{label}| {topology.nodes[target].id}")
    return "\n".join(lines) + "\n"


def _shape(node: Node) -> str:
    label = node.label.replace('"', "#quot;")
    if len(node.regions) > 1 or node.regions == [GLOBAL]:
        label += "<br/>(" + ", ".join(node.regions) + ")"
    if node.kind in ("azurerm_key_vault", "azurerm_log_analytics_workspace"):
        return f'[("{label}")]'
    return f'["{label}"]'


def _ident(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


def markdown(synth: dict) -> str:
    return "```mermaid\n" + mermaid(synth) + "```"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("synth", type=Path, nargs="+", help="cdktf.out/stacks/<stack>/cdk.tf.json")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--out", type=Path, help="write the Markdown here (default: stdout)")
    target.add_argument("--append", type=Path, help="append to this file ($GITHUB_STEP_SUMMARY)")
    args = parser.parse_args(argv)
    sections = [
        f"### Topology: `{path.parent.name}`\n\n" + markdown(read_json(path, "synthesized stack"))
        for path in args.synth
    ]
    text = "\n\n".join(sections) + "\n"
    if args.out:
        write_atomic(args.out, text)
    elif args.append:
        with args.append.open("a", encoding="utf-8") as summary:
            summary.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

