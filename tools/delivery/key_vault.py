"""Key Vault's data plane for the delivery: the client certificate, through a private firewall.

The certificate API Management presents, made on the vault's data plane, and the temporary
opening of a private vault's firewall that every data-plane call from a runner needs.

    python -m tools.delivery.key_vault ensure-certificate --vault V --name N --public-secret P \
        --subject "CN=..." --validity-months 12 [--pfx FILE] [--runner-ip auto|IP] \
        [--wait-seconds 180] [--poll-seconds 3]
    python -m tools.delivery.key_vault close [--record FILE]

`ensure-certificate` (run by Terraform's local-exec at apply, as the deploy identity, from the
project root: stacks/key_vault.py builds the command) leaves the vault holding:

- without --pfx, a self-issued certificate N (`certificate_policy`: issuer Self, exportable RSA
  2048 whose key a renewal keeps, key usage digitalSignature + keyEncipherment, EKU clientAuth,
  AutoRenew 30 days before expiry). Created when absent; a new version when the vault's policy
  names another subject, validity or issuer; left alone otherwise.
- with --pfx FILE (its password in $CLIENT_CERTIFICATE_PASSWORD), that certificate, imported
  (issuer Unknown, EmailContacts 30 days before expiry) unless the vault's current version
  already is it (the same SHA-1 thumbprint). The password reaches az on stdin (`--password @-`:
  the Azure CLI reads an argument written `@<file>` from that file, `@-` from stdin), never on
  a command line that the process list, a log or the rehearsal's call log would show.
- once the current version has its certificate (`cer`, waited for), its public part in the
  secret P: base64 DER, content type application/pkix-cert, written only when it differs.

One line per thing done. Every input is checked before the first az call that changes anything:
a bad one is a one-line error (exit 2, tools.cli).

A private vault (firewall default Deny) answers the data plane only to its private endpoints and
its IP rules. With --runner-ip (`auto`: the address tools.delivery.deploy_app.runner_ip looks
up) `opened_vault` adds an IP rule for this runner for the time of the calls and removes it
afterwards, on failure and on SIGTERM (a cancelled job) too. The opening is written to a record
($TODO_API_VAULT_RECORD, default .local/key-vault-openings.json under the current directory)
before the rule is added: a process killed by SIGKILL leaves the record behind, and `close` (a
workflow's `if: always()` step) removes every rule it lists, then the record. Key Vault applies a
new rule after a moment: the data plane is asked (`az keyvault certificate list`) until it
answers, at most --wait-seconds. A public vault (default Allow) is left alone, nothing recorded.
The release driver (tools.delivery.release) reads the certificate through the same opening.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tools.cli import CliError, interrupt_on_sigterm, poll_until, read_json, run_cli, write_atomic
from tools.delivery.deploy_app import az, az_json, runner_ip

# Where an opening is recorded until its rule is removed (one place: the tool, the release, the
# workflows' cleanup step).
RECORD_ENV = "TODO_API_VAULT_RECORD"
DEFAULT_RECORD = Path(".local") / "key-vault-openings.json"
PASSWORD_ENV = "CLIENT_CERTIFICATE_PASSWORD"

CLIENT_AUTH_EKU = "1.3.6.1.5.5.7.3.2"
PFX_CONTENT_TYPE = "application/x-pkcs12"
PUBLIC_CONTENT_TYPE = "application/pkix-cert"
KEY_SIZE = 2048
RENEW_DAYS_BEFORE_EXPIRY = 30
MAX_VALIDITY_MONTHS = 120  # what stacks.config.Certificate.validity_months allows
WAIT_SECONDS = 180.0
POLL_SECONDS = 3.0
# Key Vault's answer for an object that does not exist, as az prints it (the error code says
# it; az's exit status only says that the command failed)
NOT_FOUND = re.compile(r"\((?:Certificate|Secret)NotFound\)")
VAULT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9]")  # Key Vault's naming rules
OBJECT_NAME = re.compile(r"[A-Za-z0-9-]{1,127}")  # certificates and secrets


def say(line: str) -> None:
    print(line, flush=True)


def record_path() -> Path:
    """The opening record this process uses: $TODO_API_VAULT_RECORD, else the default."""
    return Path(os.environ.get(RECORD_ENV) or DEFAULT_RECORD)


# -- the opening ------------------------------------------------------------------------------


def read_record(path: Path) -> list[dict]:
    """The openings the record lists ([] without a record)."""
    if not path.exists():
        return []
    entries = read_json(path, "the Key Vault opening record")
    if not isinstance(entries, list) or not all(
            isinstance(e, dict) and isinstance(e.get("vault"), str) and isinstance(e.get("ip"), str)
            for e in entries):
        raise CliError(f"the Key Vault opening record {path} is not a list of {{vault, ip}}")
    return entries


def write_record(path: Path, entries: list[dict]) -> None:
    """Atomically (a killed process leaves the old record or the new one); none left: no file."""
    if entries:
        write_atomic(path, json.dumps(entries, indent=2) + "\n")
    else:
        path.unlink(missing_ok=True)


def network_rule_command(verb: str, vault: str, ip: str) -> list[str]:
    """Add or remove the IP rule for `ip` (removing a rule that is not there changes nothing)."""
    return ["az", "keyvault", "network-rule", verb, "--name", vault, "--ip-address", f"{ip}/32",
            "--only-show-errors", "--output", "none"]


def firewall_denies(vault: str) -> bool:
    """Whether the vault's firewall is default Deny (a private vault)."""
    shown = az_json(["az", "keyvault", "show", "--name", vault, "--only-show-errors"],
                    f"reading Key Vault {vault}")
    if not isinstance(shown, dict):
        raise CliError(f"unexpected answer from az for Key Vault {vault}")
    acls = (shown.get("properties") or {}).get("networkAcls") or {}
    return str(acls.get("defaultAction") or "Allow").lower() == "deny"


