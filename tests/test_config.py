from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import DEFAULT_PATH, ConfigError, OIDCConfig, OIDCIssuer, find_config, load_config, parse_size
from tests.harness.config import write_config

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_file_matches_the_defaults() -> None:
    """Its relative paths are relative to config/, so they name what the defaults name from the clone's root."""
    shipped = load_config(ROOT / "config" / "gateway.toml", cwd=Path("/somewhere/else"))
    assert shipped == load_config(None, cwd=ROOT)
    assert shipped.store.path == ROOT / "data" / "gateway.db"
    assert shipped.tokens.secret_file == ROOT / "data" / "secret.key"
    assert shipped.upstream.data_dir == ROOT / "data" / "packages"
    assert shipped.server.host == "127.0.0.1" and shipped.server.port == 8080
    assert shipped.server.public_url == "http://localhost:8080"  # security keys refuse IP addresses
    assert shipped.upstream.embedded
    assert shipped.limits.max_file_size == 100 * 2**20
    assert shipped.policy.password_uploads == "deny-2fa"
    assert shipped.reads.access == "public"
    assert shipped.oidc == OIDCConfig()


@pytest.mark.parametrize(
    ("listen", "public_url"),
    [
        ("127.0.0.1:9000", "http://localhost:9000"),
        ("127.1.2.3:8080", "http://localhost:8080"),
        ("[::1]:8080", "http://localhost:8080"),
        ("0.0.0.0:8080", "http://localhost:8080"),
        ("[::]:8080", "http://localhost:8080"),
        ("192.0.2.7:8080", "http://192.0.2.7:8080"),
        ("[2001:db8::1]:8080", "http://[2001:db8::1]:8080"),
        ("gw.internal:8080", "http://gw.internal:8080"),
    ],
)
def test_the_public_url_follows_the_listening_address_unless_set(listen: str, public_url: str) -> None:
    """Changing only the port moves the URL too; loopback is spelled `localhost`, the only local name a browser
    takes as a security key's site."""
    assert load_config(None, {"GATEWAY_SERVER_LISTEN": listen}).server.public_url == public_url
    explicit = {"GATEWAY_SERVER_LISTEN": listen, "GATEWAY_SERVER_PUBLIC_URL": "https://pypi.example.org/"}
    assert load_config(None, explicit).server.public_url == "https://pypi.example.org"


