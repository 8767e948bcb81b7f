"""The topology diagram of every synthesized stack (dev, prod x single, multi-region, dual):
what the JSON holds must be on the diagram, with the request path derived from it."""

import pytest

from tools.delivery import diagram

APIM = "azurerm_api_management"
TM = "azurerm_traffic_manager_profile"
WEB_APP = "azurerm_linux_web_app"
KEY_VAULT = "azurerm_key_vault"
KEYS = [(env, topology) for env in ("dev", "prod") for topology in ("single", "multi-region", "dual")]


def keys_of(stack: dict, rtype: str) -> set[str]:
    return {f"{rtype}.{name}" for name in stack["resource"].get(rtype, {})}


def request_edges(topology, source_kind, target_kind) -> set[tuple[str, str]]:
    return {(s, t) for (s, t) in topology.edges
            if topology.nodes[s].kind == source_kind and topology.nodes[t].kind == target_kind}


@pytest.fixture(params=KEYS, ids=["-".join(k) for k in KEYS])
def stack(request, synthesized_stacks) -> tuple[str, dict]:
    return request.param[1], synthesized_stacks[request.param]


def test_every_drawn_kind_in_the_json_is_a_node(stack):
    _, synth = stack
    topology = diagram.build(synth)
    for rtype in diagram.KINDS:
        assert {k for k, n in topology.nodes.items() if n.kind == rtype} == keys_of(synth, rtype)


def test_client_enters_through_the_gateway(stack):
    name, synth = stack
    topology = diagram.build(synth)
    entries = topology.entry_points()
    if name == "dual":  # a second Traffic Manager in front of one gateway per region
        [entry] = entries
        assert entry.kind == TM
        called = {t for (s, t) in request_edges(topology, TM, APIM) if s == entry.key}
        assert called == keys_of(synth, APIM) and len(called) == 2
    else:
        assert [e.key for e in entries] == sorted(keys_of(synth, APIM))


def test_every_gateway_calls_the_app_traffic_manager(stack):
    _, synth = stack
    topology = diagram.build(synth)
    callers = {s for (s, _) in request_edges(topology, APIM, TM)}
    assert callers == keys_of(synth, APIM)


def test_traffic_manager_reaches_every_web_app(stack):
    _, synth = stack
    reached = {t for (_, t) in request_edges(diagram.build(synth), TM, WEB_APP)}
    assert reached == keys_of(synth, WEB_APP) and len(reached) == 2


def test_every_web_app_reads_its_secrets_from_key_vault(stack):
    _, synth = stack
    readers = {s for (s, _) in request_edges(diagram.build(synth), WEB_APP, KEY_VAULT)}
    assert readers == keys_of(synth, WEB_APP)


def test_the_two_web_apps_sit_in_two_region_subgraphs(stack):
    _, synth = stack
    topology = diagram.build(synth)
    regions = {topology.nodes[k].regions[0] for k in keys_of(synth, WEB_APP)}
    assert len(regions) == 2
    text = diagram.mermaid(synth)
    assert all(f'subgraph region_{r}["{r}"]' in text for r in regions)


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_multi_region_gateway_is_one_node_showing_both_regions(env, synthesized_stacks):
    synth = synthesized_stacks[(env, "multi-region")]
    [apim] = [n for n in diagram.build(synth).nodes.values() if n.kind == APIM]
    assert len(apim.regions) == 2
