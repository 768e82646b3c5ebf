"""Index pages re-emitted safely: escaped and inert whatever the index wrote, linear, chunk-independent."""

from __future__ import annotations

import itertools
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.reads.html_tokens import PageTooComplex, unescape_attribute
from gateway.reads.paths import IndexLayout
from gateway.reads.rewrite import PageRewriter, file_links, links_of, rewrite_page, root_projects

LAYOUT = IndexLayout.build("http://127.0.0.1:8081")
PAGE_URL = "http://127.0.0.1:8081/simple/demo/"
PUBLIC = "https://pkgs.example.com"

HOSTILE = (
    b"<!DOCTYPE html><html><head><title>Links for demo</title><script>alert(1)</script>"
    b"<base href='https://evil.example/'></head><body>\n"
    b'<a href="/x&quot; onmouseover=&quot;alert(1)">quote</a>\n'
    b'<a href="javascript:alert(1)">js</a><a href=" JaVaScRiPt:alert(2)">js2</a><a href="java\tscript:x">js3</a>\n'
    b'<a href="../../packages/demo-1.0.tar.gz#sha256=AB12" data-requires-python="&gt;=3.8&quot;x" '
    b'data-yanked="" onclick="steal()">demo-1.0.tar.gz</a>\n'
    b'<a href="http://127.0.0.1:8081/+login">login</a><a href="https://files.example/x.whl">ext</a>\n'
    b"<img src=x onerror=alert(1)><svg onload=alert(1)><iframe src=//evil></iframe>\n"
    b"<!-- <script>alert(3)</script> --><style>*{}</style>&lt;script&gt;&#x3C;b&#62;\n"
    b"</body></html>"
)


def rewrite(body: bytes) -> bytes:
    return rewrite_page(body, PAGE_URL, LAYOUT, PUBLIC).body


def test_a_hostile_page_comes_back_escaped_and_inert() -> None:
    out = rewrite(HOSTILE)
    assert out == (
        b"<!DOCTYPE html><html><head><title>Links for demo</title>&lt;script&gt;alert(1)&lt;/script&gt;"
        b"&lt;base href='https://evil.example/'&gt;</head><body>\n"
        b"<a>quote</a>\n"  # on the index's host but outside its read roots: dropped
        b"<a>js</a><a>js2</a><a>js3</a>\n"
        b'<a href="https://pkgs.example.com/packages/demo-1.0.tar.gz#sha256=AB12" '
        b'data-requires-python="&gt;=3.8&quot;x" data-yanked="">demo-1.0.tar.gz</a>\n'
        b'<a>login</a><a href="https://files.example/x.whl">ext</a>\n'
        b"&lt;img src=x onerror=alert(1)&gt;&lt;svg onload=alert(1)&gt;&lt;iframe src=//evil&gt;&lt;/iframe&gt;\n"
        b"&lt;style&gt;*{}&lt;/style&gt;&lt;script&gt;&lt;b&gt;\n"
        b"</body></html>"
    )
    for dangerous in (b"<script", b"<img", b"<svg", b"<iframe", b"<base", b"<style", b'onmouseover="', b"onclick"):
        assert dangerous not in out
    assert b"javascript" not in out.lower() and b"java\tscript" not in out
    assert b'<a href="https://pkgs.example.com/packages/demo-1.0.tar.gz#sha256=AB12"' in out
    assert b'data-requires-python="&gt;=3.8&quot;x"' in out


def test_the_escaped_quote_stays_inside_the_attribute() -> None:
    out = rewrite(b'<a href="https://files.example/x&quot; onmouseover=&quot;alert(1)">x</a>')
    assert out == b'<a href="https://files.example/x&quot; onmouseover=&quot;alert(1)">x</a>'
    out = rewrite(b"<a href='https://files.example/&#39; onmouseover=&#39;alert(1)' title=a&quot;b>x</a>")
    assert out == b'<a href="https://files.example/&#x27; onmouseover=&#x27;alert(1)" title="a&quot;b">x</a>'


def test_links_to_the_index_point_at_the_gateway_and_others_on_its_host_are_dropped() -> None:
    out = rewrite(b'<a href="demo-1.0.tar.gz">a</a><a href="/simple/other/">b</a><a href="/+api">c</a>')
    assert out == (
        b'<a href="https://pkgs.example.com/simple/demo/demo-1.0.tar.gz">a</a>'
        b'<a href="https://pkgs.example.com/simple/other/">b</a><a>c</a>'
    )


