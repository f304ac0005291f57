"""Hot reload: valid changes swap in whole, invalid ones are refused and reported, lookups never break."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from structlog.testing import capture_logs

from gateway.clock import FixedClock
from gateway.errors import ProfileError
from gateway.profiles import DevPki
from gateway.profiles.metrics import REGISTRY
from gateway.profiles.trust import Partners
from gateway.profiles.watcher import ProfileWatcher

from .conftest import NOW
from .helpers import certificate, profile_text, rsa_key, write_certificate, write_revocation_list

BE = profile_text("be-famhp", "be-famhp.crt.pem", country="BE")
CH = profile_text("ch-swissmedic", "ch-swissmedic.crt.pem")


def reloads(result: str) -> float:
    return REGISTRY.get_sample_value("permit_gateway_profile_reload_total", {"result": result}) or 0.0


class Harness:
    """A profile folder, a clock, a watcher and every set it handed to ``on_reload``."""

    def __init__(self, tmp_path: Path, pki: DevPki) -> None:
        self.folder = tmp_path / "profiles"
        self.folder.mkdir()
        self.certificates = tmp_path / "certs"
        self.certificates.mkdir()
        for source in pki.folder.glob("*.crt.pem"):
            (self.certificates / source.name).write_bytes(source.read_bytes())
        self.write("be-famhp.yaml", BE)
        self.write("ch-swissmedic.yaml", CH)
        self.clock = FixedClock(NOW)
        self.swapped: list[Partners] = []
        self.watcher = ProfileWatcher(
            self.folder,
            certificates_dir=self.certificates,
            clock=self.clock,
            on_reload=self.use_partners,
            interval=0.01,
        )
        self.current = self.watcher.partners

    def use_partners(self, partners: Partners) -> None:
        """What a service does: swap its reference."""
        self.current = partners
        self.swapped.append(partners)

    def write(self, name: str, text: str) -> None:
        (self.folder / name).write_text(text, encoding="utf-8")

    def endpoint(self, profile_id: str) -> str:
        return self.watcher.partners.get(profile_id).profile.endpoint


@pytest.fixture
def harness(tmp_path: Path, pki: DevPki) -> Harness:
    return Harness(tmp_path, pki)


def test_start_loads_the_folder(harness: Harness) -> None:
    assert [p.profile.id for p in harness.watcher.partners] == ["be-famhp", "ch-swissmedic"]
    assert harness.watcher.active.reason == "start"
    assert harness.watcher.poll() is None
    assert harness.swapped == []


def test_start_refuses_a_folder_whose_every_file_is_broken(tmp_path: Path, harness: Harness) -> None:
    harness.write("be-famhp.yaml", "id: [")
    harness.write("ch-swissmedic.yaml", "id: [")
    with pytest.raises(ProfileError, match="not valid YAML"):
        ProfileWatcher(harness.folder, certificates_dir=harness.certificates, clock=harness.clock, on_reload=print)


def test_start_leaves_out_only_the_broken_file(tmp_path: Path, harness: Harness) -> None:
    harness.write("ch-swissmedic.yaml", "id: [")
    with capture_logs() as logs:
        watcher = ProfileWatcher(
            harness.folder, certificates_dir=harness.certificates, clock=harness.clock, on_reload=print
        )
    assert [p.profile.id for p in watcher.partners] == ["be-famhp"]
    [entry] = [e for e in logs if e["log_level"] == "error"]
    assert entry["file"] == str(harness.folder / "ch-swissmedic.yaml")
    assert "not valid YAML" in entry["errors"][0]
    assert "not valid YAML" in (watcher.last_error or "")


def test_valid_change_takes_effect(harness: Harness) -> None:
    ok_before = reloads("ok")
    harness.write(
        "ch-swissmedic.yaml", CH.replace("https://as4.ch-swissmedic.example/as4", "https://new.example/as4")
    )

    with capture_logs() as logs:
        assert harness.watcher.poll() is True

    assert harness.endpoint("ch-swissmedic") == "https://new.example/as4"
    assert harness.swapped == [harness.watcher.partners]
    assert reloads("ok") == ok_before + 1
    assert logs[-1]["event"] == "partner profiles reloaded"
    assert harness.watcher.poll() is None


def test_invalid_change_is_refused_and_the_previous_set_stays(harness: Harness) -> None:
    before = harness.watcher.partners
    refused_before = reloads("refused")
    broken = CH.replace("country: CH", "country: Switzerland")
    harness.write("ch-swissmedic.yaml", broken)

    with capture_logs() as logs:
        assert harness.watcher.poll() is False

    assert harness.watcher.partners is before
    assert harness.swapped == []
    assert reloads("refused") == refused_before + 1
    assert (
        REGISTRY.get_sample_value("permit_gateway_profile_reload_last_refusal_timestamp_seconds")
        == NOW.timestamp()
    )
    [entry] = logs
    assert entry["log_level"] == "error"
    assert entry["event"] == "partner profile change refused; the previous profiles stay active"
    assert entry["errors"][0].startswith(f"{harness.folder / 'ch-swissmedic.yaml'}:4:1 country: got 'Switzerland'")
    assert harness.watcher.last_error is not None
    with capture_logs() as again:
        assert harness.watcher.poll() is None
    assert again == []


def test_fixing_the_file_takes_effect(harness: Harness) -> None:
    harness.write("ch-swissmedic.yaml", "id: [")
    assert harness.watcher.poll() is False

    harness.write(
        "ch-swissmedic.yaml", CH.replace("authority_name: Authority ch-swissmedic", "authority_name: Fixed")
    )

    assert harness.watcher.poll() is True
    assert harness.watcher.partners.get("ch-swissmedic").profile.authority_name == "Fixed"
    assert harness.watcher.last_error is None


def test_two_profiles_claiming_one_party_id_are_refused(harness: Harness) -> None:
    harness.write("ch-other.yaml", profile_text("ch-other", "ch-swissmedic.crt.pem", party="CH-SWISSMEDIC"))

    assert harness.watcher.poll() is False
    assert "a PartyId must name one partner" in (harness.watcher.last_error or "")
    assert "ch-other" not in harness.watcher.partners.registry


def test_added_and_removed_files(harness: Harness) -> None:
    harness.write("de-bfarm.yaml", profile_text("de-bfarm", "de-bfarm.crt.pem", country="DE"))
    assert harness.watcher.poll() is True
    assert "de-bfarm" in harness.watcher.partners.registry

    (harness.folder / "be-famhp.yaml").unlink()

    assert harness.watcher.poll() is True
    assert [p.profile.id for p in harness.watcher.partners] == ["ch-swissmedic", "de-bfarm"]


def test_replacing_a_certificate_file_reloads(harness: Harness) -> None:
    old = harness.watcher.partners.get("ch-swissmedic").certificates.encryption
    renewed = certificate("CH-SWISSMEDIC", key=rsa_key(2), not_before=NOW - timedelta(days=1), days=700)
    write_certificate(harness.certificates / "ch-swissmedic.crt.pem", renewed)

    assert harness.watcher.poll() is True
    assert harness.watcher.partners.get("ch-swissmedic").certificates.encryption == renewed != old


def test_a_certificate_becoming_valid_triggers_a_reload(harness: Harness) -> None:
    new = certificate("CH-NEW", key=rsa_key(3), not_before=NOW + timedelta(days=3), days=700)
    write_certificate(harness.certificates / "ch-next.crt.pem", new)
    harness.write("ch-swissmedic.yaml", CH + "  signing_certificates: [ch-next.crt.pem]\n")
    assert harness.watcher.poll() is True
    assert harness.watcher.partners.get("ch-swissmedic").certificates.encryption != new

    harness.clock.advance(timedelta(days=3, seconds=1))

    assert harness.watcher.poll() is True
    partner = harness.watcher.partners.get("ch-swissmedic")
    assert partner.certificates.encryption == new
    assert new in partner.policy.signing_certificates
    assert harness.watcher.active.reason.startswith("a certificate became valid or expired")


async def test_reload_under_traffic(harness: Harness) -> None:
    """Lookups in a task and in a thread while the folder flips between two valid versions and a broken one:
    no lookup fails, and each sees the old or the new endpoint, never anything else."""
    endpoints = {"https://as4.ch-swissmedic.example/as4", "https://b.example/as4"}
    versions = [CH, CH.replace("https://as4.ch-swissmedic.example/as4", "https://b.example/as4"), "id: ["]
    seen: set[str] = set()
    failures: list[BaseException] = []
    stop = threading.Event()

    def lookup() -> None:
        partners = harness.current
        partner = partners.by_party("CH-SWISSMEDIC")
        assert partners.get("ch-swissmedic") is partner
        partners.usable(partner, NOW)
        seen.add(partner.profile.endpoint)

    def in_thread() -> None:
        while not stop.is_set():
            try:
                lookup()
            except BaseException as exc:
                failures.append(exc)
            time.sleep(0.0005)

    async def in_task() -> None:
        while not stop.is_set():
            try:
                lookup()
            except BaseException as exc:
                failures.append(exc)
            await asyncio.sleep(0.0005)

    thread = threading.Thread(target=in_thread)
    thread.start()
    task = asyncio.create_task(in_task())
    ok_before = reloads("ok")
    async with harness.watcher.running():
        for round_ in range(24):
            tried = reloads("ok") + reloads("refused")
            harness.write("ch-swissmedic.yaml", versions[round_ % 3])
            for _ in range(200):  # the watcher polls and loads in a worker thread: let it take this version
                await asyncio.sleep(0.01)
                if reloads("ok") + reloads("refused") > tried:
                    break
    stop.set()
    await task
    thread.join()

    assert failures == []
    assert seen == endpoints
    assert reloads("ok") - ok_before >= 2


def test_a_change_written_while_the_folder_loads_is_loaded_at_the_next_poll(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading runs in a worker thread while the folder may change: what changed during the load is not
    taken as loaded (the fingerprint is taken before the load)."""
    from gateway.profiles import watcher as watcher_module

    real_load = watcher_module.load_partners

    def load_then_an_edit_lands(*args: Any, **kw: Any) -> Any:
        loaded = real_load(*args, **kw)
        harness.write(
            "ch-swissmedic.yaml", CH.replace("https://as4.ch-swissmedic.example/as4", "https://v3.example/as4")
        )
        return loaded

    harness.write(
        "ch-swissmedic.yaml", CH.replace("https://as4.ch-swissmedic.example/as4", "https://v2.example/as4")
    )
    monkeypatch.setattr(watcher_module, "load_partners", load_then_an_edit_lands)
    assert harness.watcher.poll() is True
    assert harness.endpoint("ch-swissmedic") == "https://v2.example/as4"
    monkeypatch.setattr(watcher_module, "load_partners", real_load)

    assert harness.watcher.poll() is True
    assert harness.endpoint("ch-swissmedic") == "https://v3.example/as4"
    assert harness.watcher.poll() is None


