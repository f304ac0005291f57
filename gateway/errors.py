"""The one error hierarchy of the gateway.

Every error a person can cause (a bad config file, a bad partner profile, an invalid permit document) is a
``GatewayError`` whose message names the rule, the place and the fix. Protocol errors towards a partner are
``gateway.as4.EbmsError`` (a ``GatewayError`` too) because they must carry an ebMS error code.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """The gateway configuration file is missing or wrong: names the file, the key and what is expected."""


class ProfileError(GatewayError):
    """A partner profile is invalid, or an operation needs something the profile lacks."""


class KeyMaterialError(GatewayError):
    """A key or certificate file is missing, unreadable or unfit for its purpose."""


class DocumentRejected(GatewayError):
    """A permit document failed XSD validation or a business rule; carries the findings."""


class StoreError(GatewayError):
    """The message store refused an operation (unknown message, illegal state move)."""


class DeliveryError(GatewayError):
    """A message could not be handed to a partner or to the national system."""
