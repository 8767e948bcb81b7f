"""Key Vault as the rehearsal models it: the fake `az keyvault ...` (fakes/bin/az), and the fake
terraform, whose apply makes the vaults a stack creates.

Each vault's state is in $REHEARSAL_DIR/azure.json under "key_vaults" (vault name -> state):

- `resource_group`, `default_action` (the firewall: "Allow" or "Deny") and `ip_rules` (CIDRs;
  an address is kept as `a.b.c.d/32`, as Key Vault keeps it). The scenario's vault
  (`key_vault.name`) starts from the scenario: `key_vault.default_action` (default "Allow": a
  public vault, as every scenario had before), `key_vault.resource_group`, also when a
  terraform apply creates it. Another vault that an apply creates starts from the stack's
  `network_acls`.
- `certificates`: name -> {"policy": the Azure CLI's policy JSON, "versions": [...]}, each
  version a real certificate (self-signed, the policy's subject, validity, key usages and EKUs;
  a new version of a `reuseKey` policy keeps the key) with its `cer` (base64 DER), SHA-1
  `thumbprint` and `pfx` (base64, what the certificate's secret of the same name holds). A
  version is issued once `pending_shows` shows have seen it pending (the scenario's
  `key_vault.pending_shows`, default 0: `az keyvault certificate create` itself waits for a
  self-issued certificate); until then `show` answers the previous version, or no `cer`.
- `secrets`: name -> versions [{"version", "value", "content_type"}].

The firewall: a data-plane call to a vault whose default action is Deny is refused (exit 1,
ForbiddenByFirewall) unless the caller's address is in its IP rules. The caller's address is
what Azure sees: the runner's public address, which its "what is my IP" service answers
($RUNNER_IP_URL, in the rehearsal the gateway's /ip, tests/github/fake_azure.py RUNNER_IP).
A new rule takes effect after the scenario's `key_vault.rule_delay_calls` refused calls
(default 0), as Key Vault applies a rule after a moment.

The scenario's `key_vault.hangs` makes one call hang (for a test to kill its caller there):
"network-rule add" once the rule is applied, "certificate create" before the certificate is.
`key_vault.kills_tool_at = "certificate create"` kills the certificate tool there instead
(SIGKILL, fakes/bin/az kill_the_tool): a cancelled job, under act.

The certificates are made by this file run with the repository's .venv Python (cryptography):

    python key_vault.py issue POLICY_JSON [KEY_PFX_BASE64]   -> {"cer", "thumbprint", "pfx"}
    python key_vault.py read-pfx FILE  (the password on stdin) -> the same, or exit 1

The rest is standard library (the fakes run on the runner's python3).
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

PYTHON = Path(__file__).resolve().parents[3] / ".venv" / "bin" / "python"
PFX_CONTENT_TYPE = "application/x-pkcs12"


def vaults(azure: dict) -> dict:
    return azure.setdefault("key_vaults", {})


def new_vault(resource_group: str, default_action: str) -> dict:
    return {"resource_group": resource_group, "default_action": default_action, "ip_rules": [],
            "rule_delays": {}, "certificates": {}, "secrets": {}}


def find(azure: dict, name: str | None, wanted: dict) -> dict | None:
    """The vault `name`: known already, or the scenario's (`wanted`: its `key_vault`)."""
    known = vaults(azure)
    if name in known:
        return known[name]
    if name and name == wanted.get("name"):
        known[name] = new_vault(wanted.get("resource_group", "rg-todo-api"),
                                wanted.get("default_action", "Allow"))
        return known[name]
    return None


def register(azure: dict, name: str, resource_group: str, default_action: str,
             wanted: dict) -> None:
    """A vault a terraform apply created: the scenario's vault as the scenario says, another
    as the stack says (a vault the state knows already keeps its state)."""
    if find(azure, name, wanted) is None:
        vaults(azure)[name] = new_vault(resource_group, default_action)


def rule(ip: str) -> str:
    """An IP rule as Key Vault keeps it (an address gets /32); ValueError if not an address."""
    return str(ipaddress.ip_network(ip, strict=False))


def add_rule(vault: dict, ip: str, delay_calls: int) -> None:
    cidr = rule(ip)
    if cidr not in vault["ip_rules"]:  # the CLI adds no duplicate
        vault["ip_rules"].append(cidr)
        vault["rule_delays"][cidr] = delay_calls


def remove_rule(vault: dict, ip: str) -> None:
    """Gone, if it was there (the CLI changes nothing otherwise)."""
    cidr = rule(ip)
    if cidr in vault["ip_rules"]:
        vault["ip_rules"].remove(cidr)
    vault["rule_delays"].pop(cidr, None)


def caller_address() -> str | None:
    """The runner's public address as the world sees it ($RUNNER_IP_URL), None if unknown."""
    url = os.environ.get("RUNNER_IP_URL")
    if not url:
        return None
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.read().decode().strip()
    except OSError:
        return None


def private(vault: dict) -> bool:
    return vault["default_action"].lower() == "deny"


def admits(vault: dict, address: str | None) -> bool:
    """The firewall lets `address` reach the data plane (a rule still taking effect counts
    one refused call down)."""
    if not private(vault):
        return True
    if address is None:
        return False
    for cidr in vault["ip_rules"]:
        if ipaddress.ip_address(address) in ipaddress.ip_network(cidr):
            if vault["rule_delays"].get(cidr, 0) > 0:
                vault["rule_delays"][cidr] -= 1
                continue
            return True
    return False