def test_a_certificate_copied_in_after_a_refusal_is_noticed(harness: Harness, pki: DevPki) -> None:
    """A new profile is refused because its certificate is not there yet; copying it in is a change too."""
    harness.write("de-bfarm.yaml", profile_text("de-bfarm", "de-bfarm-2027.crt.pem", country="DE"))
    assert harness.watcher.poll() is False
    assert harness.watcher.poll() is None  # refused once, not again for the same files

    (harness.certificates / "de-bfarm-2027.crt.pem").write_bytes(
        pki.files_for("DE-BFARM").certificate.read_bytes()
    )

    assert harness.watcher.poll() is True
    assert "de-bfarm" in harness.watcher.partners.registry


def test_a_folder_emptied_on_disk_is_refused_and_every_partner_stays(harness: Harness) -> None:
    """A deployment that removes the files before copying the new ones in must not drop every partner (their
    queued messages would fail); retiring them is an explicit edit."""
    before = harness.watcher.partners
    for path in harness.folder.glob("*.yaml"):
        path.unlink()

    assert harness.watcher.poll() is False
    assert harness.watcher.partners is before and len(before) == 2
    assert "holds no partner profile any more" in (harness.watcher.last_error or "")

    harness.write("be-famhp.yaml", BE)
    assert harness.watcher.poll() is True
    assert [p.profile.id for p in harness.watcher.partners] == ["be-famhp"]


