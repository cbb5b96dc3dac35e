"""A newer organisation config reaches an enrolled device through the relay (issue 12): the admin
publishes it there (``enclave-admin publish``), the device fetches it when it connects and
checks it as an import; the relay cannot make it take anything the root did not sign."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.services.events import Problem
from tests.support.clients import WAIT_SECONDS, Client, enrolled_client, open_client
from tests.support.deployment import deployment
from tests.support.organisation import Organisation
from tests.support.relay import RelayProcess, admin

SECRET_ONLY = "secret_chats_only = true"


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    process = RelayProcess(tmp_path_factory.mktemp("relay")).start()
    yield process
    process.stop()


@pytest.fixture(autouse=True)
def unpublished(relay: RelayProcess) -> Iterator[None]:
    """Each test starts and ends with nothing published on the module's relay."""
    yield
    for name in ("organisation.toml", "organisation.toml.sig"):
        (relay.data_dir / name).unlink(missing_ok=True)


def versions(client: Client) -> list[tuple[str, int]]:
    return [(c.origin, c.version) for c in client.enclave.policy().result(WAIT_SECONDS).configs]


def reopened(client: Client) -> Client:
    """The same profile closed and opened again, online: it fetches what the relay publishes."""
    client.close()
    again = open_client(client.profile)
    assert again.enclave.wait_online(WAIT_SECONDS).result(WAIT_SECONDS + 5)
    return again


def wait_for_version(client: Client, version: int) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while ("user", version) not in versions(client):
        assert time.monotonic() < deadline, f"still {versions(client)}"
        time.sleep(0.1)


def publish(relay: RelayProcess, path: Path) -> None:
    done = admin(relay.data_dir, "publish", str(path))
    assert done.returncode == 0, done.stderr


def test_a_newer_config_published_on_the_relay_is_taken_and_an_older_one_changes_nothing(
    relay: RelayProcess, tmp_path: Path
) -> None:
    """Test that a device enrolled under version 1 takes version 2 from the relay when it next
    connects, with its mandatory policy; and that version 1 published afterwards changes nothing
    and is not reported as a problem."""
    client = enrolled_client(relay, tmp_path, "r.newer", "Newer")
    try:
        assert versions(client) == [("user", 1)]
        publish(
            relay,
            deployment().install(tmp_path / "v2" / "enclave.toml", relay, version=2, mandatory=SECRET_ONLY),
        )
        client = reopened(client)
        wait_for_version(client, 2)
        assert client.enclave.policy().result(WAIT_SECONDS).rules.secret_chats_only
        publish(relay, deployment().install(tmp_path / "v1" / "enclave.toml", relay, version=1))
        client = reopened(client)
        client.enclave.flush(WAIT_SECONDS).result(WAIT_SECONDS + 5)
        assert versions(client) == [("user", 2)]
        assert not any(isinstance(event, Problem) for event in client.seen)
    finally:
        client.close()


@pytest.mark.parametrize("kind", ["tampered", "another organisation's"])
def test_a_published_config_the_root_did_not_sign_is_refused_and_reported(
    relay: RelayProcess, tmp_path: Path, kind: str
) -> None:
    """Test that a config on the relay with a changed byte, or signed by another organisation's root,
    is reported as a Problem and leaves the device's config and policy as they were."""
    client = enrolled_client(relay, tmp_path, f"r.{kind[:3]}", "Refuser")
    try:
        path = tmp_path / "bad" / "enclave.toml"
        if kind == "tampered":
            deployment().install(path, relay, version=3)
            publish(relay, path)
            served = relay.data_dir / "organisation.toml"
            served.write_bytes(served.read_bytes().replace(b"version = 3", b"version = 4"))
        else:
            stranger = Organisation()
            stranger.write(
                path, stranger.config(version=5, relay_urls=(relay.https,), relay_pins=(relay.pin,))
            )
            (relay.data_dir / "organisation.toml").write_bytes(path.read_bytes())
            (relay.data_dir / "organisation.toml.sig").write_bytes(
                path.with_name("enclave.toml.sig").read_bytes()
            )
        client = reopened(client)
        problem = client.wait_for(Problem, lambda p: "published" in p.message or "relay offered" in p.message)
        assert "refused" in problem.message
        assert versions(client) == [("user", 1)]
        assert not client.enclave.policy().result(WAIT_SECONDS).rules.secret_chats_only
    finally:
        client.close()


def test_publish_refuses_a_config_for_another_authority_and_writes_nothing(
    relay: RelayProcess, tmp_path: Path
) -> None:
    """Test that enclave-admin publish refuses a config naming an authority key other than the
    relay's, and an unsigned one, publishing nothing."""
    other = Organisation()
    config = other.config(relay_urls=(relay.https,), relay_pins=(relay.pin,))
    refused = admin(relay.data_dir, "publish", str(other.write(tmp_path / "other" / "enclave.toml", config)))
    assert refused.returncode == 1 and "authority key" in refused.stderr
    unsigned = deployment().signer.write(
        tmp_path / "unsigned" / "enclave.toml", deployment().config(relay), signed=False
    )
    assert admin(relay.data_dir, "publish", str(unsigned)).returncode == 1
    assert not (relay.data_dir / "organisation.toml").exists()


def test_the_published_config_is_for_devices_only(relay: RelayProcess, tmp_path: Path) -> None:
    """Test that GET /v1/config without a device's upload token is 401 and shows nothing."""
    publish(relay, deployment().install(tmp_path / "pub" / "enclave.toml", relay, version=1))
    for path in ("/v1/config", "/v1/config.sig"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(relay.https + path, context=relay.ssl_context(), timeout=10)
        assert refused.value.code == 401 and b"format" not in refused.value.read()
