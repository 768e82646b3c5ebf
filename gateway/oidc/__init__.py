"""Trusted publishing (issue #19): a CI job's OIDC ID token, from an issuer the operator configured, exchanged for a
short-lived upload token, as PyPI (Warehouse) does it."""
