"""tools.delivery.key_vault against the rehearsal's fake az (tests/github/fakes/bin/az, Key Vault
modelled in fakes/key_vault.py), run as Terraform's local-exec runs it: a process of its own,
from the project root, logged in as dev's deploy identity of the synthesized bootstrap stack,
the runner's public address answered by the rehearsal's gateway (/ip, RUNNER_IP)."""

from __future__ import annotations

import base64
import datetime
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from tests.github.bootstrap_world import client_id, resolve
from tests.github.fake_azure import RUNNER_IP, Gateway
from tests.waiting import wait_until
from tools.delivery import key_vault, release
from tools.process_groups import signal_group

ROOT = Path(__file__).resolve().parents[2]
FAKES = ROOT / "tests" / "github" / "fakes"
VAULT = "kv-todo-dev"
CERTIFICATE = "apim-client-certificate"
PUBLIC = "apim-client-certificate-public"
SUBJECT = "CN=cloudauth-apim.azure-api.net,O=Contoso,C=AU"
DEPLOY_DEV = "todo-api-github-deploy-dev"
CHANGES = {"add", "remove", "create", "import", "set"}  # az verbs that change the vault


@pytest.fixture(scope="module")
def world(synthesized_bootstrap_file) -> dict:
    return resolve(json.loads(synthesized_bootstrap_file.read_text()))


@pytest.fixture(scope="module")
def ip_url():
    """The runner's "what is my IP" service, as the rehearsal serves it."""
    gateway = Gateway("todo", "key")
    yield f"{gateway.url}/ip"
    gateway.close()


class Azure:
    """The fake Azure of one test: dev's vault (its firewall as `vault` says), the deploy
    identity logged in, the opening record in the same folder."""

    def __init__(self, folder: Path, world: dict, ip_url: str, **vault) -> None:
        self.folder = folder
        (folder / "scenario.json").write_text(json.dumps({
            "web_apps": [], "stacks": {},
            "key_vault": {"name": VAULT, "certificate": CERTIFICATE, **vault}}))
        (folder / "world.json").write_text(json.dumps(world))
        (folder / "azure.json").write_text(json.dumps({
            "logged_in": client_id(DEPLOY_DEV), "identity": DEPLOY_DEV,
            "subscription": world["subscriptions"]["dev"]}))
        self.record = folder / "openings.json"
        self.env = {**os.environ, "PATH": f"{FAKES / 'bin'}{os.pathsep}{os.environ['PATH']}",
                    "REHEARSAL_DIR": str(folder), "REHEARSAL_WORLD": str(folder / "world.json"),
                    "RUNNER_IP_URL": ip_url, key_vault.RECORD_ENV: str(self.record)}

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "tools.delivery.key_vault", *args]

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(*args), cwd=ROOT, env={**self.env, **env},
                              capture_output=True, text=True, timeout=120, check=False)

    def ensure(self, *extra: str, subject: str = SUBJECT, months: str = "12", **env: str
               ) -> subprocess.CompletedProcess:
        return self.run(*ensure_args(subject, months), *extra, **env)

    def calls(self) -> list[dict]:
        path = self.folder / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def verbs(self) -> list[str]:
        """Each az call's command words ("keyvault network-rule add"), in order."""
        return [" ".join(a for a in c["args"][:3] if not a.startswith("-"))
                for c in self.calls() if c["tool"] == "az"]

    def vault(self) -> dict:
        return json.loads((self.folder / "azure.json").read_text())["key_vaults"][VAULT]

    def rules(self) -> list[str]:
        """The vault's IP rules ([] before the fake az first met the vault)."""
        state = json.loads((self.folder / "azure.json").read_text())
        return state.get("key_vaults", {}).get(VAULT, {}).get("ip_rules", [])

    def versions(self) -> list[dict]:
        return self.vault()["certificates"][CERTIFICATE]["versions"]

    def public_part(self) -> dict:
        return self.vault()["secrets"][PUBLIC][-1]


def ensure_args(subject: str = SUBJECT, months: str = "12") -> list[str]:
    """The command line stacks/key_vault.py gives Terraform's local-exec."""
    return ["ensure-certificate", "--vault", VAULT, "--name", CERTIFICATE, "--public-secret",
            PUBLIC, "--subject", subject, "--validity-months", months, "--runner-ip", "auto"]