def test_environment_overrides_file(tmp_path: Path) -> None:
    config = load_config(
        None,
        {
            "GATEWAY_SERVER_LISTEN": "0.0.0.0:9000",
            "GATEWAY_UPSTREAM_URL": "http://127.0.0.1:8081/",
            "GATEWAY_LIMITS_MAX_FILE_SIZE": "2GiB",
            "GATEWAY_POLICY_ALLOWED_ACTIONS": "file_upload, remove_pkg",
            "GATEWAY_READS_ACCESS": "authenticated",
            "UNRELATED": "x",
        },
    )
    assert (config.server.host, config.server.port) == ("0.0.0.0", 9000)
    assert config.upstream.url == "http://127.0.0.1:8081/"
    assert config.limits.max_file_size == 2 * 2**30
    assert config.policy.allowed_actions == {"file_upload", "remove_pkg"}
    assert config.reads.access == "authenticated"


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"GATEWAY_SERVER_LISTEN": "nowhere"}, "server.listen"),
        ({"GATEWAY_UPSTREAM_URL": "ftp://x"}, "upstream.url"),
        ({"GATEWAY_POLICY_PASSWORD_UPLOADS": "sometimes"}, "policy.password_uploads"),
        ({"GATEWAY_POLICY_NEW_PROJECTS": "anyone"}, "policy.new_projects"),
        ({"GATEWAY_LIMITS_MAX_FILE_SIZE": "lots"}, "limits.max_file_size"),
        ({"GATEWAY_TOKENS_MAX_LIFETIME": "forever"}, "tokens.max_lifetime"),
        ({"GATEWAY_TOKENS_PREFIX": "Bad-Prefix"}, "tokens.prefix"),
        ({"GATEWAY_STORE_URL": "postgres://x"}, "store.url"),
        ({"GATEWAY_STORE_URL": "postgresql://host-but-no-database"}, "store.url"),
        ({"GATEWAY_STORE_URL": "postgresql+asyncpg://u@h/db"}, "store.url"),
        ({"GATEWAY_STORE_URL": "postgresql://u@h/db?sslmode=disable"}, "store.url"),
        ({"GATEWAY_SERVER_COLOUR": "blue"}, "server.colour"),
        ({"GATEWAY_SERVER_WORKERS": "0"}, "server.workers"),
        ({"GATEWAY_SERVER_WORKERS": "many"}, "server.workers"),
        ({"GATEWAY_POLICY_ALLOWED_ACTIONS": "file_upload,drop_tables"}, "policy.allowed_actions"),
        ({"GATEWAY_LIMITS_MAX_UPLOADS": "lots"}, "limits.max_uploads"),
        ({"GATEWAY_LIMITS_MAX_UPLOADS_PER_USER": "0"}, "limits.max_uploads_per_user"),
        ({"GATEWAY_THROTTLE_FAILURES": "-1"}, "throttle.failures"),
        ({"GATEWAY_THROTTLE_LOCK": "soon"}, "throttle.lock"),
        ({"GATEWAY_THROTTLE_LOCK": "10m", "GATEWAY_THROTTLE_MAX_LOCK": "1m"}, "throttle.max_lock"),
        ({"GATEWAY_THROTTLE_ACCOUNT_WINDOW": "0s"}, "throttle.account_window"),
        ({"GATEWAY_THROTTLE_PASSWORD_CHECKS": "0"}, "throttle.password_checks"),
        ({"GATEWAY_READS_ACCESS": "private"}, "reads.access"),
        ({"GATEWAY_READS_ACCESS": "Authenticated"}, "reads.access"),
        ({"GATEWAY_SERVER_TLS_CERT": "/etc/gw/cert.pem"}, "server.tls_key"),
        ({"GATEWAY_SERVER_TLS_KEY": "/etc/gw/key.pem"}, "server.tls_cert"),
        (
            {
                "GATEWAY_SERVER_TLS_CERT": "/etc/gw/cert.pem",
                "GATEWAY_SERVER_TLS_KEY": "/etc/gw/key.pem",
                "GATEWAY_SERVER_PUBLIC_URL": "http://pypi.example.org",
            },
            "server.public_url",
        ),
    ],
)
def test_bad_values_name_the_key(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(None, env)
    assert names in str(exc.value)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize(
    "url", ["postgresql://gateway:s3cr@t/@db.internal:5432/gateway", "postgresql+psycopg://gateway:s3cr@t/@db/g"]
)
def test_a_postgresql_store_url_is_taken_and_its_password_is_never_shown(url: str) -> None:
    store = load_config(None, {"GATEWAY_STORE_URL": url}).store
    assert (store.url, store.path) == (url, None)
    assert "s3cr" not in repr(store) and "s3cr" not in store.shown and ":***@" in store.shown
    assert "s3cr" not in repr(load_config(None, {"GATEWAY_STORE_URL": url}))
    with pytest.raises(ConfigError) as refused:
        load_config(None, {"GATEWAY_STORE_URL": url.replace("postgresql", "postgres", 1)})
    assert "s3cr" not in str(refused.value) and "://gateway:***@" in str(refused.value)


@pytest.mark.parametrize(
    "url",
    ["postgresql://gateway@db/gateway?password=s3cr", "postgresql:///gateway?host=/run&sslmode=require&password=s3cr"],
)
def test_a_url_refused_for_its_query_never_shows_a_password_given_there(url: str) -> None:
    """libpq takes a password as a query parameter too; the store refuses queries, and its refusal quotes the URL."""
    with pytest.raises(ConfigError) as refused:
        load_config(None, {"GATEWAY_STORE_URL": url})
    assert "s3cr" not in str(refused.value) and "password=***" in str(refused.value)


def test_a_postgresql_url_without_a_password_leaves_it_to_libpq() -> None:
    store = load_config(None, {"GATEWAY_STORE_URL": "postgresql://gateway@db.internal/gateway"}).store
    assert store.shown == store.url == "postgresql://gateway@db.internal/gateway"


def test_throttle_and_upload_caps_from_the_environment() -> None:
    config = load_config(
        None,
        {
            "GATEWAY_THROTTLE_FAILURES": "3",
            "GATEWAY_THROTTLE_MAX_LOCK": "1h",
            "GATEWAY_THROTTLE_PASSWORD_CHECK_QUEUE": "0",
            "GATEWAY_LIMITS_MAX_UPLOADS": "10",
        },
    )
    assert (config.throttle.failures, config.throttle.max_lock, config.throttle.password_check_queue) == (3, 3600, 0)
    assert config.limits.max_uploads == 10 and config.limits.max_uploads_per_user == 8


def test_unknown_section_and_bad_toml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[nonsense]\nx = 1\n")
    with pytest.raises(ConfigError, match="unknown section"):
        load_config(bad)
    bad.write_text("[server\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    ("text", "size"), [("100MiB", 100 * 2**20), ("1 GB", 10**9), ("512", 512), ("1.5KiB", 1536), (2048, 2048)]
)
def test_sizes(text: str | int, size: int) -> None:
    assert parse_size("k", text) == size


def test_relative_paths_in_a_file_are_relative_to_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue #16: the CLI run from another directory must find the store `serve` uses, not make one of its own."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "gateway.toml").write_text(
        '[store]\nurl = "sqlite:///db/gateway.db"\n[tokens]\nsecret_file = "../keys/secret.key"\n'
        '[upstream]\nurl = "http://127.0.0.1:8081/"\npassword_file = "index-password"\n'
        '[logging]\naudit_file = "/var/log/audit.jsonl"\n'
    )
    for cwd in (tmp_path, etc, Path("/")):
        config = load_config(etc / "gateway.toml", {}, cwd=cwd)
        assert config.store.path == etc / "db" / "gateway.db"
        assert config.tokens.secret_file == tmp_path / "keys" / "secret.key"
        assert config.upstream.password_file == etc / "index-password"
        assert config.upstream.data_dir == etc / "data" / "packages"  # a default, beside the file too
        assert config.logging.audit_file == Path("/var/log/audit.jsonl")
    monkeypatch.chdir(tmp_path)
    assert load_config(Path("etc/gateway.toml"), {}).store.path == etc / "db" / "gateway.db"


