"""Mermaid topology diagram of a synthesized stack (cdktf.out/stacks/<stack>/cdk.tf.json).

    python -m tools.delivery.diagram cdktf.out/stacks/*/cdk.tf.json [--out diagram.md | --append FILE]
        [--view topology | network]

`--view network` draws the private data plane instead (`network.mode = "private"`, below
`network_mermaid`): each region's VNet and subnets with their ranges, the sites and private
endpoints in them, the private DNS zones and what they are linked to, and the public inbound path.

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
    return _box(_region_label(node), node.kind in ("azurerm_key_vault",
                                                   "azurerm_log_analytics_workspace"))


def _region_label(node: Node) -> str:
    """The label, with the regions of a node that is in several or global."""
    if len(node.regions) > 1 or node.regions == [GLOBAL]:
        return node.label + "<br/>(" + ", ".join(node.regions) + ")"
    return node.label


def _box(label: str, store: bool) -> str:
    label = label.replace('"', "#quot;")
    return f'[("{label}")]' if store else f'["{label}"]'


def _ident(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


def markdown(synth: dict) -> str:
    return "```mermaid\n" + mermaid(synth) + "```"


# -- The network view ------------------------------------------------------------------------
# Where each region's sites and private endpoints sit (VNet > subnet, from the references of
# `virtual_network_subnet_id` and `subnet_id`), what each endpoint reaches (its service
# connection) and which zone holds its records (its zone group), which VNet each zone is linked
# to, and the inbound path of the topology view, drawn as public.

VNET = "azurerm_virtual_network"
SUBNET = "azurerm_subnet"
PRIVATE_ENDPOINT = "azurerm_private_endpoint"
DNS_ZONE = "azurerm_private_dns_zone"
DNS_LINK = "azurerm_private_dns_zone_virtual_network_link"
SITES = {"azurerm_linux_web_app": "App Service", "azurerm_linux_web_app_slot": "App Service slot"}
DATA_PLANE = {"azurerm_cosmosdb_account": "Cosmos DB", "azurerm_key_vault": "Key Vault"}


@dataclass
class Subnet:
    key: str
    label: str  # name and range
    members: list[str] = field(default_factory=list)  # site and private endpoint keys


@dataclass
class Vnet:
    key: str
    label: str  # name and address space
    region: str
    subnets: dict[str, Subnet] = field(default_factory=dict)


@dataclass
class NetworkView:
    vnets: dict[str, Vnet] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)  # node key -> label
    zones: dict[str, str] = field(default_factory=dict)  # zone key -> region
    edges: dict[tuple[str, str], str] = field(default_factory=dict)  # (from, to) -> label
    links: list[tuple[str, str]] = field(default_factory=list)  # (zone, vnet)
    inbound: dict[tuple[str, str], str] = field(default_factory=dict)  # public request path

    def where(self, key: str) -> tuple[Vnet, Subnet] | None:
        """The VNet and subnet a site or private endpoint sits in (None: in none)."""
        return next(((v, s) for v in self.vnets.values() for s in v.subnets.values()
                     if key in s.members), None)


def build_network(synth: dict) -> NetworkView:
    known = resources(synth)
    view = NetworkView()
    def of_type(*types: str) -> list[tuple[str, dict]]:
        return [(k, body) for k, (rtype, body) in sorted(known.items()) if rtype in types]

    for key, body in of_type(VNET):
        view.vnets[key] = Vnet(key, f"VNet {body.get('name')}<br/>{_ranges(body, 'address_space')}",
                               _location(body.get("location"), known) or GLOBAL)
    for key, body in of_type(SUBNET):
        for vnet in _refs(body.get("virtual_network_name"), known, VNET):
            view.vnets[vnet].subnets[key] = Subnet(
                key, f"subnet {body.get('name')}<br/>{_ranges(body, 'address_prefixes')}")
    for rtype, kind in {**SITES, **DATA_PLANE}.items():
        for key, body in of_type(rtype):
            view.labels[key] = f"{kind}<br/>{_name(body, key)}{_data_plane_note(rtype, body)}"
    for key, body in of_type(PRIVATE_ENDPOINT):
        _add_private_endpoint(view, key, body, known)
    for key, body in of_type(*SITES):
        _place(view, key, _refs(body.get("virtual_network_subnet_id"), known, SUBNET))
    for key, body in of_type(DNS_ZONE):
        view.labels[key] = f"Private DNS zone<br/>{body.get('name')}"
        view.zones[key] = _location(body.get("resource_group_name"), known) or GLOBAL
    for _, body in of_type(DNS_LINK):
        for zone in _refs(body.get("private_dns_zone_name"), known, DNS_ZONE):
            view.links += [(zone, v) for v in _refs(body.get("virtual_network_id"), known, VNET)]
    _connect_sites(view, known)
    _add_inbound(view, synth)
    return view


def _refs(value, known: dict, rtype: str) -> list[str]:
    return [k for k in references(value, known) if known[k][0] == rtype]


def _ranges(body: dict, attribute: str) -> str:
    return ", ".join(body.get(attribute) or [])


def _name(body: dict, key: str) -> str:
    name = body.get("name")
    return name if isinstance(name, str) and "${" not in name else key.split(".", 1)[1]


def _data_plane_note(rtype: str, body: dict) -> str:
    """What the JSON says about the data plane's public side."""
    if rtype == "azurerm_cosmosdb_account":
        regions = ", ".join(g.get("location", "") for g in _blocks(body, "geo_location"))
        public = body.get("public_network_access_enabled") is not False
        return f"<br/>({regions})<br/>" + ("public access: IP firewall" if public
                                          else "public access off")
    if rtype == "azurerm_key_vault":
        acls = _blocks(body, "network_acls")
        action = acls[0].get("default_action") if acls else None
        bypass = acls[0].get("bypass") if acls else None
        return f"<br/>firewall: default {action}, bypass {bypass}" if action else ""
    return ""