@pytest.fixture
def azure(tmp_path, world, ip_url):
    def make(**vault) -> Azure:
        folder = tmp_path / f"azure-{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        return Azure(folder, world, ip_url, **vault)
    return make


def certificate(cer: str) -> x509.Certificate:
    return x509.load_der_x509_certificate(base64.b64decode(cer))


# -- a private vault --------------------------------------------------------------------------


def test_a_private_vault_is_opened_the_certificate_made_and_the_vault_closed(azure):
    private = azure(default_action="Deny")
    result = private.ensure()
    assert result.returncode == 0, result.stderr
    assert private.verbs() == [
        "keyvault show", "keyvault network-rule add", "keyvault certificate list",
        "keyvault certificate show", "keyvault certificate create", "keyvault certificate show",
        "keyvault secret show", "keyvault secret set", "keyvault network-rule remove"]
    [added] = [c for c in private.calls() if c["args"][:3] == ["keyvault", "network-rule", "add"]]
    assert added["ip_rules"] == [f"{RUNNER_IP}/32"]
    assert private.rules() == [] and not private.record.exists()
    [version] = private.versions()
    public = private.public_part()
    assert (public["value"], public["content_type"]) == (version["cer"], "application/pkix-cert")
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == [
        f"Key Vault {VAULT}", f"certificate {CERTIFICATE}", f"secret {PUBLIC}",
        f"Key Vault {VAULT}"]
    assert "created" in result.stdout and "closed" in result.stdout.splitlines()[-1]


def test_the_certificate_is_the_policy_the_stack_declared(azure):
    """Self-issued, the subject, RSA 2048, clientAuth, key usages, renewal that keeps the key."""
    private = azure(default_action="Deny")
    assert private.ensure().returncode == 0
    policy = private.vault()["certificates"][CERTIFICATE]["policy"]
    assert policy == key_vault.certificate_policy(SUBJECT, 12)
    assert policy["lifetimeActions"] == [{"trigger": {"daysBeforeExpiry": 30},
                                          "action": {"actionType": "AutoRenew"}}]
    issued = certificate(private.versions()[0]["cer"])
    assert issued.subject.rfc4514_string() == "C=AU,O=Contoso,CN=cloudauth-apim.azure-api.net"
    assert issued.public_key().key_size == 2048
    assert list(issued.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        x509.ExtendedKeyUsageOID.CLIENT_AUTH]


def test_the_tool_waits_for_the_new_rule_and_for_the_issue(azure):
    """Key Vault applies a rule after a moment, and a certificate is issued after a moment."""
    slow = azure(default_action="Deny", rule_delay_calls=1, pending_shows=1)
    result = slow.ensure("--poll-seconds", "0.2")
    assert result.returncode == 0, result.stderr
    assert slow.verbs().count("keyvault certificate list") == 2  # refused once, then admitted
    shows = [c for c in slow.calls() if c["args"][:3] == ["keyvault", "certificate", "show"]]
    assert [c.get("issued") for c in shows if "refused" not in c] == [False, True]
    assert slow.public_part()["value"] == slow.versions()[0]["cer"]


def test_a_rule_that_never_admits_the_runner_fails_in_one_line_and_is_removed(azure):
    private = azure(default_action="Deny")
    result = private.ensure("--runner-ip", "198.51.100.9", "--wait-seconds", "2",
                            "--poll-seconds", "0.5")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        (f"error: Key Vault {VAULT} answering 198.51.100.9 through its firewall did not happen"
         " within 2 s")]
    assert private.verbs()[-1] == "keyvault network-rule remove"
    assert private.rules() == [] and not private.record.exists()
    assert "keyvault certificate create" not in private.verbs()


