"""Trusted publishing: CI jobs exchange their OIDC ID tokens for short-lived upload tokens, as on PyPI."""
