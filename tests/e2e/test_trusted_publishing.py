"""Trusted publishing end to end: the gateway on https with the test CA, an OIDC issuer of the test's own on
loopback (its RSA key, discovery document and JWKS, and GitHub Actions' ID-token endpoint), and the real
`uv publish --trusted-publishing always` fed its ID token the way GitHub Actions does (`GITHUB_ACTIONS=true`,
`ACTIONS_ID_TOKEN_REQUEST_URL`/`_TOKEN`): it asks the gateway's audience, fetches the ID token, mints an upload
token and publishes with it; pip then installs the file back. A workflow the publisher does not name is refused
with the failing claim, and nothing reaches the index."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PYTHON, ROOT, GatewayProcess, Index, index_upstream, start_gateway, stop
from tests.dists import make_wheel, sha256_of
from tests.e2e.test_tls import output, run
from tests.harness.oidc_issuer import Issuer, github_claims, gitlab_claims
from tests.harness.tls import PKI

PROJECT = "tp-demo"


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    served = Issuer()
    with served.serve_in_thread():
        yield served


@pytest.fixture(scope="module")
def gitlab() -> Iterator[Issuer]:
    """A self-managed GitLab's issuer (its URL is the instance's)."""
    served = Issuer()
    with served.serve_in_thread():
        yield served


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, index: Index, pki: PKI, issuer: Issuer, gitlab: Issuer
) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp("trusted-publishing")
    oidc = {
        "issuers": [
            {"name": "github", "url": issuer.url, "kind": "github"},
            {"name": "gitlab", "url": gitlab.url, "kind": "gitlab"},
        ]
    }
    gw = start_gateway(directory, index_upstream(index, directory), tls=pki, oidc=oidc)
    gw.add_user("alice", "correct horse battery")
    gw.cli("project", "grant", PROJECT, "alice")
    added = gw.cli(
        "publisher", "add", PROJECT, "--issuer", "github", "--repository", "octo-org/sampleproject",
        "--owner-id", "123456", "--workflow", "release.yml",
    )  # fmt: skip
    assert added.stdout.strip(), added.stderr
    gw.cli(
        "publisher", "add", PROJECT, "--issuer", "gitlab", "--namespace", "octo-group",
        "--project-path", "sampleproject", "--ci-config", ".gitlab-ci.yml",
    )  # fmt: skip
    yield gw
    stop(gw.process)


def uv_publish(gateway: GatewayProcess, pki: PKI, issuer: Issuer, wheel: Path) -> tuple[int, str]:
    argv = [PYTHON, "-m", "uv", "publish", "--no-progress", "--no-config", "--trusted-publishing", "always"]
    argv += ["--publish-url", f"{gateway.url}/legacy/", str(wheel)]
    result = run(*argv, SSL_CERT_FILE=str(pki.ca), **issuer.actions_environment())
    return result.returncode, output(result)


def test_uv_publishes_with_an_id_token_and_pip_installs_it_back(
    gateway: GatewayProcess, pki: PKI, issuer: Issuer, index: Index, tmp_path: Path
) -> None:
    issuer.actions_claims = github_claims()
    wheel = make_wheel(tmp_path, PROJECT, "1.0")

    code, shown = uv_publish(gateway, pki, issuer, wheel)

    assert code == 0, shown
    assert issuer.actions_audiences[-1] == "upload-gateway"  # uv asked the gateway's audience first
    pip = [PYTHON, "-m", "pip", "--disable-pip-version-check", "--no-cache-dir", "--cert", str(pki.ca)]
    downloaded = tmp_path / "downloaded"
    result = run(*pip, "download", "--no-deps", "-d", str(downloaded), "--index-url", f"{gateway.url}/simple/",
                 f"{PROJECT}==1.0")  # fmt: skip
    assert result.returncode == 0, output(result)
    assert sha256_of(downloaded / wheel.name) == sha256_of(wheel)
    # The minted token is listed, under the publisher's principal, and revocable as any token.
    listed = json.loads(gateway.cli("token", "list", "--json").stdout)
    [minted] = [token for token in listed if str(token["description"]).startswith("OpenID token: GitHub")]
    assert minted["user"].startswith("publisher:") and minted["expires"] is not None
    gateway.cli("token", "revoke", minted["id"])
    events = [json.loads(line) for line in gateway.cli("audit", "--json").stdout.splitlines()]
    [accepted] = [e for e in events if e["event"] == "upload.accepted" and e.get("project") == PROJECT]
    assert accepted["detail"]["run"]["repository"] == "octo-org/sampleproject"


def test_a_workflow_the_publisher_does_not_name_is_refused_with_the_failing_claim(
    gateway: GatewayProcess, pki: PKI, issuer: Issuer, index: Index, tmp_path: Path
) -> None:
    issuer.actions_claims = github_claims(workflow="nightly.yml")
    wheel = make_wheel(tmp_path, PROJECT, "2.0")

    code, shown = uv_publish(gateway, pki, issuer, wheel)

    assert code != 0 and "invalid-publisher" in shown, shown
    assert wheel.name not in index.files()


def test_the_readme_s_gitlab_snippet_mints_and_twine_uploads(
    gateway: GatewayProcess, pki: PKI, gitlab: Issuer, index: Index, tmp_path: Path
) -> None:
    """The README's GitLab CI job, as written there but for the URL: the ID token in UPLOAD_GATEWAY_ID_TOKEN,
    minted by one request, and twine uploading with the minted token."""
    readme = (ROOT / "README.md").read_text()
    snippet = re.search(r"export TWINE_PASSWORD=\$\(python -c '(.+?)'\)", readme, re.DOTALL)
    assert snippet is not None, "the README's GitLab snippet"
    mint = " ".join(snippet.group(1).split()).replace("https://pypi.example.org", gateway.url)
    id_token = gitlab.token(gitlab_claims(issuer_url=gitlab.url), aud="upload-gateway")
    minted = run(PYTHON, "-c", mint, UPLOAD_GATEWAY_ID_TOKEN=id_token, SSL_CERT_FILE=str(pki.ca))
    assert minted.returncode == 0, output(minted)
    wheel = make_wheel(tmp_path, PROJECT, "3.0")
    twine = [PYTHON, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar"]
    twine += ["--repository-url", f"{gateway.url}/legacy/", "-u", "__token__", str(wheel)]
    uploaded = run(*twine, TWINE_PASSWORD=minted.stdout.strip(), REQUESTS_CA_BUNDLE=str(pki.ca))
    assert uploaded.returncode == 0, output(uploaded)
    assert wheel.name in index.files()