def test_a_cancelled_run_sigterm_still_closes_the_vault(azure):
    hanging = azure(default_action="Deny", hangs="certificate create")
    with subprocess.Popen(hanging.command(*ensure_args()), cwd=ROOT, env=hanging.env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as tool:
        try:
            wait_until(lambda: any(c.get("hanging") for c in hanging.calls()),
                       "the tool waiting for the certificate's issue")
            tool.send_signal(signal.SIGTERM)
            tool.communicate(timeout=60)
        finally:
            signal_group(tool.pid, signal.SIGKILL)
    assert tool.returncode != 0
    assert hanging.verbs()[-1] == "keyvault network-rule remove"
    assert hanging.rules() == [] and not hanging.record.exists()


@pytest.mark.parametrize("killed_in", ["network-rule add", "certificate create"])
def test_close_removes_the_rule_of_a_run_killed_mid_way(azure, killed_in):
    """SIGKILL (a runner gone) leaves the rule and the record; the always() step's `close`
    removes the rule and the record."""
    hanging = azure(default_action="Deny", hangs=killed_in)
    with subprocess.Popen(hanging.command(*ensure_args()), cwd=ROOT, env=hanging.env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          start_new_session=True) as tool:
        try:
            wait_until(lambda: hanging.rules() and any(
                c.get("hanging") for c in hanging.calls()),
                f"the rule in place and the tool hanging in {killed_in}",
                details=lambda: "\n".join(hanging.verbs()))
        finally:
            signal_group(tool.pid, signal.SIGKILL)  # the tool and the az it waits for
    assert hanging.rules() == [f"{RUNNER_IP}/32"]
    assert json.loads(hanging.record.read_text()) == [{"vault": VAULT, "ip": RUNNER_IP}]
    closed = hanging.run("close")
    assert closed.returncode == 0, closed.stderr
    assert closed.stdout == f"Key Vault {VAULT}: closed to {RUNNER_IP}\n"
    assert hanging.rules() == [] and not hanging.record.exists()


def test_close_without_a_record_has_nothing_to_close(azure):
    nothing = azure(default_action="Deny")
    result = nothing.run("close", "--record", str(nothing.folder / "none.json"))
    assert result.returncode == 0 and result.stdout.startswith("nothing to close")
    assert nothing.calls() == []


def test_close_accepts_a_rule_already_gone(azure):
    gone = azure(default_action="Deny")
    gone.record.write_text(json.dumps([{"vault": VAULT, "ip": RUNNER_IP}]))
    result = gone.run("close")
    assert result.returncode == 0, result.stderr
    assert gone.verbs() == ["keyvault network-rule remove"] and not gone.record.exists()


# -- a public vault, and a vault that already holds the certificate -----------------------------


def test_a_public_vault_gets_no_rule(azure):
    public = azure()  # the scenario's default: default Allow
    result = public.ensure()
    assert result.returncode == 0, result.stderr
    assert not [v for v in public.verbs() if "network-rule" in v]
    assert not public.record.exists() and len(public.versions()) == 1


def test_an_identical_certificate_is_left_alone(azure):
    vault = azure(default_action="Deny")
    assert vault.ensure().returncode == 0
    before, calls = vault.vault(), len(vault.verbs())
    again = vault.ensure()
    assert again.returncode == 0, again.stderr
    assert vault.vault() == before  # no version, no secret version, no rule left
    assert not {"keyvault certificate create", "keyvault secret set"} & set(vault.verbs()[calls:])
    assert f"certificate {CERTIFICATE}: unchanged" in again.stdout
    assert f"secret {PUBLIC}: unchanged" in again.stdout


def test_a_changed_subject_makes_a_new_version_with_the_same_key(azure):
    vault = azure(default_action="Deny")
    assert vault.ensure().returncode == 0
    renewed = vault.ensure(subject="CN=gateway.contoso.example,O=Contoso,C=AU", months="6")
    assert renewed.returncode == 0, renewed.stderr
    first, second = vault.versions()
    assert "new version (subject" in renewed.stdout and "validity 12 -> 6 months" in renewed.stdout
    new = certificate(second["cer"])
    assert new.subject.rfc4514_string() == "C=AU,O=Contoso,CN=gateway.contoso.example"
    assert new.public_key() == certificate(first["cer"]).public_key()  # reuseKey
    assert vault.public_part()["value"] == second["cer"]


# -- an imported PFX --------------------------------------------------------------------------


def make_pfx(folder: Path, password: str, name: str = "apim-client.pfx") -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "imported client")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=30))
            .sign(key, hashes.SHA256()))
    path = folder / name
    path.write_bytes(pkcs12.serialize_key_and_certificates(
        None, key, cert, None, serialization.BestAvailableEncryption(password.encode())))
    return path


