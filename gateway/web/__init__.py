"""The self-service account pages under /account/: sign in with two factors, manage factors and API tokens.

`gateway.web.application.setup(app)` mounts them; `security` holds the pure rules, unit-tested without a server.
"""