def _add_private_endpoint(view: NetworkView, key: str, body: dict, known: dict) -> None:
    connections = _blocks(body, "private_service_connection")
    subresources = ", ".join(s for c in connections for s in c.get("subresource_names") or [])
    view.labels[key] = f"Private endpoint<br/>{_name(body, key)}<br/>{subresources}"
    _place(view, key, _refs(body.get("subnet_id"), known, SUBNET))
    for connection in connections:
        for target in references(connection.get("private_connection_resource_id"), known):
            if known[target][0] in DATA_PLANE:
                view.edges[(key, target)] = f"Private Link: {subresources}"
    for group in _blocks(body, "private_dns_zone_group"):
        for zone in _refs(group.get("private_dns_zone_ids"), known, DNS_ZONE):
            view.edges[(key, zone)] = "A records"


def _place(view: NetworkView, key: str, subnets: list[str]) -> None:
    for vnet in view.vnets.values():
        for subnet in subnets:
            if subnet in vnet.subnets:
                vnet.subnets[subnet].members.append(key)


def _connect_sites(view: NetworkView, known: dict) -> None:
    """A site integrated into a VNet calls that VNet's private endpoints (all outbound traffic
    goes through the VNet when `vnet_route_all_enabled`)."""
    for vnet in view.vnets.values():
        members = [k for s in vnet.subnets.values() for k in s.members]
        sites = [k for k in members if known[k][0] in SITES]
        for site in sites:
            config = _blocks(known[site][1], "site_config")
            route_all = bool(config and config[0].get("vnet_route_all_enabled"))
            label = "outbound, route all" if route_all else "outbound"
            for endpoint in (k for k in members if known[k][0] == PRIVATE_ENDPOINT):
                view.edges[(site, endpoint)] = label


