"""Prometheus metrics of partner profiles and certificates, on the gateway's one registry."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from gateway.metrics import REGISTRY

PROFILE_RELOADS = Counter(
    "permit_gateway_profile_reload",
    "Partner profile folder reloads and edits, by result: ok (now active), partial (active but for the files held "
    "back for problems of their own, which keep their last accepted version) or refused (previous kept)",
    ["result"],
    registry=REGISTRY,
)
PROFILE_LAST_REFUSAL = Gauge(
    "permit_gateway_profile_reload_last_refusal_timestamp_seconds",
    "Unix time of the last refused profile change, or file held back (0: none since start)",
    registry=REGISTRY,
)
PROFILES_ACTIVE = Gauge("permit_gateway_profiles_active", "Partner profiles in the active set", registry=REGISTRY)
PROFILES_HELD_BACK = Gauge(
    "permit_gateway_profiles_held_back",
    "Profile files with problems of their own that the active set leaves out: each keeps its last accepted "
    "version, or its partner has no profile (a new file, or one broken at start); the log names each",
    registry=REGISTRY,
)
CERTIFICATE_EXPIRY_DAYS = Gauge(
    "permit_gateway_certificate_expiry_days",
    "Whole days until a certificate expires (negative once expired), ours and every partner's",
    ["owner", "purpose", "subject"],
    registry=REGISTRY,
)

for _result in ("ok", "partial", "refused"):
    PROFILE_RELOADS.labels(result=_result)
