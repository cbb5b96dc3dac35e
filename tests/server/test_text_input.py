"""Control characters in a frame's text fields, against a real relay on each backend: the
answer is BAD_REQUEST from the frame parser, never a store error and its traceback."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.base.codec import Writer
from app.base.errors import LocalProtocolError, RemoteProtocolError
from app.protocol.frames import DirectoryLookup, FetchBundles, FrameType, Status
from tests.conftest import require
from tests.server.stores import POSTGRES_DSN, drop_schema
from tests.support.relay import RelayProcess, TestDevice, new_account

HOSTILE = ["al\x00ice", "al\nice", "\x1b[2Jalice", "al\x7fice", "al\x85ice"]


@pytest.fixture(params=["sqlite", "postgres"])
def relay(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_unavailable: str | None
) -> Iterator[RelayProcess]:
    """A relay on this backend, stopped afterwards (so its whole output can be read)."""
    data_dir = tmp_path / "relay"
    data_dir.mkdir()
    schema = None
    if request.param == "postgres":
        require(postgres_unavailable is None, postgres_unavailable or "")
        schema = "t_" + uuid.uuid4().hex[:12]
        settings = {"backend": "postgres", "postgres_dsn": POSTGRES_DSN, "postgres_schema": schema}
        lines = [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
        (data_dir / "server.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    process = RelayProcess(data_dir).start()
    yield process
    process.stop()
    if schema is not None:
        asyncio.run(drop_schema(schema))


def _text_body(text: str) -> bytes:
    return Writer("raw text").text16(text, 128, "text").getvalue()


def test_control_characters_in_query_and_account_id_are_bad_requests(relay: RelayProcess) -> None:
    """Test that a query or account id with NUL or another control character is a BAD_REQUEST."""

    async def scenario() -> None:
        device = await TestDevice(relay).join(new_account(relay.data_dir, "u.alice", "Alice"))
        for text in HOSTILE:
            for frame_type in (FrameType.DIRECTORY_LOOKUP, FrameType.FETCH_BUNDLES):
                response = await device.request(frame_type, _text_body(text))
                assert response.status == Status.BAD_REQUEST, (frame_type.name, text)
                assert "control character" in response.reason
        answered = await device.request(FrameType.DIRECTORY_LOOKUP, DirectoryLookup("Alice").encode())
        assert answered.status == Status.OK
        await device.disconnect()

    asyncio.run(asyncio.wait_for(scenario(), 120))
    relay.stop()
    assert not [line for line in relay.output if "Traceback" in line]


def test_a_frame_refuses_control_characters_both_ways() -> None:
    """Test that a text field with a control character cannot be encoded and does not parse."""
    with pytest.raises(LocalProtocolError, match="U\\+0000"):
        FetchBundles("al\x00ice").encode()
    with pytest.raises(RemoteProtocolError, match="U\\+000A"):
        DirectoryLookup.parse(_text_body("al\nice"))
    assert DirectoryLookup.parse(_text_body("Zoë Ørsted")).query == "Zoë Ørsted"
