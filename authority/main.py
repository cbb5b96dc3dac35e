"""``enclave-authority``: run the enrolment authority.

    enclave-authority --data DIR --passphrase-file FILE|- [--key FILE] [--host 127.0.0.1] [--port 8444]
                      [--while-leased FOLDER]

``DIR`` is the authority's own data folder, owned by its own service user, never the
relay's (docs/ADMIN.md). The authority key is the sealed key file ``enclave-admin org
init`` wrote (``authority/authority.key``; by default ``DIR/authority.key``), opened with
the passphrase on the first line of ``FILE``, or with ``-`` on the first line of standard
input: the local workspace keeps the passphrase in the OS keystore and writes it on a
pipe, so that it is never written to a file. The order is the relay's: bind the port
first (a taken port leaves the folder untouched and prints no pin), then lock the folder
(a second authority on it stops there), then the key, the TLS files (made on first
start; the pin is printed), the database, and serving.

``--while-leased FOLDER`` stops the authority once no process holds a lease in
``FOLDER``, as the relay's option of that name does (app/base/leases.py): the local
workspace's authority lives exactly as long as some workspace uses it.

Exit status: 0 stopped; 1 refused (a key file that does not open, the database); 2 usage
or a port or folder that cannot be had.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from pathlib import Path

from aiohttp import web
from nacl.utils import random

from app.base.errors import EnclaveError
from app.base.folderlock import FolderLock, FolderLockError
from app.base.leases import stop_when_unleased
from app.base.listener import Listener, ListenError
from app.base.requestlog import summarise_suppressed
from app.base.tlsfiles import load_or_create_tls
from app.base.tools import EXIT_DONE, EXIT_REFUSED, EXIT_USAGE, ToolParser
from app.crypto.keys import IdentityKeyPair
from app.provisioning.keyfile import Role, open_key_file
from authority.service import Authority
from authority.store import AuthorityStore
from authority.web import make_app

KEY_FILE = "authority.key"
LOCK_NAME = "authority.lock"
MAX_KEY_FILE_BYTES = 4096
MAX_PASSPHRASE_BYTES = 4096
STDIN = "-"
"""``--passphrase-file -``: the passphrase is the first line of standard input."""
DAY = 86400


def _parser() -> argparse.ArgumentParser:
    parser = ToolParser(prog="enclave-authority", description="Run the Enclave enrolment authority.")
    parser.add_version()
    parser.add_argument("--data", type=Path, required=True, help="the authority's own data folder")
    parser.add_argument(
        "--passphrase-file",
        type=Path,
        required=True,
        help=f"the authority key's passphrase (first line); {STDIN}: the first line of standard input",
    )
    parser.add_argument(
        "--key", type=Path, default=None, help=f"the sealed key file; if not given, DATA/{KEY_FILE}"
    )
    parser.add_argument(
        "--while-leased",
        type=Path,
        metavar="FOLDER",
        help="stop once no process holds a lease in FOLDER (the local workspace's; app/base/leases.py)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8444, help="port to listen on (0: any free one)")
    parser.add_argument("--certificate-days", type=int, default=7, help="lifetime of a certificate")
    parser.add_argument(
        "--renew-grace-days", type=int, default=30, help="how long after expiry a certificate may be renewed"
    )
    parser.add_argument("--attempts-per-minute", type=int, default=10, help="requests per client address")
    parser.add_argument(
        "--connections-per-address", type=int, default=256, help="open connections per address"
    )
    parser.add_argument(
        "--connections-total", type=int, default=8192, help="open connections from all addresses together"
    )
    parser.add_argument("--tls-handshake-seconds", type=int, default=10, help="TLS handshake deadline")
    parser.add_argument(
        "--request-head-seconds", type=int, default=30, help="deadline for a request head after the handshake"
    )
    return parser


class PassphraseFileError(EnclaveError):
    """The passphrase file (or standard input) holds no passphrase on its first line."""


def _passphrase(path: Path) -> str:
    """The first line of ``path``, or of standard input for ``-`` (read up to its end of line only)."""
    if str(path) == STDIN:
        source, raw = "standard input", sys.stdin.buffer.readline(MAX_PASSPHRASE_BYTES + 1)
        if len(raw) > MAX_PASSPHRASE_BYTES and not raw.endswith(b"\n"):
            raise PassphraseFileError(
                f"the first line of standard input exceeds {MAX_PASSPHRASE_BYTES} bytes"
            )
    else:
        source, raw = f"the passphrase file {path}", path.read_bytes()
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise PassphraseFileError(f"{source} is not UTF-8 text") from e
    if not lines or not lines[0]:
        raise PassphraseFileError(f"{source} has an empty first line")
    return lines[0]


async def serve(args: argparse.Namespace, stop: asyncio.Event) -> None:
    """Run the authority until ``stop`` is set, in the order the module docstring gives."""
    async with contextlib.AsyncExitStack() as stack:
        listener = await Listener.bind(args.host, args.port)
        stack.push_async_callback(listener.wait_closed)
        stack.callback(listener.close)
        data: Path = args.data
        try:
            data.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as e:
            raise FolderLockError(f"cannot make the data folder {data}: {e.strerror}") from e
        stack.callback(FolderLock.acquire(data, name=LOCK_NAME, program="enclave-authority").release)
        key_path: Path = args.key or data / KEY_FILE
        key = open_key_file(
            key_path.read_bytes()[:MAX_KEY_FILE_BYTES],
            _passphrase(args.passphrase_file),
            role=Role.AUTHORITY,
            source=str(key_path),
        )
        issuer = IdentityKeyPair.from_seed(key.secret_key[:32])
        tls = load_or_create_tls(data, args.host, "Enclave enrolment authority")
        if tls.created:
            print(f"New TLS key and certificate made in {data}.")
        print(f"Authority public-key pin: {tls.pin}")
        print(f"Authority key: {issuer.public.hex()}", flush=True)
        store = AuthorityStore.open(data)
        stack.callback(store.close)
        authority = Authority(
            issuer=issuer,
            store=store,
            clock=time.time,
            random=random,
            lifetime_seconds=args.certificate_days * DAY,
            grace_seconds=args.renew_grace_days * DAY,
        )
        runner = web.AppRunner(
            make_app(authority, attempts_per_minute=args.attempts_per_minute),
            access_log=None,
            handle_signals=False,
            keepalive_timeout=args.request_head_seconds,
        )
        await runner.setup()
        stack.callback(summarise_suppressed)
        stack.push_async_callback(runner.cleanup)
        stack.callback(listener.close)
        if runner.server is None:
            raise RuntimeError("aiohttp made no request handler")
        await listener.serve(
            runner.server,
            tls.cert_path,
            tls.key_path,
            connections_per_address=args.connections_per_address,
            connections_total=args.connections_total,
            handshake_seconds=args.tls_handshake_seconds,
        )
        host, port = listener.address
        print(f"enclave-authority listening on https://{host}:{port}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    for name in (
        "certificate_days",
        "attempts_per_minute",
        "connections_per_address",
        "connections_total",
        "tls_handshake_seconds",
    ):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.renew_grace_days < 0:
        parser.error("--renew-grace-days must not be negative")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        watcher = None
        if args.while_leased is not None:
            watcher = asyncio.create_task(stop_when_unleased(args.while_leased, stop))
        try:
            await serve(args, stop)
        finally:
            if watcher is not None:
                watcher.cancel()

    try:
        asyncio.run(run())
    except (ListenError, FolderLockError, PassphraseFileError) as e:
        print(f"enclave-authority: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:
        print(f"enclave-authority: cannot read {e.filename}: {e.strerror}", file=sys.stderr)
        return EXIT_REFUSED
    except EnclaveError as e:  # a key file that does not open, the database
        print(f"enclave-authority: {e}", file=sys.stderr)
        return EXIT_REFUSED
    return EXIT_DONE


if __name__ == "__main__":
    sys.exit(main())