def _add_inbound(view: NetworkView, synth: dict) -> None:
    """The topology view's request path (client, gateways, Traffic Manager, web apps)."""
    topology = build(synth)
    for node in topology.nodes.values():
        if node.kind in REQUEST_PATH and node.key not in view.labels:
            view.labels[node.key] = _region_label(node)
    for node in topology.entry_points():
        view.inbound[("client", node.key)] = "public, subscription key"
    for (source, target), label in topology.edges.items():
        if {topology.nodes[source].kind, topology.nodes[target].kind} <= REQUEST_PATH:
            view.inbound[(source, target)] = f"public, {label}"


def network_mermaid(synth: dict) -> str:
    view = build_network(synth)
    ids = {key: f"n{i}" for i, key in enumerate(sorted(view.labels))}
    ids["client"] = "client"
    lines = ["flowchart LR", '  client(["Client"])']
    regional = {k for k in view.labels if view.where(k)} | set(view.zones)
    public = sorted({k for edge in view.inbound for k in edge} - regional - {"client"})
    lines.append('  subgraph internet["public endpoints"]')
    lines += [f"    {ids[k]}{_network_shape(k, view)}" for k in public]
    lines.append("  end")
    lines += [f"  {ids[k]}{_network_shape(k, view)}" for k in sorted(view.labels)
              if k not in regional and k not in public]
    for region in sorted({v.region for v in view.vnets.values()} | set(view.zones.values())):
        lines.append(f'  subgraph region_{_ident(region)}["{region}"]')
        for vnet in (v for k, v in sorted(view.vnets.items()) if v.region == region):
            lines += _vnet_lines(vnet, view, ids)
        lines += [f"    {ids[z]}{_network_shape(z, view)}"
                  for z, r in sorted(view.zones.items()) if r == region]
        lines.append("  end")
    lines += [f"  {ids[s]} -->|{label}| {ids[t]}" for (s, t), label in sorted(view.inbound.items())]
    lines += [f"  {ids[s]} -->|{label}| {ids[t]}" for (s, t), label in sorted(view.edges.items())]
    lines += [f"  {ids[z]} -.->|linked| {_vnet_id(view, v)}" for z, v in sorted(view.links)]
    return "\n".join(lines) + "\n"


def _vnet_lines(vnet: Vnet, view: NetworkView, ids: dict[str, str]) -> list[str]:
    lines = [f'    subgraph {_vnet_id(view, vnet.key)}["{vnet.label}"]']
    for i, (_, subnet) in enumerate(sorted(vnet.subnets.items())):
        lines.append(f'      subgraph {_vnet_id(view, vnet.key)}_s{i}["{subnet.label}"]')
        lines += [f"        {ids[k]}{_network_shape(k, view)}" for k in sorted(subnet.members)]
        lines.append("      end")
    lines.append("    end")
    return lines


def _vnet_id(view: NetworkView, key: str) -> str:
    return f"vnet{sorted(view.vnets).index(key)}"


def _network_shape(key: str, view: NetworkView) -> str:
    return _box(view.labels[key], key in view.zones or key.split(".", 1)[0] in DATA_PLANE)


def network_markdown(synth: dict) -> str:
    return "```mermaid\n" + network_mermaid(synth) + "```"


VIEWS = {"topology": ("Topology", markdown), "network": ("Network", network_markdown)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("synth", type=Path, nargs="+", help="cdktf.out/stacks/<stack>/cdk.tf.json")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--out", type=Path, help="write the Markdown here (default: stdout)")
    target.add_argument("--append", type=Path, help="append to this file ($GITHUB_STEP_SUMMARY)")
    parser.add_argument("--view", choices=sorted(VIEWS), default="topology",
                        help="topology (default) or network (the private data plane)")
    args = parser.parse_args(argv)
    title, render = VIEWS[args.view]
    sections = [
        f"### {title}: `{path.parent.name}`\n\n" + render(read_json(path, "synthesized stack"))
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

