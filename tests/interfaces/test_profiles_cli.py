"""``permit-gateway profiles ...`` and ``keys ...`` through typer's CliRunner, on files in a temporary folder."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from typer.testing import CliRunner

from gateway.as4 import Suite
from gateway.clock import SystemClock
from gateway.interfaces.cli import app
from gateway.profiles import DevPki, generate_dev_pki
from gateway.profiles.editor import Precondition, ProfileEditor
from gateway.profiles.keystore import Keystore
from gateway.profiles.model import profile_json_schema
from tests.profiles.conftest import AUTHORITIES
from tests.profiles.helpers import default_structlog, profile_text

PASSPHRASE = "cli-test-passphrase"
CH = profile_text("ch-swissmedic", "ch-swissmedic.crt.pem")
BE = profile_text("be-famhp", "be-famhp.crt.pem", country="BE")


@pytest.fixture(autouse=True)
def _default_logging() -> Iterator[None]:
    yield from default_structlog()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return generate_dev_pki(tmp_path_factory.mktemp("pki"), AUTHORITIES, now=datetime.now(UTC))


@dataclass
class Cli:
    tmp: Path
    config: Path
    folder: Path
    pki: DevPki
    runner: CliRunner

    def __call__(self, *args: str) -> tuple[int, str]:
        result = self.runner.invoke(app, [*args, "--config", str(self.config)], env={"KS_PASS": PASSPHRASE})
        return result.exit_code, result.output

    def editor(self) -> ProfileEditor:
        return ProfileEditor(
            self.folder, certificates_dir=self.pki.folder, data_dir=self.tmp / "var", clock=SystemClock()
        )


@pytest.fixture
def cli(tmp_path: Path, pki: DevPki, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.setattr("gateway.profiles.keystore.GENERATED_KEY_BITS", 2048)
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "ch-swissmedic.yaml").write_text(CH)
    (folder / "be-famhp.yaml").write_text(BE)
    config = tmp_path / "gateway.toml"
    config.write_text(
        f"""data_dir = "var"
[identity]
party_id = "DE-BFARM"
country = "DE"
authority_name = "BfArM"
[profiles]
folder = "profiles"
certificates = "{pki.folder}"
[keys]
keystore = "keystore"
passphrase_env = "KS_PASS"
"""
    )
    return Cli(tmp_path, config, folder, pki, CliRunner())


def test_check_ok(cli: Cli) -> None:
    code, output = cli("profiles", "check")

    assert code == 0
    assert f"{cli.folder}: 2 partner profile(s) OK" in output


def test_profile_commands_ask_for_the_passphrase_only_for_an_encrypted_tls_key(cli: Cli) -> None:
    """An operator's shell seldom has the service's passphrase variable: without a TLS client key to open, the
    profile commands do not need it (they stopped with 'not set', and 'profiles check' with a traceback)."""
    for args in (("profiles", "check"), ("profiles", "show", "--effective", "ch-swissmedic")):
        result = cli.runner.invoke(app, [*args, "--config", str(cli.config)], env={"KS_PASS": ""})
        assert result.exit_code == 0, result.output


def test_check_prints_every_error_and_exits_1(cli: Cli) -> None:
    (cli.folder / "ch-swissmedic.yaml").write_text(CH.replace("country: CH", "country: Swiss"))
    (cli.folder / "be-famhp.yaml").write_text(BE.replace("party_id: BE-FAMHP\n", ""))

    code, output = cli("profiles", "check")

    assert code == 1
    assert f"error {cli.folder / 'be-famhp.yaml'}:2:1 party_id: required key is missing" in output
    assert f"error {cli.folder / 'ch-swissmedic.yaml'}:4:1 country: got 'Swiss'" in output


def test_check_refuses_a_time_to_live_the_gateway_would_refuse(cli: Cli) -> None:
    """The check is what a reload says: a time to live not below [inbound]'s duplicate window is an error."""
    (cli.folder / "ch-swissmedic.yaml").write_text(CH + "reception_awareness:\n  time_to_live_hours: 800\n")

    code, output = cli("profiles", "check")

    assert code == 1
    assert "time_to_live_hours = 800 is not below [inbound].duplicate_window_hours = 720" in output


