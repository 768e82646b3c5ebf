"""The gateway's own root page: what this server is and where to upload and install; no address of the index."""

from __future__ import annotations

from html import escape

from gateway import __version__


def landing_page(public_url: str) -> bytes:
    upload, install, account = (escape(f"{public_url}{path}") for path in ("/legacy/", "/simple/", "/account/"))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Package index</title></head>
<body>
<h1>Package index</h1>
<p>This server is an upload gateway (version {escape(__version__)}) in front of a Python package index: it
checks every upload, then passes it on, and serves installs.</p>
<h2>Install</h2>
<pre>pip install --index-url {install} PROJECT
uv pip install --index-url {install} PROJECT</pre>
<h2>Upload</h2>
<pre>twine upload --repository-url {upload} dist/*
uv publish --publish-url {upload} dist/*</pre>
<p>Sign in, manage API tokens and see your projects on <a href="{account}">your account</a>.</p>
</body></html>
""".encode()
