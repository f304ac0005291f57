"""Permit Gateway: AS4 exchange of controlled-substance import and export authorizations."""

__version__ = "0.1.0"