def test_check_warns_of_a_subject_pattern_whose_dots_match_any_character(cli: Cli) -> None:
    """Under a trust anchor the subject is a regular expression: 'as4.ch' also matches 'as4Xch'."""
    anchored = CH.replace(
        "  signing_certificate: ch-swissmedic.crt.pem\n",
        "  trust_anchor: ca.crt.pem\n  subject: 'C=CH,O=Swissmedic,CN=as4.ch.example'\n"
        "  encryption_certificate: ch-swissmedic.crt.pem\n",
    )
    (cli.folder / "ch-swissmedic.yaml").write_text(anchored)

    code, output = cli("profiles", "check")

    assert code == 0
    assert "security.subject 'C=CH,O=Swissmedic,CN=as4.ch.example' is a regular expression" in output
    assert r"write subject: 'C=CH,O=Swissmedic,CN=as4\.ch\.example' for literal dots" in output


def test_show_and_show_effective(cli: Cli) -> None:
    code, output = cli("profiles", "show", "ch-swissmedic")
    assert code == 0 and output == CH

    code, output = cli("profiles", "show", "--effective", "ch-swissmedic")

    assert code == 0
    assert output.startswith(f"# effective profile 'ch-swissmedic' from {cli.folder / 'ch-swissmedic.yaml'}\n")
    assert f"signing_certificate: {cli.pki.folder / 'ch-swissmedic.crt.pem'}" in output
    assert "  retries: 5\n" in output and "transport: push\n" in output
    code, output = cli("profiles", "show", "--effective", "xx-none")
    assert code == 1 and "no partner profile with id 'xx-none'" in output


def test_show_prints_long_lines_whole(cli: Cli) -> None:
    """A profile shown is the file as written, and the effective one's header one comment line: rich broke lines
    longer than its width (132 columns here), so a long comment, URL or path came out as two lines, the second
    no longer a comment, and a profile saved from `profiles show` was not the one shown."""
    note = "# " + "the partner's operations desk asked for this endpoint in its letter of 2026-11-02; " * 3 + "\n"
    text = note + CH
    (cli.folder / "ch-swissmedic.yaml").write_text(text)
    deep = cli.folder.parent / ("a-long-folder-name-" * 8) / "profiles"
    deep.parent.mkdir()
    cli.folder.rename(deep)
    cli.config.write_text(cli.config.read_text().replace('folder = "profiles"', f'folder = "{deep}"'))

    code, output = cli("profiles", "show", "ch-swissmedic")
    assert code == 0 and output == text

    code, output = cli("profiles", "show", "--effective", "ch-swissmedic")
    assert code == 0
    assert output.startswith(f"# effective profile 'ch-swissmedic' from {deep / 'ch-swissmedic.yaml'}\n"), output


def test_schema(cli: Cli, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["profiles", "schema"])
    assert json.loads(result.output) == profile_json_schema()

    result = CliRunner().invoke(app, ["profiles", "schema", "-o", str(tmp_path / "s.json")])
    assert result.exit_code == 0
    assert json.loads((tmp_path / "s.json").read_text()) == profile_json_schema()


def test_history_diff_and_rollback(cli: Cli) -> None:
    editor = cli.editor()
    editor.put("ch-swissmedic", CH.replace("country: CH", "country: LI"), condition=Precondition(), actor="t")

    code, output = cli("profiles", "history", "ch-swissmedic")
    assert code == 0
    assert "found" in output and "put" in output and "current" in output

    code, output = cli("profiles", "diff", "ch-swissmedic")
    assert code == 0 and "-country: CH\n+country: LI\n" in output

    code, output = cli("profiles", "rollback", "ch-swissmedic")
    assert code == 0, output
    assert "rollback:1 written as version 3" in output
    assert (cli.folder / "ch-swissmedic.yaml").read_text() == CH
    [*_, last] = editor.audit.entries("ch-swissmedic")
    assert last["action"] == "rollback:1" and last["actor"].startswith("cli")

    code, output = cli("profiles", "diff", "ch-swissmedic", "2")
    assert "-country: LI\n+country: CH\n" in output


