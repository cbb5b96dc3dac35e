"""``enclave-server``: run the domestic relay.

    enclave-server --data /var/lib/enclave [--host 0.0.0.0] [--port 8443] [--backend postgres ...]

On the first start it makes its TLS certificate and upload-token key in the data folder and
prints the public-key pin that goes into the provisioning config. Flags override
``server.toml`` in the data folder (docs/ADMIN.md lists every setting).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from dataclasses import fields
from pathlib import Path

from aiohttp import web
from nacl.utils import random

from app.base.folderlock import FolderLock, FolderLockError
from app.base.leases import stop_when_unleased
from app.base.listener import Listener, ListenError
from app.base.requestlog import summarise_suppressed
from app.base.tools import ToolParser
from server.backends import make_store
from server.config import (
    ConfigError,
    ServerConfig,
    load_config,
    record_authority_key,
    require_authority_key,
)
from server.datalock import LOCK_NAME, check_data_folder
from server.http import make_app
from server.keys import load_or_create_keys
from server.memory import give_back_memory_forever
from server.relay import Relay
from server.store.base import StoreError


def _parser() -> argparse.ArgumentParser:
    parser = ToolParser(prog="enclave-server", description="Run the Enclave relay.").add_version()
    parser.add_argument("--data", type=Path, required=True, help="data folder (keys, config, SQLite file)")
    parser.add_argument(
        "--while-leased",
        type=Path,
        metavar="FOLDER",
        help="stop once no process holds a lease in FOLDER (the local workspace's relay; app/base/leases.py)",
    )
    for f in fields(ServerConfig):
        if f.name == "data_dir":
            continue
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            type=int if f.type == "int" else str,
            default=argparse.SUPPRESS,  # absent unless given, so server.toml's value stands
            help=f"overrides server.toml's {f.name} (built in: {f.default!r}; docs/ADMIN.md §2)",
        )
    return parser


async def serve(config: ServerConfig, stop: asyncio.Event) -> None:
    """Run the relay until ``stop`` is set.

    The order is what an admin can rely on: the port is bound before anything is written
    (a taken port leaves the data folder as it was, and prints no pin), then the data
    folder is locked (a second relay on it stops there), then keys, database and serving.
    """
    async with contextlib.AsyncExitStack() as stack:
        listener = await Listener.bind(config.host, config.port)
        stack.push_async_callback(listener.wait_closed)
        stack.callback(listener.close)
        check_data_folder(config.data_dir)
        stack.callback(FolderLock.acquire(config.data_dir, name=LOCK_NAME, program="relay").release)
        keys = load_or_create_keys(config.data_dir, config.host)
        record_authority_key(config)
        if keys.created:
            print(f"New relay keys made in {config.data_dir}.")
        print(f"Relay public-key pin for the provisioning config: {keys.pin}")
        print(f"Relay log key for the provisioning config: {keys.log_public.hex()}", flush=True)
        store = make_store(config)
        await store.open()
        stack.push_async_callback(store.close)
        relay = Relay(config=config, store=store, keys=keys, random=random)
        await store.subscribe(relay.wake)
        await store.drop_expired(relay.now())
        # keepalive_timeout is aiohttp's timer for "no whole request head yet" (app/base/guard.py).
        runner = web.AppRunner(
            make_app(relay),
            access_log=None,
            handle_signals=False,
            keepalive_timeout=config.request_head_seconds,
        )
        await runner.setup()
        stack.callback(summarise_suppressed)  # after runner.cleanup, which may still log suppressed lines
        stack.push_async_callback(runner.cleanup)
        stack.push_async_callback(_close_connections, relay)
        stack.callback(listener.close)  # on the way out, stop accepting before closing connections
        assert runner.server is not None
        await listener.serve(
            runner.server,
            keys.tls_cert_path,
            keys.tls_key_path,
            connections_per_address=config.connections_per_address,
            connections_total=config.connections_total,
            handshake_seconds=config.tls_handshake_seconds,
        )
        host, port = listener.address
        print(f"enclave-server listening on https://{host}:{port}", flush=True)
        sweeper = asyncio.create_task(relay.sweep_forever())
        stack.callback(sweeper.cancel)
        trimmer = asyncio.create_task(give_back_memory_forever())
        stack.callback(trimmer.cancel)
        await stop.wait()


async def _close_connections(relay: Relay) -> None:
    for connection in list(relay.connections.values()):
        await connection.ws.close()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = {k: v for k, v in vars(args).items() if k not in ("data", "while_leased")}
    try:
        config = load_config(args.data, overrides)
        require_authority_key(config)
    except ConfigError as e:
        print(f"enclave-server: {e}", file=sys.stderr)
        return 2

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        watcher = None
        if args.while_leased is not None:
            watcher = asyncio.create_task(stop_when_unleased(args.while_leased, stop))
        try:
            await serve(config, stop)
        finally:
            if watcher is not None:
                watcher.cancel()

    try:
        asyncio.run(run())
    except (ConfigError, ListenError, FolderLockError) as e:
        print(f"enclave-server: {e}", file=sys.stderr)
        return 2
    except (StoreError, OSError) as e:
        print(f"enclave-server: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