def arm_view(name: str, vault: dict, subscription: str) -> dict:
    """`az keyvault show`: the vault's resource (what the delivery reads of it)."""
    group = vault["resource_group"]
    return {
        "id": f"/subscriptions/{subscription}/resourceGroups/{group}/providers/"
              f"Microsoft.KeyVault/vaults/{name}",
        "name": name, "resourceGroup": group, "type": "Microsoft.KeyVault/vaults",
        "properties": {
            "vaultUri": f"https://{name}.vault.azure.net/",
            "enableRbacAuthorization": True,
            "publicNetworkAccess": "Enabled",
            "networkAcls": {"bypass": "AzureServices", "defaultAction": vault["default_action"],
                            "ipRules": [{"value": r} for r in vault["ip_rules"]],
                            "virtualNetworkRules": []},
        },
    }


def current(certificate: dict) -> dict | None:
    """The latest issued version (one show closer to issue for a pending one)."""
    for version in reversed(certificate["versions"]):
        if version["pending_shows"] > 0:
            version["pending_shows"] -= 1
            continue
        return version
    return None


def bundle(vault_name: str, name: str, certificate: dict, version: dict | None) -> dict:
    """`az keyvault certificate show`: the version's certificate with the certificate's
    policy; a certificate with no issued version yet has no `cer`."""
    base = f"https://{vault_name}.vault.azure.net"
    latest = version or certificate["versions"][-1]
    shown = {
        "id": f"{base}/certificates/{name}/{latest['version']}",
        "kid": f"{base}/keys/{name}/{latest['version']}",
        "sid": f"{base}/secrets/{name}/{latest['version']}",
        "name": name, "contentType": PFX_CONTENT_TYPE, "policy": certificate["policy"],
        "attributes": {"enabled": True}, "tags": {},
    }
    if version is not None:
        shown.update(cer=version["cer"], x509ThumbprintHex=version["thumbprint"])
    return shown


def new_version(made: dict, pending_shows: int = 0) -> dict:
    return {"version": uuid.uuid4().hex, "pending_shows": pending_shows, **made}


class NotACertificate(Exception):
    """The PFX could not be read (not one, or not that password)."""


def issue(policy: dict, key_pfx: str | None = None) -> dict:
    """A new self-signed certificate as the policy says (this file's `issue`, run with .venv)."""
    command = [str(PYTHON), __file__, "issue", json.dumps(policy)] + ([key_pfx] if key_pfx else [])
    return json.loads(subprocess.run(command, capture_output=True, text=True,
                                     check=True).stdout)


def read_pfx(path: str, password: str) -> dict:
    result = subprocess.run([str(PYTHON), __file__, "read-pfx", path], input=password,
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NotACertificate(result.stderr.strip())
    return json.loads(result.stdout)


# -- run with the repository's .venv Python ---------------------------------------------------


def _made(key, certificate) -> dict:
    import base64

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    der = certificate.public_bytes(serialization.Encoding.DER)
    pfx = pkcs12.serialize_key_and_certificates(None, key, certificate, None,
                                                serialization.NoEncryption())
    return {"cer": base64.b64encode(der).decode(),
            "thumbprint": certificate.fingerprint(hashes.SHA1()).hex().upper(),
            "pfx": base64.b64encode(pfx).decode()}


def _name(subject: str):
    from cryptography import x509

    oids = {"CN": x509.NameOID.COMMON_NAME, "O": x509.NameOID.ORGANIZATION_NAME,
            "OU": x509.NameOID.ORGANIZATIONAL_UNIT_NAME, "C": x509.NameOID.COUNTRY_NAME,
            "L": x509.NameOID.LOCALITY_NAME, "ST": x509.NameOID.STATE_OR_PROVINCE_NAME}
    parts = [part.strip().split("=", 1) for part in subject.split(",")]
    return x509.Name([x509.NameAttribute(oids[k.strip().upper()], v) for k, v in parts])


def _issue(policy: dict, key_pfx: str | None) -> dict:
    import base64
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import pkcs12

    x509_properties = policy["x509CertificateProperties"]
    if key_pfx:
        key, _, _ = pkcs12.load_key_and_certificates(base64.b64decode(key_pfx), None)
    else:
        key = rsa.generate_private_key(public_exponent=65537,
                                       key_size=policy["keyProperties"].get("keySize", 2048))
    name = _name(x509_properties["subject"])
    now = datetime.datetime.now(datetime.UTC)
    usages = set(x509_properties.get("keyUsage") or [])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now)
               .not_valid_after(now + datetime.timedelta(
                   days=31 * x509_properties["validityInMonths"]))
               .add_extension(x509.KeyUsage(
                   digital_signature="digitalSignature" in usages, content_commitment=False,
                   key_encipherment="keyEncipherment" in usages, data_encipherment=False,
                   key_agreement=False, key_cert_sign=False, crl_sign=False,
                   encipher_only=False, decipher_only=False), critical=True))
    if x509_properties.get("ekus"):
        builder = builder.add_extension(x509.ExtendedKeyUsage(
            [x509.ObjectIdentifier(oid) for oid in x509_properties["ekus"]]), critical=False)
    return _made(key, builder.sign(key, hashes.SHA256()))


def _read_pfx(path: str, password: str) -> dict:
    from cryptography.hazmat.primitives.serialization import pkcs12

    try:
        key, certificate, _ = pkcs12.load_key_and_certificates(Path(path).read_bytes(),
                                                                password.encode())
    except (OSError, ValueError) as error:
        sys.exit(f"{error}")
    if key is None or certificate is None:
        sys.exit("no private key or no certificate in the PFX")
    return {**_made(key, certificate), "subject": certificate.subject.rfc4514_string()}


if __name__ == "__main__":
    verb, *rest = sys.argv[1:]
    if verb == "issue":
        made = _issue(json.loads(rest[0]), rest[1] if len(rest) > 1 else None)
    else:
        made = _read_pfx(rest[0], sys.stdin.read())
    print(json.dumps(made))