def test_rollback_to_an_invalid_version_is_refused(cli: Cli) -> None:
    editor = cli.editor()
    (cli.pki.folder / "tmp.crt.pem").write_bytes((cli.pki.folder / "ch-swissmedic.crt.pem").read_bytes())
    try:
        editor.put(
            "ch-swissmedic",
            CH.replace("ch-swissmedic.crt.pem", "tmp.crt.pem"),
            condition=Precondition(),
            actor="t",
        )
        editor.put("ch-swissmedic", CH, condition=Precondition(), actor="t")
    finally:
        (cli.pki.folder / "tmp.crt.pem").unlink()

    code, output = cli("profiles", "rollback", "ch-swissmedic", "2")

    assert code == 1
    assert "security.signing_certificate: got 'tmp.crt.pem', but" in output
    assert (cli.folder / "ch-swissmedic.yaml").read_text() == CH


def test_history_of_an_unknown_partner(cli: Cli) -> None:
    code, output = cli("profiles", "history", "xx-none")
    assert code == 1 and "no history of it" in output


def test_keys_generate_list_rollover(cli: Cli) -> None:
    code, output = cli("keys", "generate")
    assert code == 0, output
    assert "(current): C=DE,O=BfArM,CN=DE-BFARM" in output and ".csr.pem" in output
    code, output = cli("keys", "generate")
    assert code == 0 and "(next)" in output

    code, output = cli("keys", "list")
    assert code == 0
    assert "current" in output and "next" in output and "CN=DE-BFARM" in output

    before = Keystore.open(cli.tmp / "keystore", PASSPHRASE.encode())
    code, output = cli("keys", "rollover")
    assert code == 0 and "rolled over" in output
    after = Keystore.open(cli.tmp / "keystore", PASSPHRASE.encode())
    assert before.next is not None and after.signing.certificate == before.next.certificate
    assert [k.certificate for k in after.decryption] == [before.next.certificate, before.signing.certificate]

    code, output = cli("keys", "rollover")
    assert code == 1 and "has no next key" in output


def test_keys_import(cli: Cli) -> None:
    files = cli.pki.files_for("DE-BFARM")

    code, output = cli("keys", "import", "--key", str(files.key), "--certificate", str(files.certificate))

    assert code == 0, output
    assert "imported key" in output and "(current)" in output


def test_keys_need_a_keystore_and_a_passphrase(cli: Cli) -> None:
    result = cli.runner.invoke(app, ["keys", "generate", "--config", str(cli.config)], env={"KS_PASS": None})
    assert result.exit_code == 1
    assert "'KS_PASS', which is not set" in result.output


def test_ping_reports_a_refused_connection(cli: Cli) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (cli.folder / "ch-swissmedic.yaml").write_text(
        CH.replace("https://as4.ch-swissmedic.example/as4", f"http://127.0.0.1:{port}/as4")
    )
    assert cli("keys", "generate")[0] == 0

    code, output = cli("profiles", "ping", "ch-swissmedic", "--timeout", "5")

    assert code == 1
    assert f"FAILED ch-swissmedic at http://127.0.0.1:{port}/as4: connect" in output
    assert f"cannot connect to 127.0.0.1:{port}" in output