def test_a_pfx_is_imported_once_and_its_password_never_on_a_command_line(azure, tmp_path):
    password = "pfx-password-4242"
    pfx = make_pfx(tmp_path, password)
    vault = azure(default_action="Deny")
    first = vault.ensure("--pfx", str(pfx), CLIENT_CERTIFICATE_PASSWORD=password)
    assert first.returncode == 0, first.stderr
    assert "imported" in first.stdout
    [version] = vault.versions()
    assert vault.vault()["certificates"][CERTIFICATE]["policy"]["issuerParameters"] == {
        "name": "Unknown"}
    der = pkcs12.load_key_and_certificates(pfx.read_bytes(), password.encode())[1].public_bytes(
        serialization.Encoding.DER)
    assert vault.public_part()["value"] == version["cer"] == base64.b64encode(der).decode()
    again = vault.ensure("--pfx", str(pfx), CLIENT_CERTIFICATE_PASSWORD=password)
    assert again.returncode == 0 and f"certificate {CERTIFICATE}: unchanged" in again.stdout
    assert len(vault.versions()) == 1
    assert password not in (vault.folder / "calls.jsonl").read_text()


# -- bad input: one line, nothing changed -----------------------------------------------------


@pytest.fixture
def bad_inputs(tmp_path) -> dict[str, tuple[list[str], dict[str, str], str]]:
    pfx = make_pfx(tmp_path, "right")
    (tmp_path / "notes.txt").write_text("not a certificate")
    return {
        "missing pfx": (["--pfx", str(tmp_path / "absent.pfx")],
                        {"CLIENT_CERTIFICATE_PASSWORD": "x"}, "no such file"),
        "no password": (["--pfx", str(pfx)], {"CLIENT_CERTIFICATE_PASSWORD": ""},
                        "its password is missing"),
        "wrong password": (["--pfx", str(pfx)], {"CLIENT_CERTIFICATE_PASSWORD": "wrong"},
                           "not a PFX, or $CLIENT_CERTIFICATE_PASSWORD is not its password"),
        "not a certificate": (["--pfx", str(tmp_path / "notes.txt")],
                              {"CLIENT_CERTIFICATE_PASSWORD": "x"}, "not a PFX"),
        "zero months": (["--validity-months", "0"], {}, "--validity-months 0: from 1 to 120"),
        "too many months": (["--validity-months", "121"], {}, "from 1 to 120"),
        "months not a number": (["--validity-months", "twelve"], {}, "invalid int value"),
        "subject": (["--subject", "cloudauth-apim"], {}, "not an X.500 name"),
    }