def _run(command: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, input=stdin, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise CliError("Azure CLI `az` not found on PATH") from None


def _reason(stderr: str) -> str:
    """az's first line of complaint (its error messages name no secret)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return f": {lines[0][:300]}" if lines else ""


def _answers(vault: str) -> bool:
    command = ["az", "keyvault", "certificate", "list", "--vault-name", vault, "--maxresults",
               "1", "--only-show-errors", "--output", "none"]
    return _run(command).returncode == 0


@contextmanager
def opened_vault(vault: str, ip: str | None | Callable[[], str | None], record: Path, *,
                 wait_seconds: float = WAIT_SECONDS, poll_seconds: float = POLL_SECONDS,
                 report: Callable[[str], None] = say):
    """Inside the block the vault's data plane answers `ip` (a private vault gets an IP rule for
    it, recorded first); after it, the rule and its record entry are gone. A public vault, or
    no `ip`: nothing is opened. `ip` may be a lookup, called only for a private vault (a public
    one needs no address: dev's apply asks no "what is my IP" service)."""
    if ip is None or not firewall_denies(vault):
        yield
        return
    if callable(ip):
        ip = ip()
        if ip is None:
            yield
            return
    opening = {"vault": vault, "ip": ip}
    write_record(record, [*read_record(record), opening])  # before the rule: SIGKILL leaves it
    try:
        az(network_rule_command("add", vault, ip), f"opening Key Vault {vault} to {ip}")
        report(f"Key Vault {vault}: opened to {ip}")
        poll_until(lambda: True if _answers(vault) else None,
                   f"Key Vault {vault} answering {ip} through its firewall", wait_seconds,
                   poll_seconds)
        yield
    finally:
        az(network_rule_command("remove", vault, ip), f"closing Key Vault {vault} to {ip}")
        entries = read_record(record)
        if opening in entries:
            entries.remove(opening)
        write_record(record, entries)
        report(f"Key Vault {vault}: closed to {ip}")


def close(record: Path, report: Callable[[str], None] = say) -> int:
    """Remove every rule the record lists (one already gone is fine), then the record."""
    entries = read_record(record)
    if not entries:
        record.unlink(missing_ok=True)
        report(f"nothing to close: no opening recorded in {record}")
        return 0
    left = []
    for entry in entries:
        try:
            az(network_rule_command("remove", entry["vault"], entry["ip"]),
               f"closing Key Vault {entry['vault']} to {entry['ip']}")
        except CliError as error:
            print(f"error: {error}", file=sys.stderr, flush=True)
            left.append(entry)
            continue
        report(f"Key Vault {entry['vault']}: closed to {entry['ip']}")
    write_record(record, left)
    if left:
        raise CliError(f"{len(left)} opening(s) not closed, still listed in {record}")
    return 0


# -- the certificate --------------------------------------------------------------------------


@dataclass(frozen=True)
class Pfx:
    path: Path
    password: str
    thumbprint: str  # SHA-1 of the certificate's DER, upper-case hex (Key Vault's x509ThumbprintHex)
    key_size: int


@dataclass(frozen=True)
class Wanted:
    vault: str
    name: str
    public_secret: str
    subject: str
    validity_months: int
    pfx: Pfx | None = None

    @property
    def issuer(self) -> str:
        return "Unknown" if self.pfx else "Self"

    @property
    def policy(self) -> dict:
        return certificate_policy(self.subject, self.validity_months, issuer=self.issuer,
                                  key_size=self.pfx.key_size if self.pfx else KEY_SIZE)


def certificate_policy(subject: str, validity_months: int, *, issuer: str = "Self",
                       key_size: int = KEY_SIZE) -> dict:
    """The certificate policy (the Azure CLI's JSON, as `az keyvault certificate
    get-default-policy` prints it). A renewal keeps the key (`reuseKey`): the apps pin the
    public key, not the certificate (docs/deploy.md, "Certificate renewal")."""
    return {
        "issuerParameters": {"name": issuer},
        "keyProperties": {"exportable": True, "keyType": "RSA", "keySize": key_size,
                          "reuseKey": True},
        "secretProperties": {"contentType": PFX_CONTENT_TYPE},
        "x509CertificateProperties": {
            "subject": subject,
            "validityInMonths": validity_months,
            "keyUsage": ["digitalSignature", "keyEncipherment"],
            "ekus": [CLIENT_AUTH_EKU],
        },
        "lifetimeActions": [{
            "trigger": {"daysBeforeExpiry": RENEW_DAYS_BEFORE_EXPIRY},
            "action": {"actionType": "AutoRenew" if issuer == "Self" else "EmailContacts"},
        }],
    }


def _subject(subject: object) -> str:
    """A subject compared the way it reads: `CN=a, O=b` is `CN=a,O=b`."""
    return ",".join(part.strip() for part in str(subject or "").split(","))


def policy_changes(policy: dict | None, wanted: Wanted) -> list[str]:
    """What the vault's policy names otherwise than `wanted` (subject, validity, issuer)."""
    x509 = (policy or {}).get("x509CertificateProperties") or {}
    issuer = ((policy or {}).get("issuerParameters") or {}).get("name")
    changes = []
    if _subject(x509.get("subject")) != _subject(wanted.subject):
        changes.append(f"subject {x509.get('subject')!r} -> {wanted.subject!r}")
    if x509.get("validityInMonths") != wanted.validity_months:
        changes.append(f"validity {x509.get('validityInMonths')} -> {wanted.validity_months}"
                       " months")
    if str(issuer or "").lower() != wanted.issuer.lower():
        changes.append(f"issuer {issuer} -> {wanted.issuer}")
    return changes


def read_pfx(path: Path, password: str | None) -> Pfx:
    """The PFX's certificate, checked: a file, the password opens it, a key and a certificate."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import pkcs12

    if not path.is_file():
        raise CliError(f"--pfx {path}: no such file")
    if not password:
        raise CliError(f"--pfx {path}: its password is missing (${PASSWORD_ENV} is empty)")
    try:
        key, certificate, _ = pkcs12.load_key_and_certificates(path.read_bytes(),
                                                                password.encode())
    except ValueError:
        raise CliError(f"--pfx {path}: not a PFX, or ${PASSWORD_ENV} is not its password"
                       ) from None
    if key is None or certificate is None:
        raise CliError(f"--pfx {path}: holds no private key or no certificate")
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CliError(f"--pfx {path}: the key is not RSA (the certificate policy is RSA)")
    thumbprint = certificate.fingerprint(hashes.SHA1()).hex().upper()  # Key Vault's, SHA-1
    return Pfx(path, password, thumbprint, key.key_size)


def _shown(command: list[str], what: str) -> dict | None:
    """The JSON az prints for `command`; None when the object does not exist."""
    result = _run(command + ["--only-show-errors", "--output", "json"])
    if result.returncode != 0 and NOT_FOUND.search(result.stderr):
        return None
    if result.returncode != 0:
        raise CliError(f"{what} failed (az exit code {result.returncode}){_reason(result.stderr)}")
    try:
        shown = json.loads(result.stdout)
    except ValueError:
        raise CliError(f"unexpected answer from az for {what}") from None
    if not isinstance(shown, dict):
        raise CliError(f"unexpected answer from az for {what}")
    return shown


def show_certificate(vault: str, name: str) -> dict | None:
    return _shown(["az", "keyvault", "certificate", "show", "--vault-name", vault, "--name", name],
                  f"reading the certificate {name} in Key Vault {vault}")


def _changed(what: str, command: list[str], stdin: str | None = None) -> None:
    result = _run(command + ["--only-show-errors", "--output", "none"], stdin)
    if result.returncode != 0:
        raise CliError(f"{what} failed (az exit code {result.returncode}){_reason(result.stderr)}")


def make_certificate(wanted: Wanted, current: dict | None,
                     report: Callable[[str], None] = say) -> bool:
    """Create, renew or import the certificate as `wanted` says; whether a version was made."""
    vault, name, policy = wanted.vault, wanted.name, json.dumps(wanted.policy)
    where = f"the certificate {name} in Key Vault {vault}"
    if wanted.pfx:
        thumbprint = str((current or {}).get("x509ThumbprintHex") or "").upper()
        if thumbprint == wanted.pfx.thumbprint:
            report(f"certificate {name}: unchanged (thumbprint {thumbprint})")
            return False
        _changed(f"importing {wanted.pfx.path} as {where}",
                 ["az", "keyvault", "certificate", "import", "--vault-name", vault, "--name", name,
                  "--file", str(wanted.pfx.path), "--password", "@-", "--policy", policy],
                 stdin=wanted.pfx.password)
        report(f"certificate {name}: imported {wanted.pfx.path} (thumbprint"
               f" {wanted.pfx.thumbprint})")
        return True
    changes = policy_changes((current or {}).get("policy"), wanted) if current else []
    if current is not None and not changes:
        report(f"certificate {name}: unchanged ({wanted.subject}, {wanted.validity_months}"
               " months)")
        return False
    _changed(f"creating {where}", ["az", "keyvault", "certificate", "create", "--vault-name",
                                   vault, "--name", name, "--policy", policy])
    if current is None:
        report(f"certificate {name}: created (self-issued, {wanted.subject},"
               f" {wanted.validity_months} months)")
    else:
        report(f"certificate {name}: new version ({'; '.join(changes)})")
    return True


def issued(vault: str, name: str, previous: str | None, wait_seconds: float,
           poll_seconds: float = POLL_SECONDS) -> dict:
    """The certificate once its current version has its certificate (`cer`) and is not the
    version `previous` (the one before a new version was made)."""
    def probe() -> dict | None:
        shown = show_certificate(vault, name)
        if shown and shown.get("cer") and (previous is None or shown.get("id") != previous):
            return shown
        return None

    return poll_until(probe, f"the certificate {name} in Key Vault {vault} being issued",
                      wait_seconds, poll_seconds)


def publish_public_part(vault: str, secret: str, cer: str,
                        report: Callable[[str], None] = say) -> None:
    """The secret `secret` holds `cer` (base64 DER), written only when it differs."""
    shown = _shown(["az", "keyvault", "secret", "show", "--vault-name", vault, "--name", secret],
                   f"reading the secret {secret} in Key Vault {vault}")
    if shown is not None and shown.get("value") == cer:
        report(f"secret {secret}: unchanged")
        return
    _changed(f"writing the secret {secret} in Key Vault {vault}",
             ["az", "keyvault", "secret", "set", "--vault-name", vault, "--name", secret,
              "--value", cer, "--content-type", PUBLIC_CONTENT_TYPE])
    report(f"secret {secret}: written (the certificate's public part)")


def ensure_certificate(wanted: Wanted, wait_seconds: float = WAIT_SECONDS,
                       poll_seconds: float = POLL_SECONDS,
                       report: Callable[[str], None] = say) -> None:
    """The certificate and its public part as `wanted` says (the vault must answer)."""
    current = show_certificate(wanted.vault, wanted.name)
    made = make_certificate(wanted, current, report)
    previous = (current or {}).get("id") if made else None
    certificate = issued(wanted.vault, wanted.name, previous, wait_seconds, poll_seconds)
    publish_public_part(wanted.vault, wanted.public_secret, certificate["cer"], report)


def wanted_from(args: argparse.Namespace) -> Wanted:
    """The arguments, checked (one-line errors, before any call to Azure)."""
    if not VAULT_NAME.fullmatch(args.vault):
        raise CliError(f"--vault {args.vault!r}: not a Key Vault name (3-24 letters, digits,"
                       " hyphens; a letter first)")
    for option, value in (("--name", args.name), ("--public-secret", args.public_secret)):
        if not OBJECT_NAME.fullmatch(value):
            raise CliError(f"{option} {value!r}: not a Key Vault object name (1-127 letters,"
                           " digits, hyphens)")
    if args.name == args.public_secret:
        raise CliError("--public-secret must differ from --name (the certificate's own secret)")
    parts = [part.strip() for part in args.subject.split(",")]
    if not all(re.fullmatch(r"[A-Za-z][A-Za-z0-9.]*=.+", part) for part in parts):
        raise CliError(f"--subject {args.subject!r}: not an X.500 name such as 'CN=api,O=Contoso'")
    if not 1 <= args.validity_months <= MAX_VALIDITY_MONTHS:
        raise CliError(f"--validity-months {args.validity_months}: from 1 to"
                       f" {MAX_VALIDITY_MONTHS}")
    if args.wait_seconds <= 0:
        raise CliError("--wait-seconds must be > 0")
    if not 0 < args.poll_seconds <= args.wait_seconds:
        raise CliError("--poll-seconds must be > 0 and at most --wait-seconds")
    pfx = read_pfx(args.pfx, os.environ.get(PASSWORD_ENV)) if args.pfx else None
    return Wanted(args.vault, args.name, args.public_secret, args.subject, args.validity_months,
                  pfx)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise CliError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m tools.delivery.key_vault",
                     description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    ensure = commands.add_parser("ensure-certificate",
                                 help="the client certificate and its public part")
    ensure.add_argument("--vault", required=True, help="the Key Vault's name")
    ensure.add_argument("--name", required=True, help="the certificate's name")
    ensure.add_argument("--public-secret", required=True,
                        help="the secret that gets the certificate's public part (base64 DER)")
    ensure.add_argument("--subject", required=True, help="e.g. 'CN=api,O=Contoso,C=AU'")
    ensure.add_argument("--validity-months", type=int, required=True)
    ensure.add_argument("--pfx", type=Path,
                        help=f"import this PFX (password in ${PASSWORD_ENV}) instead of issuing")
    ensure.add_argument("--runner-ip",
                        help="open a private vault to this address (or 'auto') for the calls")
    ensure.add_argument("--wait-seconds", type=float, default=WAIT_SECONDS,
                        help="for the firewall's new rule and for the certificate's issue, each")
    ensure.add_argument("--poll-seconds", type=float, default=POLL_SECONDS,
                        help="how often to ask meanwhile")
    closing = commands.add_parser("close", help="remove the rules a killed process left")
    closing.add_argument("--record", type=Path,
                         help=f"the opening record (default: ${RECORD_ENV}, else {DEFAULT_RECORD})")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "close":
        return close(args.record or record_path())
    wanted = wanted_from(args)
    interrupt_on_sigterm()  # a cancelled job: the rule is still removed
    with opened_vault(wanted.vault, lambda: runner_ip(args.runner_ip), record_path(),
                      wait_seconds=args.wait_seconds, poll_seconds=args.poll_seconds):
        ensure_certificate(wanted, args.wait_seconds, args.poll_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