def test_keys_per_suite_generate_list_rollover_import(cli: Cli) -> None:
    assert cli("keys", "generate")[0] == 0
    code, output = cli("keys", "generate", "--suite", "edelivery-as4-2.0")
    assert code == 0, output
    assert "(current): C=DE,O=BfArM,CN=DE-BFARM" in output and "suite edelivery-as4-2.0" in output
    assert cli("keys", "generate", "--suite", "edelivery-as4-2.0")[0] == 0

    code, output = cli("keys", "list")
    assert code == 0
    rows = [line for line in output.splitlines() if "2.0" in line]
    assert len(rows) == 4  # two keys, each a signing and an agreement certificate
    assert sum("agreement" in row for row in rows) == 2 and sum("next" in row for row in rows) == 2

    code, output = cli("keys", "rollover", "--suite", "edelivery-as4-2.0")
    assert code == 0 and "rolled over edelivery-as4-2.0" in output and "decrypting with 2 key(s)" in output
    keystore = Keystore.open(cli.tmp / "keystore", PASSPHRASE.encode())
    assert keystore.next is None and len(keystore.decryption_for(Suite.EDELIVERY_2_0)) == 2
    code, output = cli("keys", "rollover")
    assert code == 1 and "has no next key for suite edelivery-as4-1.15" in output
    code, output = cli("keys", "generate", "--suite", "edelivery-as4-3")
    assert code != 0 and "edelivery-as4-2.0-ecc" in output

    files = cli.pki.files_for("DE-BFARM").suites[Suite.EDELIVERY_2_0_ECC]
    code, output = cli(
        "keys",
        "import",
        "--suite",
        "edelivery-as4-2.0-ecc",
        "--key",
        str(files.key),
        "--certificate",
        str(files.certificate),
        "--agreement-key",
        str(files.agreement_key),
        "--agreement-certificate",
        str(files.agreement_certificate),
    )
    assert code == 0, output
    assert "imported key" in output and "suite edelivery-as4-2.0-ecc" in output


@contextmanager
def answering(status: int, body: str) -> Iterator[str]:
    """A partner endpoint on 127.0.0.1, in its own thread, that answers every POST with ``status`` and ``body``."""

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=status, text=body)

    loop = asyncio.new_event_loop()
    application = web.Application()
    application.router.add_post("/as4", handle)
    runner = web.AppRunner(application)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/as4"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.run_until_complete(runner.cleanup())
        loop.close()


@pytest.mark.parametrize(
    "body", ["upstream [/proxy] timed out", "[red]OK[/red] [link=https://evil.example]details[/link]"]
)
def test_ping_shows_the_partners_answer_as_it_is_never_as_markup(cli: Cli, body: str) -> None:
    assert cli("keys", "generate")[0] == 0
    with answering(502, body) as endpoint:
        (cli.folder / "ch-swissmedic.yaml").write_text(
            CH.replace("https://as4.ch-swissmedic.example/as4", endpoint)
        )
        code, output = cli("profiles", "ping", "ch-swissmedic", "--timeout", "5")

    assert code == 1, output
    assert f"FAILED ch-swissmedic at {endpoint}: http (HTTP 502" in output
    assert f"HTTP 502 Bad Gateway: {body}" in output


def test_schema_into_a_missing_folder_names_the_path(cli: Cli) -> None:
    target = cli.tmp / "nonexistent" / "x.json"
    result = cli.runner.invoke(app, ["profiles", "schema", "-o", str(target)])

    assert result.exit_code == 1
    assert f"cannot write {target}: No such file or directory" in result.output
    assert "Traceback" not in result.output


def test_check_names_the_first_byte_of_a_file_that_is_not_utf8_and_how_to_resave_it(cli: Cli) -> None:
    """A profile saved in Latin-1 was reported with Python's bare decode error ('invalid continuation byte'),
    which says neither where nor what to do."""
    path = cli.folder / "ch-swissmedic.yaml"
    path.write_bytes(CH.replace("country: CH", "country: CH  # Zürich", 1).encode("latin-1"))

    code, output = cli("profiles", "check")

    line = CH.splitlines().index(next(x for x in CH.splitlines() if x.startswith("country: CH"))) + 1
    flat = " ".join(output.split())
    assert code == 1
    assert f"{path}:{line}:" in flat
    assert "(0xfc) is not UTF-8: partner profiles are UTF-8 YAML" in flat
    assert f"iconv -f latin1 -t utf-8 {path}" in flat
    assert "invalid continuation byte" not in flat
