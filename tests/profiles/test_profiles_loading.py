"""The demo profiles and the registry built from a folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType

import pytest

from gateway.documents.types import DocumentType
from gateway.errors import ProfileError
from gateway.profiles import (
    EBMS_DEFAULT_INITIATOR_ROLE,
    EBMS_DEFAULT_RESPONDER_ROLE,
    DevPki,
    PartnerProfile,
    ProfileRegistry,
    Security,
    SecuritySuite,
    load_profile,
    load_profiles,
    resolve_certificates,
)
from gateway.settings import PARTY_ID_TYPE_UNREGISTERED

from .conftest import DEMO_PROFILES, MINIMAL, NOW


def test_demo_profiles_load(pki: DevPki) -> None:
    registry = load_profiles(DEMO_PROFILES, certificates_dir=pki.folder, now=NOW)

    assert [p.id for p in registry] == ["be-famhp", "ch-swissmedic"]
    be, ch = registry.get("be-famhp"), registry.get("ch-swissmedic")
    assert (be.party_id, be.country, be.endpoint) == ("BE-FAMHP", "BE", "http://127.0.0.1:18481/as4")
    assert (ch.party_id, ch.country, ch.endpoint) == ("CH-SWISSMEDIC", "CH", "http://127.0.0.1:18482/as4")
    assert be.security.signing_certificate == pki.files_for("BE-FAMHP").certificate
    assert ch.security.encryption_candidates == (pki.files_for("CH-SWISSMEDIC").certificate,)


def test_demo_profile_gets_the_model_defaults(pki: DevPki) -> None:
    profile = load_profile(DEMO_PROFILES / "be-famhp.yaml", certificates_dir=pki.folder)

    assert profile.party_id_type == PARTY_ID_TYPE_UNREGISTERED
    assert (profile.roles.initiator, profile.roles.responder) == (
        EBMS_DEFAULT_INITIATOR_ROLE,
        EBMS_DEFAULT_RESPONDER_ROLE,
    )
    assert profile.security.suite is SecuritySuite.EDELIVERY_AS4_1_15
    assert profile.security.encryption_certificate is None
    assert set(profile.documents.send) == set(profile.documents.receive) == set(DocumentType)
    assert profile.compression and profile.enabled
    assert profile.reception_awareness.retries == 5
    assert profile.contacts == ()


def test_demo_certificates_resolve(pki: DevPki) -> None:
    registry = load_profiles(DEMO_PROFILES, certificates_dir=pki.folder)

    certificates = resolve_certificates(registry.get("ch-swissmedic"))

    assert certificates.signing == (certificates.encryption,)
    assert certificates.encryption.subject.rfc4514_string().endswith("CN=CH-SWISSMEDIC")
    certificates.check(now=NOW)


def test_example_with_every_key_states_the_defaults(pki: DevPki) -> None:
    example = load_profile(DEMO_PROFILES / "examples" / "de-bfarm.yaml", certificates_dir=pki.folder, now=NOW)

    required_only = PartnerProfile(
        **example.model_dump(include={"id", "authority_name", "country", "party_id", "endpoint"}),
        security=Security(
            signing_certificate=example.security.signing_certificate,
            encryption_certificate=example.security.signing_certificate,
        ),
    )
    assert example.contacts
    assert example.model_copy(update={"contacts": ()}) == required_only


def test_subfolders_and_other_files_are_not_loaded(pki: DevPki, tmp_path: Path) -> None:
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "broken.yaml").write_text("id: [")
    (tmp_path / "notes.txt").write_text("not a profile")
    (tmp_path / ".partner.yaml.swp").write_text("id: [")
    (tmp_path / "ch.yml").write_text(MINIMAL)

    registry = load_profiles(tmp_path, certificates_dir=pki.folder)

    assert [p.id for p in registry] == ["ch-swissmedic"]


def test_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="partner profile folder not found") as caught:
        load_profiles(tmp_path / "nowhere", certificates_dir=tmp_path)
    assert str(tmp_path / "nowhere") in str(caught.value)


def test_relative_certificate_paths_resolve_against_certificates_dir(
    pki: DevPki, write_profile: Callable[..., Path]
) -> None:
    path = write_profile(MINIMAL + "  encryption_certificate: be-famhp.crt.pem\n")

    profile = load_profile(path, certificates_dir=pki.folder)

    assert profile.security.signing_certificate == pki.folder / "ch-swissmedic.crt.pem"
    assert profile.security.encryption_certificate == pki.folder / "be-famhp.crt.pem"
    certificates = resolve_certificates(profile)
    assert certificates.encryption.subject.rfc4514_string().endswith("CN=BE-FAMHP")


def test_absolute_certificate_path_is_kept(
    pki: DevPki, write_profile: Callable[..., Path], tmp_path: Path
) -> None:
    absolute = pki.files_for("CH-SWISSMEDIC").certificate
    path = write_profile(MINIMAL.replace("ch-swissmedic.crt.pem", str(absolute)))

    profile = load_profile(path, certificates_dir=tmp_path / "elsewhere")

    assert profile.security.signing_certificate == absolute


class TestRegistry:
    @pytest.fixture
    def registry(self, pki: DevPki) -> ProfileRegistry:
        return load_profiles(DEMO_PROFILES, certificates_dir=pki.folder)

    def test_lookups(self, registry: ProfileRegistry) -> None:
        assert len(registry) == 2
        assert "be-famhp" in registry and "xx" not in registry
        assert registry.by_party("BE-FAMHP").id == "be-famhp"
        assert registry.by_party("CH-SWISSMEDIC", PARTY_ID_TYPE_UNREGISTERED).id == "ch-swissmedic"

    def test_unknown_id_names_the_known_ids(self, registry: ProfileRegistry) -> None:
        with pytest.raises(ProfileError) as caught:
            registry.get("de-bfarm")
        assert str(caught.value) == "no partner profile with id 'de-bfarm'; known ids: be-famhp, ch-swissmedic"

    def test_unknown_party_is_named_but_not_told_the_known_ones(self, registry: ProfileRegistry) -> None:
        """The refusal goes to an unauthenticated sender: our partners' PartyIds are for our log only."""
        with pytest.raises(ProfileError, match="no partner profile with PartyId 'BE-FAMHP' of type") as refused:
            registry.by_party("BE-FAMHP", "urn:oasis:names:tc:ebcore:partyid-type:iso6523:0088")
        assert "known PartyIds" not in str(refused.value) and "CH-SWISSMEDIC" not in str(refused.value)

    def test_party_id_under_several_types_needs_the_type(self, registry: ProfileRegistry) -> None:
        be = registry.get("be-famhp")
        other = be.model_copy(update={"id": "be-famhp-gln", "party_id_type": "urn:example:gln"})
        both = ProfileRegistry([be, other])

        with pytest.raises(ProfileError, match="several types"):
            both.by_party("BE-FAMHP")
        assert both.by_party("BE-FAMHP", "urn:example:gln").id == "be-famhp-gln"

    def test_is_immutable(self, registry: ProfileRegistry) -> None:
        with pytest.raises(AttributeError):
            registry._by_id = MappingProxyType({})

    def test_refuses_duplicates_built_in_memory(self, registry: ProfileRegistry) -> None:
        be = registry.get("be-famhp")
        with pytest.raises(ProfileError, match="two partner profiles have the id 'be-famhp'"):
            ProfileRegistry([be, be])
        with pytest.raises(ProfileError, match="have the same PartyId 'BE-FAMHP'"):
            ProfileRegistry([be, be.model_copy(update={"id": "be-2"})])
