"""The API policy: forward to the Traffic Manager backend; retry idempotent requests that got a
5xx or no response once, at once, against the App Service of the *other* region directly.

Traffic Manager needs up to (failures + 1) x interval + TTL to move clients; the retry covers
that window for reads and idempotent writes. "Other" is relative to the gateway that runs the
policy (`context.Deployment.Region`), so one policy serves every topology.
"""

import xml.etree.ElementTree as ET

IDEMPOTENT_METHODS = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE")
RETRY_COUNT = 1
FORWARD_TIMEOUT_SECONDS = 20


def api_policy(*, primary_backend_id: str, fallback_backend_ids: dict[str, str]) -> str:
    """fallback_backend_ids: gateway region display name -> backend id of the other region's app.

    The first entry is also the fallback when the region is none of them.
    """
    methods = ", ".join(f'"{m}"' for m in IDEMPOTENT_METHODS)
    policies = ET.Element("policies")
    inbound = ET.SubElement(policies, "inbound")
    ET.SubElement(inbound, "base")
    ET.SubElement(
        inbound,
        "set-variable",
        name="idempotent",
        value=f"@(new [] {{ {methods} }}.Contains(context.Request.Method))",
    )
    ET.SubElement(inbound, "set-backend-service", {"backend-id": primary_backend_id})
    backend = ET.SubElement(policies, "backend")
    retry = ET.SubElement(
        backend,
        "retry",
        {
            "condition": '@(context.Variables.GetValueOrDefault<bool>("idempotent")'
            " && (context.Response == null || context.Response.StatusCode >= 500))",
            "count": str(RETRY_COUNT),
            "interval": "0",
            "first-fast-retry": "true",
        },
    )
    retrying = ET.SubElement(ET.SubElement(retry, "choose"), "when")
    retrying.set("condition", "@(context.Response != null || context.LastError != null)")
    _choose_by_region(retrying, fallback_backend_ids)
    ET.SubElement(
        retry,
        "forward-request",
        {"buffer-request-body": "true", "timeout": str(FORWARD_TIMEOUT_SECONDS)},
    )
    ET.SubElement(ET.SubElement(policies, "outbound"), "base")
    ET.SubElement(ET.SubElement(policies, "on-error"), "base")
    ET.indent(policies)
    return ET.tostring(policies, encoding="unicode")


def _choose_by_region(parent: ET.Element, fallback_backend_ids: dict[str, str]) -> None:
    choose = ET.SubElement(parent, "choose")
    items = list(fallback_backend_ids.items())
    for region, backend_id in items[1:]:
        when = ET.SubElement(
            choose, "when", condition=f'@(context.Deployment.Region == "{region}")'
        )
        ET.SubElement(when, "set-backend-service", {"backend-id": backend_id})
    otherwise = ET.SubElement(choose, "otherwise")
    ET.SubElement(otherwise, "set-backend-service", {"backend-id": items[0][1]})
