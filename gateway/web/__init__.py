"""The self-service account pages under /account/: sign in (with a second factor when the
account has one), manage factors, API tokens and projects.

`gateway.web.application.setup(app)` mounts them; `security` holds the pure rules, unit-tested without a server.
"""