def test_devpi_relative_links_are_rewritten() -> None:
    devpi = IndexLayout.build("http://127.0.0.1:3141/", "http://127.0.0.1:3141/alice/dev/+simple/")
    page = (
        b'<a href="../../+f/ea7/ce85b9143e8c0/newproj-0.1.0-py3-none-any.whl#sha256=ff" '
        b'data-requires-python="&gt;=3.8">newproj</a>'
    )
    out = rewrite_page(page, "http://127.0.0.1:3141/alice/dev/+simple/newproj/", devpi, PUBLIC).body
    assert out == (
        b'<a href="https://pkgs.example.com/alice/dev/+f/ea7/ce85b9143e8c0/newproj-0.1.0-py3-none-any.whl#sha256=ff" '
        b'data-requires-python="&gt;=3.8">newproj</a>'
    )


def test_files_and_projects_are_read_from_the_links() -> None:
    page = rewrite_page(HOSTILE, PAGE_URL, LAYOUT, PUBLIC)
    files = {link.filename: link for link in file_links(page.links)}
    demo = files["demo-1.0.tar.gz"]
    assert demo.sha256 == "ab12" and demo.requires_python == '>=3.8"x' and demo.yanked == ""
    assert demo.url == "https://pkgs.example.com/packages/demo-1.0.tar.gz#sha256=AB12"
    assert files["x.whl"].yanked is None and files["x.whl"].hashes == {}
    root = links_of('<a href="/simple/Demo_Pkg/">Demo_Pkg</a><a href="x/">-bad-</a><a>demo.pkg</a><a>Other</a>')
    assert root_projects(root) == [("demo-pkg", "Demo_Pkg"), ("other", "Other")]


def test_attribute_references_decode_as_browsers_do() -> None:
    assert unescape_attribute("?a=1&copy=2&amp;b&lt;") == "?a=1&copy=2&b<"
    assert unescape_attribute("&#x27;&quot;") == "'\""


@pytest.mark.parametrize(
    "attack",
    ["<a " * 8000, '<a href="' * 8000, "<!--" * 100_000, "&" * 200_000, "<a x=1 " * 8000, "</a" * 50_000],
)
def test_hostile_input_is_linear(attack: str) -> None:
    """The duplicate-listing regex took 1.2 s on '<a ' * 8000; the issue's bound is generous: under a second."""
    started = time.perf_counter()
    try:
        rewrite(attack.encode())
        links_of(attack)
    except PageTooComplex as exc:
        assert exc.status == 502 and exc.reason == "upstream_bad_page"
    assert time.perf_counter() - started < 1.0


def test_a_tag_longer_than_the_cap_is_refused() -> None:
    with pytest.raises(PageTooComplex):
        rewrite(b"<a title='" + b"x" * 70_000 + b"'>")


@settings(max_examples=200)
@given(st.lists(st.integers(min_value=1, max_value=len(HOSTILE) - 1), max_size=12))
def test_the_output_does_not_depend_on_where_chunks_split(cuts: list[int]) -> None:
    bounds = [0, *sorted(set(cuts)), len(HOSTILE)]
    rewriter = PageRewriter(PAGE_URL, LAYOUT, PUBLIC)
    out = b"".join(rewriter.feed(HOSTILE[a:b]) for a, b in itertools.pairwise(bounds)) + rewriter.close()
    assert out == rewrite(HOSTILE)


@settings(max_examples=300)
@given(st.text(alphabet=st.sampled_from(list("<>/=\"'&;#x-! aAhrefsciptl:\n")), max_size=200))
def test_any_markup_comes_out_without_live_script(text: str) -> None:
    out = rewrite(text.encode()).decode()
    lowered = out.lower()
    assert "<script" not in lowered and "javascript:" not in lowered
    for tag_start in range(len(out)):
        if out[tag_start] == "<":
            tag = out[tag_start : out.find(">", tag_start) + 1]
            assert tag.startswith(("<a", "</", "<!DOCTYPE html>", "<br", "<p", "<b", "<i", "<h", "<t", "<s", "<e"))
