from __future__ import annotations

from gateway.index_urls import UpstreamURLs

PUBLIC = "https://pkgs.example.com"
DEVPI = UpstreamURLs.build(
    "http://127.0.0.1:3141/", "http://127.0.0.1:3141/alice/dev/", "http://127.0.0.1:3141/alice/dev/+simple/"
)


def test_the_index_words_show_the_gateway_not_the_index() -> None:
    docker = UpstreamURLs.build("http://index:8080/")
    said = "File exists at http://index:8080/packages/demo-1.0.tar.gz; see HTTP://INDEX:8080/ or http://index:8080"
    shown = docker.hide(said, PUBLIC)
    assert "index:8080" not in shown.lower()
    assert f"File exists at {PUBLIC}/packages/demo-1.0.tar.gz;" in shown
    assert (
        DEVPI.hide("see http://127.0.0.1:3141/alice/dev/+f/ab/x.whl", PUBLIC) == f"see {PUBLIC}/alice/dev/+f/ab/x.whl"
    )
    assert docker.hide("nothing of the index here: http://elsewhere:8080/", PUBLIC).endswith("http://elsewhere:8080/")


def test_urls_end_with_a_slash_and_index_urls_map_to_the_gateway_or_nowhere() -> None:
    pypiserver = UpstreamURLs.build("http://127.0.0.1:8081")
    assert pypiserver == UpstreamURLs(
        "http://127.0.0.1:8081/", "http://127.0.0.1:8081/", "http://127.0.0.1:8081/simple/"
    )
    assert DEVPI.to_public("http://127.0.0.1:3141/alice/dev/+simple/demo/", PUBLIC) == f"{PUBLIC}/simple/demo/"
    assert DEVPI.to_public("http://127.0.0.1:3141/alice/dev/+f/ab/x.whl", PUBLIC) == f"{PUBLIC}/alice/dev/+f/ab/x.whl"
    assert DEVPI.to_public("http://elsewhere:3141/x", PUBLIC) is None