CASES = ["missing pfx", "no password", "wrong password", "not a certificate", "zero months",
         "too many months", "months not a number", "subject"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_and_calls_nothing(azure, bad_inputs, case):
    extra, env, message = bad_inputs[case]
    vault = azure(default_action="Deny")
    result = vault.ensure(*extra, **env)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("error: ")
    assert message in result.stderr and "Traceback" not in result.stderr
    assert vault.calls() == []  # not even a lookup
    assert not vault.record.exists()


# -- the release reads the certificate through the same opening ------------------------------


def test_the_release_reads_the_certificate_through_an_opening(azure, monkeypatch):
    vault = azure(default_action="Deny")
    assert vault.ensure().returncode == 0
    for name in ("PATH", "REHEARSAL_DIR", "REHEARSAL_WORLD", "RUNNER_IP_URL"):
        monkeypatch.setenv(name, vault.env[name])
    pfx = release.key_vault_certificate(VAULT, CERTIFICATE, RUNNER_IP, vault.record)
    assert pfx == vault.versions()[0]["pfx"]
    reads = vault.verbs()[vault.verbs().index("keyvault network-rule remove") + 1:]
    assert reads == ["keyvault show", "keyvault network-rule add", "keyvault certificate list",
                     "keyvault secret show", "keyvault network-rule remove"]
    assert vault.rules() == [] and not vault.record.exists()


# -- run by Terraform's local-exec at apply ---------------------------------------------------

TERRAFORM = FAKES / "terraform" / "terraform"
ENV_SCOPED = "env-scoped:"  # tests.github.bootstrap_world.ENV_SCOPED: the job's own variables


def stack_with_certificate_step() -> dict:
    """A stack as stacks/key_vault.py writes it: the vault (private) and the terraform_data
    whose local-exec runs the tool from the project root with the vault's name."""
    command = (".venv/bin/python -m tools.delivery.key_vault " + " ".join(
        f"'{a}'" if " " in a or "," in a else a for a in ensure_args())).replace(
        f"--vault {VAULT}", '--vault "$KEY_VAULT_NAME"')
    return {
        "provider": {"azurerm": [{"features": [{}], "resource_provider_registrations": "none"}]},
        "resource": {
            "azurerm_resource_group": {"group": {"name": "rg-todo-dev", "location": "westeurope"}},
            "azurerm_key_vault": {"vault": {
                "name": VAULT, "resource_group_name": "${azurerm_resource_group.group.name}",
                "network_acls": {"bypass": "AzureServices", "default_action": "Deny",
                                 "ip_rules": []}}},
            "terraform_data": {"certificate": {"provisioner": [{"local-exec": {
                "command": command, "working_dir": "../../..",
                "environment": {"KEY_VAULT_NAME": "${azurerm_key_vault.vault.name}"}}}]}},
        },
    }


def test_terraform_apply_runs_the_tool_from_the_project_root(azure, tmp_path, world):
    """The fake terraform runs the local-exec as Terraform does (the deploy job's identity and
    environment, /bin/sh -c, working_dir from the stack folder) and the tool opens, fills and
    closes the private vault."""
    vault = azure()
    project = tmp_path / "project"
    stack = project / "cdktf.out" / "stacks" / "todo-api-dev"
    stack.mkdir(parents=True)
    for name in (".venv", "tools"):
        (project / name).symlink_to(ROOT / name)
    (stack / "cdk.tf.json").write_text(json.dumps(stack_with_certificate_step()))
    (stack / "backend_override.tf.json").write_text("{}")
    scenario = json.loads((vault.folder / "scenario.json").read_text())
    scenario["stacks"] = {"todo-api-dev": {"plan": {"resource_changes": []}, "outputs": {}}}
    scenario["key_vault"]["name"] = "kv-elsewhere"  # VAULT is the stack's alone: Deny
    (vault.folder / "scenario.json").write_text(json.dumps(scenario))
    (vault.folder / "event.json").write_text("{}")
    env = {**vault.env, "GITHUB_EVENT_NAME": "push", "GITHUB_REF": "refs/heads/main",
           "GITHUB_REPOSITORY": "contoso/todo-api",
           "GITHUB_EVENT_PATH": str(vault.folder / "event.json"),
           "REHEARSAL_JOB_ENVIRONMENT": "dev", "ARM_CLIENT_ID": ENV_SCOPED + "AZURE_CLIENT_ID",
           "ARM_SUBSCRIPTION_ID": ENV_SCOPED + "AZURE_SUBSCRIPTION_ID"}

    def terraform(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(TERRAFORM), *args], cwd=stack, env=env,
                              capture_output=True, text=True, timeout=180, check=False)

    state = world["subscriptions"]["state"]
    init = terraform("init", f"-backend-config=subscription_id={state}",
                     "-backend-config=resource_group_name=todo-api-tfstate",
                     "-backend-config=storage_account_name=todoapitfstate42",
                     "-backend-config=container_name=tfstate-dev",
                     "-backend-config=key=todo-api-dev.tfstate")
    assert init.returncode == 0, init.stderr
    assert terraform("plan", "-input=false", "-out=tfplan").returncode == 0
    applied = terraform("apply", "-input=false", "tfplan")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert (f"terraform_data.certificate (local-exec): certificate {CERTIFICATE}: created"
            in applied.stdout)
    [record] = [c for c in vault.calls() if c["tool"] == "terraform" and c["args"][0] == "apply"]
    assert record["provisioned"] == [{"address": "terraform_data.certificate", "exit": 0}]
    assert vault.verbs()[1] == "keyvault network-rule add" and vault.rules() == []
    assert vault.public_part()["value"] == vault.versions()[0]["cer"]
