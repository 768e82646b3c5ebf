"""The read allowlist: path tricks are refused, the three routes map onto exactly one index URL each."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import GatewayError
from gateway.reads.paths import FileRequest, IndexLayout, ProjectPage, ReadRoute, SimpleRoot, decide

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = "https://pkgs.example.com"
PYPISERVER = IndexLayout.build("http://127.0.0.1:8081")
DEVPI = IndexLayout.build("http://127.0.0.1:3141/", "http://127.0.0.1:3141/alice/dev/+simple/")
LAYOUTS = [PYPISERVER, DEVPI]


def refusal(target: str, layout: IndexLayout = PYPISERVER) -> GatewayError:
    with pytest.raises(GatewayError) as exc:
        decide(target, layout)
    return exc.value


def assert_inside(route: ReadRoute, layout: IndexLayout) -> None:
    """What every route the allowlist returns must satisfy, whatever the target was."""
    url = route.upstream_url
    assert url.startswith((layout.simple, *layout.file_roots))
    segments = urlsplit(url).path.split("/")
    assert "." not in segments and ".." not in segments
    assert "%" not in url, "the upstream path is written out decoded: no escape survives to be decoded again"
    assert unquote(url) == url == unquote(unquote(url))
    assert "\\" not in url and "?" not in url and "#" not in url
    assert "//" not in url.split("://", 1)[1]


@pytest.mark.parametrize(
    ("target", "status", "reason"),
    [
        # The escapes from simple_url, as a devpi index was reached with the service credential.
        ("/simple/%2e%2e/%2e%2e/root/dev/+api", 400, "path_traversal"),
        ("/simple/%2E%2E/", 400, "path_traversal"),
        ("/simple/.%2e/x/", 400, "path_traversal"),
        ("/simple/../packages/x.whl", 400, "path_traversal"),
        ("/packages/./x.whl", 400, "path_traversal"),
        ("/packages/%2e/x.whl", 400, "path_traversal"),
        ("/packages/..%2f..%2fetc%2fpasswd", 400, "bad_percent_encoding"),
        ("/packages/a%2Fb.whl", 400, "bad_percent_encoding"),
        ("/packages/a%5cb.whl", 400, "bad_percent_encoding"),
        ("/packages/%252e%252e/x.whl", 400, "bad_percent_encoding"),
        ("/packages/%25", 400, "bad_percent_encoding"),
        ("/packages/%c0%ae%c0%ae/x.whl", 400, "bad_percent_encoding"),  # overlong UTF-8 for '.'
        ("/packages/%e0%80%af", 400, "bad_percent_encoding"),  # overlong '/'
        ("/packages/%ff.whl", 400, "bad_percent_encoding"),
        ("/packages/%ed%a0%80.whl", 400, "bad_percent_encoding"),  # a surrogate
        ("/packages/%2", 400, "bad_percent_encoding"),
        ("/packages/%zz.whl", 400, "bad_percent_encoding"),
        ("/packages/%00.whl", 400, "bad_percent_encoding"),
        ("/packages/x%0d%0aSet-Cookie:%20a=b", 400, "bad_percent_encoding"),
        ("/packages/x\\..\\y.whl", 400, "bad_path"),
        ("//simple/", 400, "bad_path"),
        ("/simple//", 400, "bad_path"),
        ("/packages//x.whl", 400, "bad_path"),
        ("/packages/x;.whl", 400, "bad_path"),
        ("/packages/%3Cscript%3E.whl", 400, "bad_path"),
        ("/packages/caf%C3%A9.whl", 400, "bad_path"),
        ("http://127.0.0.1:8081/simple/", 400, "bad_target"),
        ("HTTPS://evil.example/packages/x.whl", 400, "bad_target"),
        ("*", 400, "bad_target"),
        ("simple/", 400, "bad_target"),
        ("/simple/\x00/", 400, "bad_target"),
        ("/simple/a b/", 400, "bad_target"),
        ("/simple/\r\n", 400, "bad_target"),
        ("/simple/\x7f/", 400, "bad_target"),
        ("/simple/café/", 400, "bad_target"),
        ("/simple/#x", 400, "bad_target"),
        ("/packages/" + "a" * 3000, 414, "target_too_long"),
        # None of the routes: the index's other read API is not reachable through the gateway.
        ("/root/private/+simple/", 404, "unknown_route"),
        ("/+login", 404, "unknown_route"),
        ("/+api", 404, "unknown_route"),
        ("/", 404, "unknown_route"),
        ("/demo/json", 404, "unknown_route"),
        ("/Simple/", 404, "unknown_route"),
        ("/simple/demo/extra/", 404, "unknown_route"),
        ("/simple/-demo/", 404, "unknown_route"),
        ("/packages/", 404, "unknown_route"),
        ("/packages", 404, "unknown_route"),
        ("/packages/sub/", 404, "unknown_route"),
        ("/packagesx/a.whl", 404, "unknown_route"),
    ],
)
def test_refusals(target: str, status: int, reason: str) -> None:
    for layout in LAYOUTS:
        exc = refusal(target, layout)
        assert (exc.status, exc.reason) == (status, reason), target
        assert "\n" not in exc.message and exc.message


def test_the_404_names_the_routes() -> None:
    assert refusal("/+login", DEVPI).message == (
        "Not found: this gateway serves the index at /simple/, project pages at /simple/<project>/ "
        "and files under /alice/dev/+f/…; uploads go to /legacy/"
    )
    assert "files under /packages/…" in refusal("/x").message


def test_devpi_files_are_only_under_its_file_root() -> None:
    assert refusal("/packages/demo-1.0.tar.gz", DEVPI).reason == "unknown_route"
    assert refusal("/alice/dev/demo/", DEVPI).reason == "unknown_route"
    assert refusal("/alice/other/+f/ab/demo-1.0.tar.gz", DEVPI).reason == "unknown_route"
    assert refusal("/alice/dev/+f/../+simple/", DEVPI).reason == "path_traversal"


@pytest.mark.parametrize(
    ("layout", "target", "expected"),
    [
        (PYPISERVER, "/simple/", SimpleRoot("http://127.0.0.1:8081/simple/", "/simple/", "", needs_redirect=False)),
        (
            DEVPI,
            "/simple/",
            SimpleRoot("http://127.0.0.1:3141/alice/dev/+simple/", "/simple/", "", needs_redirect=False),
        ),
        (PYPISERVER, "/simple", SimpleRoot("http://127.0.0.1:8081/simple/", "/simple/", "", needs_redirect=True)),
        (
            PYPISERVER,
            "/simple/demo-pkg/",
            ProjectPage(
                "demo-pkg",
                True,
                "http://127.0.0.1:8081/simple/demo-pkg/",
                "/simple/demo-pkg/",
                "",
                needs_redirect=False,
            ),
        ),
        (
            DEVPI,
            "/simple/Demo_Pkg/",
            ProjectPage(
                "demo-pkg",
                False,
                "http://127.0.0.1:3141/alice/dev/+simple/demo-pkg/",
                "/simple/demo-pkg/",
                "",
                needs_redirect=True,
            ),
        ),
        (
            PYPISERVER,
            "/simple/demo-pkg",
            ProjectPage(
                "demo-pkg", True, "http://127.0.0.1:8081/simple/demo-pkg/", "/simple/demo-pkg/", "", needs_redirect=True
            ),
        ),
        (
            PYPISERVER,
            "/simple/dem%6F/",
            ProjectPage("demo", True, "http://127.0.0.1:8081/simple/demo/", "/simple/demo/", "", needs_redirect=True),
        ),
        (
            PYPISERVER,
            "/packages/Demo_Pkg-0.1.0-py3-none-any.whl",
            FileRequest(
                "http://127.0.0.1:8081/packages/Demo_Pkg-0.1.0-py3-none-any.whl",
                "/packages/Demo_Pkg-0.1.0-py3-none-any.whl",
                "Demo_Pkg-0.1.0-py3-none-any.whl",
                "demo-pkg",
            ),
        ),
        (
            PYPISERVER,
            "/packages/demo-1.0%2Blocal-py3-none-any.whl.metadata",
            FileRequest(
                "http://127.0.0.1:8081/packages/demo-1.0+local-py3-none-any.whl.metadata",
                "/packages/demo-1.0+local-py3-none-any.whl.metadata",
                "demo-1.0+local-py3-none-any.whl.metadata",
                "demo",
            ),
        ),
        (
            PYPISERVER,
            "/packages/sub/dir/demo-1.0.tar.gz?x=1",
            FileRequest(
                "http://127.0.0.1:8081/packages/sub/dir/demo-1.0.tar.gz",
                "/packages/sub/dir/demo-1.0.tar.gz",
                "demo-1.0.tar.gz",
                "demo",
            ),
        ),
        (
            DEVPI,
            "/alice/dev/+f/ea7/ce85b9143e8c0/newproj-0.1.0-py3-none-any.whl",
            FileRequest(
                "http://127.0.0.1:3141/alice/dev/+f/ea7/ce85b9143e8c0/newproj-0.1.0-py3-none-any.whl",
                "/alice/dev/+f/ea7/ce85b9143e8c0/newproj-0.1.0-py3-none-any.whl",
                "newproj-0.1.0-py3-none-any.whl",
                "newproj",
            ),
        ),
        (
            PYPISERVER,
            "/packages/demo%2Bpkg-1.0.tar.gz",
            FileRequest(
                "http://127.0.0.1:8081/packages/demo+pkg-1.0.tar.gz",
                "/packages/demo+pkg-1.0.tar.gz",
                "demo+pkg-1.0.tar.gz",
                None,
            ),
        ),
        (
            PYPISERVER,
            "/packages/notes.txt",
            FileRequest("http://127.0.0.1:8081/packages/notes.txt", "/packages/notes.txt", "notes.txt", None),
        ),
    ],
)
def test_routes(layout: IndexLayout, target: str, expected: ReadRoute) -> None:
    route = decide(target, layout)
    assert route == expected
    assert_inside(route, layout)


def test_redirects_keep_the_query_and_the_format_parameter_is_read() -> None:
    route = decide("/simple/Demo.Pkg?format=application/vnd.pypi.simple.v1%2Bjson", PYPISERVER)
    assert isinstance(route, ProjectPage) and route.needs_redirect
    assert route.location == "/simple/demo-pkg/?format=application/vnd.pypi.simple.v1%2Bjson"
    assert route.format == "application/vnd.pypi.simple.v1+json"
    root = decide("/simple/?a=1&format=text/html&format=x", PYPISERVER)
    assert isinstance(root, SimpleRoot) and root.format == "text/html" and not root.needs_redirect
    assert decide("/simple/", PYPISERVER).format is None  # type: ignore[union-attr]


def test_layout_defaults_and_checks() -> None:
    assert PYPISERVER.file_roots == ("http://127.0.0.1:8081/packages/",)
    assert DEVPI.file_roots == ("http://127.0.0.1:3141/alice/dev/+f/",)
    assert DEVPI.file_paths == ("/alice/dev/+f/",)
    custom = IndexLayout.build("HTTP://Index:80/pypi", file_roots=["files/", "http://index/pypi/more/"])
    assert custom == IndexLayout(
        "http://index/pypi/", "http://index/pypi/simple/", ("http://index/pypi/files/", "http://index/pypi/more/")
    )
    for base, roots in [
        ("ftp://index/", ()),
        ("http://user:pw@index/", ()),
        ("http://index/?q=1", ()),
        ("http://index/a/../", ()),
        ("http://index/%2e/", ()),
        ("http://index/", ("http://other/packages/",)),
        ("http://index/", ("simple/files/",)),
        ("http://index/", ("a/", "a/b/")),
        ("http://index/", ("",)),
    ]:
        with pytest.raises(ValueError):
            IndexLayout.build(base, file_roots=roots)
    # Issue #14 review: a directory-style root that holds devpi's simple index would relay its pages unrewritten
    # and everything beside them (+api, +e/) with the service credential.
    for roots in (("root/dev/",), ("root/",), ("http://index/root/dev/+simple/",)):
        with pytest.raises(ValueError, match="holds the simple index"):
            IndexLayout.build("http://index/", "http://index/root/dev/+simple/", file_roots=roots)


def test_index_urls_map_to_the_gateway() -> None:
    assert DEVPI.to_public("http://127.0.0.1:3141/alice/dev/+f/ea7/x.whl#sha256=ff", PUBLIC) == (
        f"{PUBLIC}/alice/dev/+f/ea7/x.whl#sha256=ff"
    )
    assert DEVPI.to_public("http://127.0.0.1:3141/alice/dev/+simple/demo/", PUBLIC) == f"{PUBLIC}/simple/demo/"
    assert PYPISERVER.to_public("HTTP://127.0.0.1:8081/packages/x.whl", PUBLIC) == f"{PUBLIC}/packages/x.whl"
    assert PYPISERVER.to_public("http://127.0.0.1:8081/+login", PUBLIC) is None
    assert PYPISERVER.to_public("http://evil@127.0.0.1:8081/packages/x.whl", PUBLIC) is None
    assert PYPISERVER.to_public("https://127.0.0.1:8081/packages/x.whl", PUBLIC) is None
    assert PYPISERVER.to_public("javascript:alert(1)", PUBLIC) is None
    assert PYPISERVER.on_index_origin("http://evil@127.0.0.1:8081/")
    assert PYPISERVER.on_index_origin("http://127.0.0.1:8081/+login")
    assert not PYPISERVER.on_index_origin("http://127.0.0.1:8082/")
    assert not PYPISERVER.on_index_origin("https://files.example/x.whl")
    assert not PYPISERVER.on_index_origin("http://[::1/")


# Pieces of targets that attackers and odd clients send, so generated targets hit every refusal and every route.
ATOMS = [
    "simple", "packages", "alice", "dev", "+f", "+simple", "root", "demo", "Demo_Pkg", "demo-1.0.tar.gz",
    "x-1.0-py3-none-any.whl", "..", ".", "...", "%2e", "%2E", "%2e%2e", ".%2e", "%2f", "%2F", "%5c", "%5C", "\\",
    "", "%25", "%252e", "%252f", "%c0%ae", "%c0%af", "%00", "%0a", "%20", "%41", "?", "#", "?format=x", "//", ";",
    "%3b", "+", "~", "!", "http:", "%ff", "%", "%e2%80%ae", "\x00", " ", "é", "a" * 40,
]  # fmt: skip


@settings(max_examples=600)
@given(
    st.lists(st.sampled_from(ATOMS), max_size=8),
    st.sampled_from(["/", "", "//", "http://127.0.0.1:8081/"]),
    st.sampled_from(LAYOUTS),
)
def test_any_assembled_target_stays_inside_the_roots(atoms: list[str], lead: str, layout: IndexLayout) -> None:
    check_target(lead + "/".join(atoms), layout)


@settings(max_examples=400)
@given(st.text(max_size=80), st.sampled_from(LAYOUTS))
def test_any_text_target_stays_inside_the_roots(text: str, layout: IndexLayout) -> None:
    check_target("/" + text, layout)
    check_target(text, layout)


def check_target(target: str, layout: IndexLayout) -> None:
    try:
        route = decide(target, layout)
    except GatewayError as exc:
        assert exc.status in (400, 404, 414)
        assert exc.reason in READ_REASONS
        return
    assert_inside(route, layout)
    if isinstance(route, FileRequest):
        assert layout.to_public(route.upstream_url, PUBLIC) == PUBLIC + route.path
    elif isinstance(route, ProjectPage):
        assert route.path == f"/simple/{route.project}/" and route.upstream_url == f"{layout.simple}{route.project}/"
    else:
        assert route.path == "/simple/" and route.upstream_url == layout.simple


SEGMENT = st.from_regex(r"[A-Za-z0-9._~+!-]{1,20}", fullmatch=True).filter(lambda s: s not in (".", ".."))


@given(st.lists(SEGMENT, min_size=1, max_size=4), st.sampled_from(LAYOUTS), st.data())
def test_every_file_link_the_rewriter_makes_comes_back_to_its_index_url(
    segments: list[str], layout: IndexLayout, data: st.DataObject
) -> None:
    root = data.draw(st.sampled_from(layout.file_roots))
    url = root + "/".join(segments)
    public = layout.to_public(url, PUBLIC)
    assert public is not None
    route = decide(public[len(PUBLIC) :], layout)
    assert isinstance(route, FileRequest) and route.upstream_url == url


@given(st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,20}[A-Za-z0-9])?", fullmatch=True), st.sampled_from(LAYOUTS))
def test_every_project_link_comes_back_to_its_page(name: str, layout: IndexLayout) -> None:
    public = layout.to_public(f"{layout.simple}{name}/", PUBLIC)
    assert public == f"{PUBLIC}/simple/{name}/"
    route = decide(public[len(PUBLIC) :], layout)
    assert isinstance(route, ProjectPage) and route.needs_redirect == (not route.normalized)
    assert route.upstream_url == f"{layout.simple}{route.project}/"


def read_reason_codes() -> set[str]:
    """Every reason code the gateway/reads modules raise (GatewayError or their refusal helpers)."""
    codes: set[str] = set()
    for path in (ROOT / "gateway" / "reads").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("GatewayError", "_refuse"):
                values = [*node.args, *(keyword.value for keyword in node.keywords)]
            elif isinstance(node, ast.FunctionDef) and node.name == "_refuse":
                values = list(node.args.defaults)
            else:
                continue
            codes |= {
                v.value
                for v in values
                if isinstance(v, ast.Constant) and re.fullmatch(r"[a-z][a-z0-9_]+", str(v.value))
            }
    return codes


READ_REASONS = read_reason_codes()


def test_every_read_reason_is_documented_in_the_reads_section() -> None:
    assert {"bad_target", "bad_path", "bad_percent_encoding", "path_traversal", "unknown_route"} <= READ_REASONS
    text = (ROOT / "docs" / "errors.md").read_text()
    section = text.split("\n## Reads", 1)[1].split("\n## ", 1)[0]
    assert READ_REASONS - set(re.findall(r"`([a-z][a-z0-9_]+)`", section)) == set()
