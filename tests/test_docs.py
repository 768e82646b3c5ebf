"""The docs keep up with the code: every refusal code in docs/errors.md, every metric in docs/operations.md."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE = re.compile(r"^[a-z][a-z0-9_]+$")
# Functions whose arguments carry a refusal's reason code.
RAISERS = {
    "GatewayError",
    "IndexFault",
    "Denied",
    "challenge",
    "bad_form",
    "malformed",
    "_refuse",
    "invalid_token",
    "_refusal",
}


def reason_codes() -> set[str]:
    codes: set[str] = set()
    # The upload path; the web UI's codes are not upload reasons.
    packages = [ROOT / "gateway", ROOT / "gateway" / "upload", ROOT / "gateway" / "archive"]
    for path in [path for package in packages for path in package.glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in RAISERS:
                # IndexFault's `kind` is a metric label, not a reason code.
                values = [*node.args, *(keyword.value for keyword in node.keywords if keyword.arg != "kind")]
            elif isinstance(node, ast.FunctionDef) and node.name in RAISERS:
                values = [*node.args.defaults, *(d for d in node.args.kw_defaults if d is not None)]
            else:
                continue
            codes |= {v.value for v in values if isinstance(v, ast.Constant) and CODE.match(str(v.value))}
    return codes


def test_every_reason_code_is_documented() -> None:
    codes = reason_codes()
    assert {"invalid_token", "digest_mismatch", "file_exists", "read_timeout", "not_allowed"} <= codes
    documented = set(re.findall(r"`([a-z][a-z0-9_]+)`", (ROOT / "docs" / "errors.md").read_text()))
    assert codes - documented == set()


def test_every_metric_has_a_row_in_the_operations_metrics_table() -> None:
    from gateway.metrics import Metrics

    registered = {  # prometheus-client names counters without `_total` and info metrics without `_info`
        metric.name + ("_info" if metric.type == "info" else "")
        for metric in Metrics().registry.collect()
        if metric.name.startswith("upload_gateway_")
    }
    table = (ROOT / "docs" / "operations.md").read_text().split("## Metrics", 1)[1].split("\n## ", 1)[0]
    rows = set(re.findall(r"^\| `(upload_gateway_[a-z_]+)`", table, re.MULTILINE))
    assert {name.removesuffix("_total") for name in rows} >= registered, registered - rows


def test_every_module_has_a_row_in_the_architecture_module_map() -> None:
    """docs/architecture.md is the map a newcomer reads first: each module of gateway/ has its row there, and
    no row names a module that is gone (a package's `__init__.py` only when it holds code)."""
    gateway = ROOT / "gateway"
    modules = {
        path.relative_to(gateway).as_posix()
        for path in gateway.rglob("*.py")
        if path.name != "__init__.py" or path.parent == gateway or _holds_code(path)
    }
    text = (ROOT / "docs" / "architecture.md").read_text()
    rows = set(re.findall(r"^\| `([a-z_/]+\.py)`", text, re.MULTILINE))
    assert modules - rows == set(), "modules without a row"
    assert rows - modules == set(), "rows for modules that are gone"


def _holds_code(path: Path) -> bool:
    """More than a docstring and imports re-exported."""
    tree = ast.parse(path.read_text())
    return any(not isinstance(node, (ast.Expr, ast.Import, ast.ImportFrom, ast.Assign)) for node in tree.body)
