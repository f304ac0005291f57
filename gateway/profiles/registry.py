"""The loaded partner profiles, looked up by profile id or by ebMS PartyId."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from types import MappingProxyType
from typing import NoReturn

import structlog

from gateway.errors import ProfileError
from gateway.profiles.model import PartnerProfile

log = structlog.get_logger("gateway.profiles")


class ProfileRegistry:
    """An immutable set of partner profiles with unique ids and unique (party_id_type, party_id).

    A reload builds a new registry and swaps it in whole, so readers never see a half-updated set.
    """

    __slots__ = ("_by_id", "_by_party")
    _by_id: MappingProxyType[str, PartnerProfile]
    _by_party: MappingProxyType[tuple[str, str], PartnerProfile]

    def __init__(self, profiles: Iterable[PartnerProfile] = ()) -> None:
        by_id: dict[str, PartnerProfile] = {}
        by_party: dict[tuple[str, str], PartnerProfile] = {}
        for profile in sorted(profiles, key=lambda p: p.id):
            party = (profile.party_id_type, profile.party_id)
            if profile.id in by_id:
                raise ProfileError(f"two partner profiles have the id {profile.id!r}; ids must be unique")
            if party in by_party:
                raise ProfileError(
                    f"partner profiles {by_party[party].id!r} and {profile.id!r} have the same PartyId "
                    f"{profile.party_id!r} (type {profile.party_id_type}); a PartyId must name one partner"
                )
            by_id[profile.id] = profile
            by_party[party] = profile
        object.__setattr__(self, "_by_id", MappingProxyType(by_id))
        object.__setattr__(self, "_by_party", MappingProxyType(by_party))

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("ProfileRegistry is immutable; build a new one")

    def get(self, profile_id: str) -> PartnerProfile:
        try:
            return self._by_id[profile_id]
        except KeyError:
            raise ProfileError(
                f"no partner profile with id {profile_id!r}; known ids: {_listing(self._by_id)}"
            ) from None

    def by_party(self, party_id: str, party_id_type: str | None = None) -> PartnerProfile:
        """The profile of the partner with this PartyId; without a type, the PartyId must be unambiguous."""
        if party_id_type is not None:
            found = self._by_party.get((party_id_type, party_id))
            matches = [] if found is None else [found]
        else:
            matches = [p for p in self._by_id.values() if p.party_id == party_id]
        if len(matches) == 1:
            return matches[0]
        if matches:
            types = ", ".join(p.party_id_type for p in matches)
            raise ProfileError(f"PartyId {party_id!r} is used with several types ({types}); give the type")
        wanted = f"PartyId {party_id!r}" + (f" of type {party_id_type}" if party_id_type else "")
        # the known PartyIds go to our log only: this answer may reach a sender no one has authenticated
        log.warning("no partner profile for a PartyId", wanted=wanted, known=_listing({p.party_id for p in self}))
        raise ProfileError(
            f"no partner profile with {wanted}; the sender's From PartyId and its type must be exactly those of "
            "the profile the receiving authority keeps for it: its administrator checks them with the receiving "
            "authority's"
        )

    def __contains__(self, profile_id: object) -> bool:
        return profile_id in self._by_id

    def __iter__(self) -> Iterator[PartnerProfile]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def __repr__(self) -> str:
        return f"ProfileRegistry({_listing(self._by_id)})"


def _listing(names: Iterable[str]) -> str:
    return ", ".join(sorted(names)) or "(none)"