def test_a_certificate_no_longer_named_costs_no_second_reload(harness: Harness) -> None:
    (harness.certificates / "ch-2027.crt.pem").write_bytes(
        (harness.certificates / "ch-swissmedic.crt.pem").read_bytes()
    )
    harness.write("ch-swissmedic.yaml", CH.replace("ch-swissmedic.crt.pem", "ch-2027.crt.pem"))

    assert harness.watcher.poll() is True
    assert harness.watcher.poll() is None
    assert len(harness.swapped) == 1


def test_replacing_the_revocation_list_reloads(harness: Harness, pki: DevPki) -> None:
    """The CA's next list, copied over the old one, takes effect at the next poll."""
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    ca_name = x509.load_pem_x509_certificate(pki.ca_certificate.read_bytes()).subject
    (harness.certificates / "ca.crt.pem").write_bytes(pki.ca_certificate.read_bytes())

    def write_crl(next_update: timedelta) -> x509.CertificateRevocationList:
        write_revocation_list(harness.certificates / "ca.crl.pem", ca_key, ca_name, NOW + next_update)
        return x509.load_pem_x509_crl((harness.certificates / "ca.crl.pem").read_bytes())

    write_crl(timedelta(days=1))
    harness.write(
        "ch-swissmedic.yaml",
        CH.replace(
            "  signing_certificate: ch-swissmedic.crt.pem\n",
            "  trust_anchor: ca.crt.pem\n  subject: '.*CN=CH-SWISSMEDIC'\n"
            "  encryption_certificate: ch-swissmedic.crt.pem\n  revocation_list: ca.crl.pem\n",
        ),
    )
    assert harness.watcher.poll() is True
    renewed = write_crl(timedelta(days=8))
    assert harness.watcher.poll() is True
    assert harness.watcher.partners.get("ch-swissmedic").policy.revocation_lists == (renewed,)