def test_paths_from_the_environment_are_relative_to_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "gateway.toml").write_text('[store]\nurl = "sqlite:///in-file.db"\n')
    env = {"GATEWAY_STORE_URL": "sqlite:///here.db", "GATEWAY_TOKENS_SECRET_FILE": "/abs/secret.key"}
    config = load_config(tmp_path / "gateway.toml", env, cwd=Path("/work/dir"))
    assert config.store.path == Path("/work/dir/here.db")
    assert config.tokens.secret_file == Path("/abs/secret.key")
    assert load_config(None, {}, cwd=Path("/work/dir")).store.path == Path("/work/dir/data/gateway.db")


def test_tls_files_are_anchored_like_the_other_paths_and_make_the_public_url_https(tmp_path: Path) -> None:
    """The TLS keys are file keys: relative to the file (the environment's to the working directory); with them
    the default public URL is https, an explicit https one is kept, and nothing is read yet (`serve` does)."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "gateway.toml").write_text('[server]\ntls_cert = "tls/chain.pem"\ntls_key = "../private/key.pem"\n')
    config = load_config(etc / "gateway.toml", {}, cwd=Path("/"))
    assert config.server.tls is not None
    assert config.server.tls.cert == etc / "tls" / "chain.pem"
    assert config.server.tls.key == tmp_path / "private" / "key.pem"
    assert config.server.public_url == "https://localhost:8080"
    env = {"GATEWAY_SERVER_TLS_KEY": "key.pem", "GATEWAY_SERVER_PUBLIC_URL": "https://pypi.example.org/"}
    config = load_config(etc / "gateway.toml", env, cwd=Path("/work/dir"))
    assert config.server.tls is not None and config.server.tls.key == Path("/work/dir/key.pem")
    assert config.server.public_url == "https://pypi.example.org"
    assert load_config(None, {}).server.tls is None


def test_the_configuration_file_is_found_in_one_order(tmp_path: Path) -> None:
    given, named = tmp_path / "given.toml", tmp_path / "named.toml"
    assert find_config(given, {"GATEWAY_CONFIG": str(named)}, cwd=tmp_path) == given
    assert find_config(None, {"GATEWAY_CONFIG": str(named)}, cwd=tmp_path) == named
    assert find_config(None, {"GATEWAY_CONFIG": ""}, cwd=tmp_path) is None
    (tmp_path / DEFAULT_PATH).parent.mkdir()
    (tmp_path / DEFAULT_PATH).write_text("")
    assert find_config(None, {}, cwd=tmp_path) == tmp_path / DEFAULT_PATH


def test_a_directory_as_the_configuration_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the configuration file"):
        load_config(tmp_path)


# --- [oidc] (issue #19) ---
GITHUB_ISSUER = (
    '[[oidc.issuers]]\nname = "github"\nurl = "https://token.actions.githubusercontent.com"\nkind = "github"\n'
)


def _oidc_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def test_trusted_publishing_is_off_without_an_issuer() -> None:
    oidc = load_config(ROOT / "config" / "gateway.toml").oidc
    assert oidc == OIDCConfig(audience="upload-gateway", issuers=())
    assert not oidc.enabled and oidc.issuer_named("github") is None


def test_issuers_are_read_from_the_file(tmp_path: Path) -> None:
    config = load_config(
        _oidc_file(
            tmp_path,
            '[oidc]\naudience = "pypi.internal"\n'
            + GITHUB_ISSUER
            + '[[oidc.issuers]]\nname = "gitlab-corp"\nurl = "https://gitlab.corp.example/"\nkind = "gitlab"\n'
            'algorithms = ["RS256", "ES256", "RS256"]\njwks_url = "https://gitlab.corp.example/oauth/discovery/keys"\n'
            '[[oidc.issuers]]\nname = "test"\nurl = "http://127.0.0.1:8899/api/actions"\nkind = "forgejo"\n',
        ),
        {"GATEWAY_OIDC_AUDIENCE": "pypi-internal"},
    )
    oidc = config.oidc
    assert oidc.enabled and oidc.audience == "pypi-internal"  # the environment's, over the file's
    github, gitlab, test = oidc.issuers
    assert github == OIDCIssuer("github", "https://token.actions.githubusercontent.com", "github", ("RS256",), "")
    assert gitlab == OIDCIssuer(
        "gitlab-corp", "https://gitlab.corp.example/", "gitlab", ("RS256", "ES256"), gitlab.jwks_url
    )
    assert test.url == "http://127.0.0.1:8899/api/actions" and test.kind == "forgejo"
    assert oidc.issuer_named("gitlab-corp") is gitlab and oidc.issuer_named("GitLab-corp") is None
    assert oidc.issuer_at("https://gitlab.corp.example/") is gitlab
    assert oidc.issuer_at("https://gitlab.corp.example") is None  # exactly the `iss`: the slash counts


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9000", "http://127.8.9.10/", "http://[::1]:8443/x", "http://localhost"]
)
def test_plain_http_issuers_only_on_loopback(tmp_path: Path, url: str) -> None:
    text = f'[[oidc.issuers]]\nname = "local"\nurl = "{url}"\nkind = "generic"\njwks_url = "{url}/keys"\n'
    assert load_config(_oidc_file(tmp_path, text)).oidc.issuers[0].url == url


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ('[oidc]\naudience = "two words"\n', "oidc.audience"),
        ('[oidc]\naudience = ""\n', "oidc.audience"),
        ('[oidc]\naudience = "-leading"\n', "oidc.audience"),
        ('[oidc]\naudience = "a/b"\n', "oidc.audience"),
        ('[oidc]\naudience = "' + "a" * 65 + '"\n', "oidc.audience"),
        ('[oidc]\nissuers = "github"\n', "oidc.issuers"),
        ('[oidc]\nissuers = ["github"]\n', "oidc.issuers"),
        ('[oidc]\ncolour = "blue"\n', "oidc.colour"),
        (GITHUB_ISSUER + "colour = 1\n", "oidc.issuers[0].colour"),
        ('[[oidc.issuers]]\nurl = "https://x.example"\nkind = "github"\n', "oidc.issuers[0].name"),
        ('[[oidc.issuers]]\nname = "x"\nkind = "github"\n', "oidc.issuers[0].url"),
        ('[[oidc.issuers]]\nname = "x"\nurl = "https://x.example"\n', "oidc.issuers[0].kind"),
        (GITHUB_ISSUER.replace('"github"\nurl', '"GitHub"\nurl'), "oidc.issuers[0].name"),
        (GITHUB_ISSUER.replace('"github"\nurl', '"git hub"\nurl'), "oidc.issuers[0].name"),
        (GITHUB_ISSUER.replace('kind = "github"', 'kind = "bitbucket"'), "oidc.issuers[0].kind"),
        (GITHUB_ISSUER + GITHUB_ISSUER.replace("token.actions", "other"), "oidc.issuers[1].name"),
        (GITHUB_ISSUER + GITHUB_ISSUER.replace('"github"\nurl', '"ghes"\nurl'), "oidc.issuers[1].url"),
        (GITHUB_ISSUER.replace("https://", "http://"), "oidc.issuers[0].url"),
        (GITHUB_ISSUER.replace("https://", "ftp://"), "oidc.issuers[0].url"),
        (GITHUB_ISSUER.replace("https://token", "https://user:pw@token"), "oidc.issuers[0].url"),
        (GITHUB_ISSUER.replace(".com", ".com/?x=1"), "oidc.issuers[0].url"),
        (GITHUB_ISSUER.replace(".com", ".com/#x"), "oidc.issuers[0].url"),
        (GITHUB_ISSUER.replace(".com", ".com:99999"), "oidc.issuers[0].url"),
        (GITHUB_ISSUER.replace(".com", ".com/a b"), "oidc.issuers[0].url"),
        (GITHUB_ISSUER.replace("https://token", "https://tökén"), "oidc.issuers[0].url"),
        (GITHUB_ISSUER.replace("https://token.actions.githubusercontent.com", "https://"), "oidc.issuers[0].url"),
        (GITHUB_ISSUER + 'jwks_url = "http://keys.example.org/jwks"\n', "oidc.issuers[0].jwks_url"),
        (GITHUB_ISSUER + 'algorithms = ["HS256"]\n', "oidc.issuers[0].algorithms"),
        (GITHUB_ISSUER + 'algorithms = ["RS256", "none"]\n', "oidc.issuers[0].algorithms"),
        (GITHUB_ISSUER + 'algorithms = ["rs256"]\n', "oidc.issuers[0].algorithms"),
        (GITHUB_ISSUER + 'algorithms = ["ES512"]\n', "oidc.issuers[0].algorithms"),
        (GITHUB_ISSUER + "algorithms = []\n", "oidc.issuers[0].algorithms"),
        (GITHUB_ISSUER + 'algorithms = "RS256"\n', "oidc.issuers[0].algorithms"),
        (GITHUB_ISSUER + "name = 5\n", "not valid TOML"),  # a key twice
        (GITHUB_ISSUER.replace('name = "github"', "name = 5"), "oidc.issuers[0].name"),
    ],
)
def test_bad_oidc_values_name_the_key(tmp_path: Path, text: str, names: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(_oidc_file(tmp_path, text))
    assert names in str(exc.value)
    assert "\n" not in str(exc.value)


def test_a_symmetric_algorithm_is_refused_in_words_that_say_why(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'HS512' not allowed \(never HS\* or none: only asymmetric signatures\)"):
        load_config(_oidc_file(tmp_path, GITHUB_ISSUER + 'algorithms = ["HS512"]\n'))


def test_the_issuers_cannot_come_from_the_environment(tmp_path: Path) -> None:
    """A list of tables has no one-line form; the variable is refused rather than half-read."""
    with pytest.raises(ConfigError) as exc:
        load_config(_oidc_file(tmp_path, GITHUB_ISSUER), {"GATEWAY_OIDC_ISSUERS": "github"})
    assert str(exc.value) == (
        "GATEWAY_OIDC_ISSUERS: the issuers cannot be set from the environment; write [[oidc.issuers]] in the file"
    )
    with pytest.raises(ConfigError, match=r"oidc\.audience"):
        load_config(None, {"GATEWAY_OIDC_AUDIENCE": "not a word"})


def test_the_test_harness_writes_issuer_tables(tmp_path: Path) -> None:
    issuers = [{"name": "a", "url": "https://a.example", "kind": "github", "algorithms": ["RS256", "ES256"]}]
    write_config(tmp_path / "gateway.toml", {"oidc": {"audience": "gw", "issuers": issuers}})
    oidc = load_config(tmp_path / "gateway.toml").oidc
    assert oidc == OIDCConfig("gw", (OIDCIssuer("a", "https://a.example", "github", ("RS256", "ES256")),))
