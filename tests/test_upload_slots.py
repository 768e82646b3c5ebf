"""The caps on uploads in flight (gateway/upload/slots.py)."""

from __future__ import annotations

import pytest

from gateway.errors import GatewayError
from gateway.upload.slots import UploadSlots


def test_uploads_in_flight_are_capped_per_user_and_in_all() -> None:
    slots = UploadSlots(per_user=2, total=3)
    with slots.any(), slots.of_user("u1", "ann"), slots.any(), slots.of_user("u1", "ann"), slots.any():
        with pytest.raises(GatewayError) as exc:
            slots.of_user("u1", "ann").__enter__()
        assert exc.value.status == 429 and exc.value.reason == "too_many_uploads" and "'ann'" in exc.value.message
        with slots.of_user("u2", "bob"):
            pass
        with pytest.raises(GatewayError) as exc:
            slots.any().__enter__()
        assert exc.value.reason == "uploads_busy" and exc.value.headers["Retry-After"].isdigit()
    with slots.any(), slots.any(), slots.any(), slots.of_user("u1", "ann"), slots.of_user("u1", "ann"):
        pass  # every place came back
