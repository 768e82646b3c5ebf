"""`Services` is one immutable object with every field required and none optional; nothing asks it whether the
gateway is ready any more (the key is set before aiohttp makes its server: tests/integration/test_services.py)."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path

import pytest

from gateway.services import Services

GATEWAY = Path(__file__).resolve().parent.parent / "gateway"


def test_services_are_frozen_with_slots() -> None:
    services = Services(**{field.name: object() for field in dataclasses.fields(Services)})
    with pytest.raises(dataclasses.FrozenInstanceError):
        services.store = object()  # type: ignore[misc]
    assert not hasattr(services, "__dict__")


def test_every_field_of_the_services_is_required_and_none_is_optional() -> None:
    hints = typing.get_type_hints(Services)
    for field in dataclasses.fields(Services):
        assert field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING, field.name
        hint = hints[field.name]
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            assert type(None) not in typing.get_args(hint), field.name
        assert hint is not type(None) and hint is not typing.Any, field.name


def test_no_module_asks_whether_the_gateway_is_ready() -> None:
    assert not hasattr(Services, "ready") and not hasattr(Services, "throttle")
    asking = re.compile(r"\.(ready|throttle)\(\)")
    found = [str(path.relative_to(GATEWAY)) for path in GATEWAY.rglob("*.py") if asking.search(path.read_text())]
    assert found == []
