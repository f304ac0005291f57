"""Certificate expiry (log + metric) and ``check_folder`` (what ``profiles check`` prints)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from structlog.testing import capture_logs

from gateway.profiles import DevPki, load_profiles
from gateway.profiles.check import check_folder
from gateway.profiles.expiry import Validity, check_expiry
from gateway.profiles.metrics import REGISTRY
from gateway.profiles.trust import Partners

from .conftest import DEMO_PROFILES, NOW
from .helpers import certificate, profile_text, rsa_key, write_certificate


def days(owner: str, purpose: str, subject: str) -> float | None:
    labels = {"owner": owner, "purpose": purpose, "subject": subject}
    return REGISTRY.get_sample_value("permit_gateway_certificate_expiry_days", labels)


def test_expiry_check_sets_the_metric_and_warns_ahead(pki: DevPki) -> None:
    partners = Partners(load_profiles(DEMO_PROFILES, certificates_dir=pki.folder), now=NOW)
    ours = certificate("BE-FAMHP", key=rsa_key(5), not_before=NOW - timedelta(days=300), days=310)

    with capture_logs() as logs:
        statuses = check_expiry(partners, [("current", ours)], now=NOW, warning_days=60)

    assert [(s.owner, s.purpose, s.validity) for s in statuses] == [
        ("self", "current", Validity.EXPIRING),
        ("be-famhp", "signing", Validity.VALID),
        ("ch-swissmedic", "signing", Validity.VALID),
    ]
    assert days("self", "current", "CN=BE-FAMHP") == 10
    assert days("ch-swissmedic", "signing", "C=CH,O=Swissmedic,CN=CH-SWISSMEDIC") == 730
    [warning] = logs
    assert warning["log_level"] == "warning"
    assert warning["event"].startswith("our current certificate (CN=BE-FAMHP, SHA-256 ")
    assert "expires in 10 days" in warning["event"]


def test_expired_certificates_are_errors_in_the_log(pki: DevPki) -> None:
    partners = Partners(load_profiles(DEMO_PROFILES, certificates_dir=pki.folder), now=NOW)

    with capture_logs() as logs:
        check_expiry(partners, now=NOW + timedelta(days=731), warning_days=60)

    assert [entry["log_level"] for entry in logs] == ["error", "error"]
    assert "partner 'be-famhp' signing certificate" in logs[0]["event"]
    assert "expired on 2028-02-29; replace it" in logs[0]["event"]
    assert days("self", "current", "CN=BE-FAMHP") is None, "the metric is rebuilt on every check"


def test_check_folder_ok_with_warnings(pki: DevPki, tmp_path: Path) -> None:
    (tmp_path / "ch.yaml").write_text(profile_text("ch-swissmedic", "ch-swissmedic.crt.pem") + "enabled: false\n")

    result = check_folder(tmp_path, certificates_dir=pki.folder, now=NOW + timedelta(days=700), warning_days=60)

    assert result.ok
    assert result.warnings[0].startswith("partner 'ch-swissmedic' signing certificate")
    assert result.warnings[1] == f"partner 'ch-swissmedic' is disabled (enabled: false in {tmp_path / 'ch.yaml'})"


def test_check_folder_reports_errors_and_certificates_that_cannot_be_used(pki: DevPki, tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(profile_text("ch-swissmedic", "ch-swissmedic.crt.pem"))
    (tmp_path / "b.yaml").write_text(
        profile_text("be-famhp", "be-famhp.crt.pem").replace("country: CH", "country: X")
    )

    broken = check_folder(tmp_path, certificates_dir=pki.folder, now=NOW, warning_days=60)
    assert not broken.ok and broken.errors[0].startswith(f"{tmp_path / 'b.yaml'}:4:1 country:")

    (tmp_path / "b.yaml").unlink()
    expired = check_folder(tmp_path, certificates_dir=pki.folder, now=NOW + timedelta(days=800), warning_days=60)
    assert not expired.ok
    assert expired.errors[0].startswith(f"{tmp_path / 'a.yaml'}:10:3 security.signing_certificate: certificate ")


def test_expired_one_beside_a_valid_one_is_a_warning(pki: DevPki, tmp_path: Path) -> None:
    old = certificate("CH-OLD", key=rsa_key(6), not_before=NOW - timedelta(days=30), days=10)
    write_certificate(tmp_path / "old.pem", old)
    text = profile_text("ch-swissmedic", str(pki.files_for("CH-SWISSMEDIC").certificate))
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "ch.yaml").write_text(text + f"  signing_certificates: [{tmp_path / 'old.pem'}]\n")

    result = check_folder(tmp_path / "profiles", certificates_dir=pki.folder, now=NOW, warning_days=60)

    assert result.ok
    [warning] = result.warnings
    assert "(CN=CH-OLD" in warning and "expired on" in warning
