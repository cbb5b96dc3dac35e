"""What a flood of connections that never become devices costs the relay: latency of an honest pair, memory.

Run from the repository root as a module (it uses tests/support's relay and flood)::

    .venv/bin/python -m bench.flood                          # both floods at the default cap: about 40 s
    .venv/bin/python -m bench.flood --cap 32 --flood-seconds 2 --settle-seconds 2   # seconds
    .venv/bin/python -m bench.flood --relay-env MALLOC_ARENA_MAX=2                   # glibc's tunables

Per scenario, a fresh relay (``enclave-server``: TLS, SQLite, its default deadlines,
``connections_per_address`` = ``--cap``) runs on 127.0.0.1, and two devices on 127.0.0.1
enrol (certified with the test authority key of tests/support/relay.py, which the relay
trusts) and authenticate. They exchange envelopes of 1 KiB one at a time, each way in turn;
an envelope's latency runs from its send until both the relay's OK and the push at the
partner have come (the partner's ack follows, untimed). Three phases:

1. quiet: ``--envelopes`` envelopes, after a warm-up. The relay's RSS is read at its end:
   *before*.
2. flood: from 127.0.0.2 (tests/support/flood.py), ``--cap`` + ``EXTRA_ATTACKERS``
   connections at once, each opened again as soon as the relay closes or refuses it;
   once as many are open as the cap, the pair exchanges envelopes for
   ``--flood-seconds`` (and at least ``--envelopes``). RSS is read every
   ``SAMPLE_SECONDS``; *during* is the highest.
3. after: the attacker closes every connection; *after* is the RSS ``--settle-seconds``
   later.

The scenarios, each half of one kind and half of the other:

- ``completed-tls``: connections that finish the TLS handshake and send nothing
  (``request_head_seconds``), and WebSockets that never authenticate
  (``authentication_seconds``);
- ``failed-handshake``: TCP connections that never start TLS (``tls_handshake_seconds``),
  and ones that send an HTTP request in clear text, whose handshake fails at once.

The peer is the same relay without the flood: latency as p99 (and p50) during the flood
over p99 when quiet, memory as a ratio to *before*. Absolute numbers move with the
machine. The attacker runs in a process of its own, so that its event loop does not
delay the pair's in this one; all three share the machine's cores, and the attacker's own
handshakes are part of what a flood from one machine costs the relay's host. RSS is
``VmRSS`` of /proc/<pid>/status (Linux). Set-up is not timed. Nothing here asserts on
speed.
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and not __package__:
    sys.exit("run it as a module from the repository root: .venv/bin/python -m bench.flood")

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from nacl.utils import random

from app.protocol.frames import Status
from bench import server as relay_bench
from server.config import ServerConfig
from server.memory import TRIM_SECONDS
from tests.support.flood import ATTACKER, Flood, FloodKind
from tests.support.relay import REPLY_SECONDS, RelayProcess, TestDevice, new_account

SCENARIOS: dict[str, tuple[FloodKind, ...]] = {
    "completed-tls": (FloodKind.SILENT_TLS, FloodKind.UNAUTHENTICATED),
    "failed-handshake": (FloodKind.SILENT_TCP, FloodKind.PLAINTEXT),
}
RELAY_DEFAULTS = ServerConfig(data_dir=Path())
DEFAULT_CAP = RELAY_DEFAULTS.connections_per_address
DEFAULT_ENVELOPES = 200
DEFAULT_FLOOD_SECONDS = 10.0
"""As long as ``tls_handshake_seconds`` and ``authentication_seconds``: the relay closes
the first attackers at their deadlines during the flood (they opened while it ramped up),
and they come back."""
DEFAULT_SETTLE_SECONDS = TRIM_SECONDS + 2
"""Time for the relay to give freed memory back (server/memory.py) once."""
WARMUP_ENVELOPES = 20
EXTRA_ATTACKERS = 16
"""Attackers beyond the cap, so that the relay refuses some all the time."""
SAMPLE_SECONDS = 0.1
READY_SECONDS = 60.0
"""The flood must hold the cap within this."""
SEALED_BYTES = 1024
ATTACKER_CLOSED_WITHIN = (
    RELAY_DEFAULTS.tls_handshake_seconds
    + RELAY_DEFAULTS.request_head_seconds
    + RELAY_DEFAULTS.authentication_seconds
    + REPLY_SECONDS
)
"""How long an attacking connection waits for the relay to close it before that is an error."""


@dataclass(frozen=True, slots=True)
class Latency:
    envelopes: int
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True, slots=True)
class Result:
    scenario: str
    cap: int
    quiet: Latency
    flood: Latency
    held_peak: int
    """The most attacking connections open at once (counted by the attacker)."""
    refused: int
    """Attacking connections refused at the cap or failed before their handshake ended."""
    rss_before_kib: int
    rss_during_kib: int
    rss_after_kib: int


def rss_kib(pid: int) -> int:
    """The resident set size of process ``pid``, in KiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no VmRSS line")


async def _exchange(alice: TestDevice, bob: TestDevice, *, at_least: int, seconds: float = 0.0) -> Latency:
    """Envelopes one at a time, each way in turn, for ``seconds`` and at least ``at_least`` of them."""
    loop = asyncio.get_running_loop()
    ends = loop.time() + seconds
    turns = ((alice, bob), (bob, alice))
    latencies: list[int] = []
    while len(latencies) < at_least or loop.time() < ends:
        sender, recipient = turns[len(latencies) % 2]
        started = time.perf_counter_ns()
        (response, envelope), pushed = await asyncio.gather(
            sender.send(recipient.device_id, random(SEALED_BYTES)), recipient.next_push()
        )
        latencies.append(time.perf_counter_ns() - started)
        if response.status != Status.OK or pushed.envelope_id != envelope.envelope_id:
            raise RuntimeError(f"the relay answered {response.status.name} or pushed another envelope")
        await recipient.ack(pushed)
    ordered = sorted(latencies)
    return Latency(
        envelopes=len(ordered),
        p50_ms=relay_bench._percentile(ordered, 50) / 1e6,
        p99_ms=relay_bench._percentile(ordered, 99) / 1e6,
    )


async def _highest_rss(pid: int, highest: list[int]) -> None:
    """Keep ``highest[0]`` at the highest RSS of ``pid`` seen, reading it every ``SAMPLE_SECONDS``."""
    while True:
        highest[0] = max(highest[0], rss_kib(pid))
        await asyncio.sleep(SAMPLE_SECONDS)


@dataclass(frozen=True, slots=True)
class _Attacked:
    """What the attacking process reports when it stops."""

    held_peak: int
    refused: int
    error: str = ""


def _attack(data_dir: Path, port: int, kinds: tuple[FloodKind, ...], cap: int, pipe: Connection) -> None:
    """The attacking process: flood until told to stop; say once the cap is held, then how it went."""
    asyncio.run(_attacking(data_dir, port, kinds, cap, pipe))


async def _attacking(
    data_dir: Path, port: int, kinds: tuple[FloodKind, ...], cap: int, pipe: Connection
) -> None:
    relay = RelayProcess(data_dir)  # a handle on the running relay: its port and certificate
    relay.port = port
    flood, stop = Flood(relay, closed_within=ATTACKER_CLOSED_WITHIN), asyncio.Event()
    attackers = [
        asyncio.create_task(flood.run(kinds[i % len(kinds)], stop)) for i in range(cap + EXTRA_ATTACKERS)
    ]
    loop = asyncio.get_running_loop()
    error = ""
    try:
        deadline = loop.time() + READY_SECONDS
        while flood.held_peak < cap:
            if loop.time() > deadline:
                raise RuntimeError(f"the flood held at most {flood.held_peak} of {cap} connections")
            done, _ = await asyncio.wait(attackers, timeout=SAMPLE_SECONDS)
            for task in done:
                task.result()  # an attacker that stopped early failed; say why
        pipe.send(None)
        await loop.run_in_executor(None, pipe.recv)
    except Exception as e:
        error = repr(e)
    finally:
        stop.set()
        for task in attackers:
            task.cancel()
        outcomes = await asyncio.gather(*attackers, return_exceptions=True)
    error = error or next((repr(o) for o in outcomes if isinstance(o, Exception)), "")
    pipe.send(_Attacked(held_peak=flood.held_peak, refused=flood.refused, error=error))


async def _phases(
    relay: RelayProcess, pid: int, accounts: tuple[str, str], scenario: str, config: Config
) -> Result:
    loop = asyncio.get_running_loop()
    alice = await TestDevice(relay).join(accounts[0])
    bob = await TestDevice(relay).join(accounts[1])
    ours, theirs = multiprocessing.get_context("spawn").Pipe()
    attacker = multiprocessing.get_context("spawn").Process(
        target=_attack, args=(relay.data_dir, relay.port, SCENARIOS[scenario], config.cap, theirs)
    )
    try:
        await _exchange(alice, bob, at_least=WARMUP_ENVELOPES)
        quiet = await _exchange(alice, bob, at_least=config.envelopes)
        before = rss_kib(pid)
        highest = [before]
        sampler = asyncio.create_task(_highest_rss(pid, highest))
        attacker.start()
        try:
            ready = await loop.run_in_executor(None, ours.recv)
            if isinstance(ready, _Attacked):
                raise RuntimeError(f"the attacker failed: {ready.error}")
            flooded = await _exchange(alice, bob, at_least=config.envelopes, seconds=config.flood_seconds)
            ours.send(None)
            attacked: _Attacked = await loop.run_in_executor(None, ours.recv)
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        await loop.run_in_executor(None, attacker.join)
        if attacked.error:
            raise RuntimeError(f"the attacker failed: {attacked.error}")
        await asyncio.sleep(config.settle_seconds)
        after = rss_kib(pid)
    finally:
        if attacker.is_alive():
            attacker.kill()
        await alice.disconnect()
        await bob.disconnect()
    return Result(
        scenario=scenario,
        cap=config.cap,
        quiet=quiet,
        flood=flooded,
        held_peak=attacked.held_peak,
        refused=attacked.refused,
        rss_before_kib=before,
        rss_during_kib=highest[0],
        rss_after_kib=after,
    )


@dataclass(frozen=True, slots=True)
class Config:
    scenarios: tuple[str, ...] = tuple(SCENARIOS)
    cap: int = DEFAULT_CAP
    envelopes: int = DEFAULT_ENVELOPES
    flood_seconds: float = DEFAULT_FLOOD_SECONDS
    settle_seconds: float = DEFAULT_SETTLE_SECONDS
    relay_env: tuple[tuple[str, str], ...] = ()
    """Added to the relay's environment, e.g. ``(("MALLOC_ARENA_MAX", "2"),)``."""

    def __post_init__(self) -> None:
        unknown = set(self.scenarios) - set(SCENARIOS)
        if unknown or not self.scenarios:
            raise ValueError(f"scenarios are {', '.join(SCENARIOS)}, not {', '.join(sorted(unknown))}")
        if self.cap < 1 or self.envelopes < 1 or self.flood_seconds < 0 or self.settle_seconds < 0:
            raise ValueError("cap and envelopes are at least 1, and seconds not negative")


def _measure(scenario: str, config: Config) -> Result:
    with tempfile.TemporaryDirectory(prefix="enclave-bench-flood-") as folder:
        relay = RelayProcess(
            Path(folder) / "relay", "--connections-per-address", str(config.cap), env=dict(config.relay_env)
        )
        try:
            relay.start()
            if relay.process is None:
                raise RuntimeError("the relay did not start")
            accounts = (new_account(relay.data_dir, "honest.a"), new_account(relay.data_dir, "honest.b"))
            return asyncio.run(_phases(relay, relay.process.pid, accounts, scenario, config))
        finally:
            relay.stop()


def run(config: Config, progress: Callable[[str], None] | None = None) -> list[Result]:
    """One result per scenario, each on a fresh relay."""
    results = []
    for scenario in config.scenarios:
        if progress:
            progress(scenario)
        results.append(_measure(scenario, config))
    return results


def report(results: Sequence[Result], config: Config) -> str:
    environment = " ".join(f"{name}={value}" for name, value in config.relay_env) or "none"
    lines = [
        f"on {os.cpu_count()} cores; the attacker, the honest pair and the relay share them",
        f"connections_per_address = {config.cap}; flood from {ATTACKER} with {config.cap + EXTRA_ATTACKERS}"
        f" attackers for {config.flood_seconds:g} s; memory read {config.settle_seconds:g} s after it ended",
        f"relay environment: {environment}",
        "",
        f"{'':<18}{'held':>6}{'refused':>9} |{'quiet p50':>10}{'p99':>7}{'flood p50':>10}{'p99':>7}"
        f"{'p50 x':>7}{'p99 x':>7} |{'RSS MB':>7}{'during x':>9}{'after x':>8}",
    ]
    lines.extend(
        f"{r.scenario:<18}{r.held_peak:>6}{r.refused:>9} |{r.quiet.p50_ms:>10.1f}{r.quiet.p99_ms:>7.1f}"
        f"{r.flood.p50_ms:>10.1f}{r.flood.p99_ms:>7.1f}"
        f"{r.flood.p50_ms / r.quiet.p50_ms:>6.1f}x{r.flood.p99_ms / r.quiet.p99_ms:>6.1f}x"
        f" |{r.rss_before_kib / 1024:>7.0f}{r.rss_during_kib / r.rss_before_kib:>8.2f}x"
        f"{r.rss_after_kib / r.rss_before_kib:>7.2f}x"
        for r in results
    )
    lines += [
        "",
        "held: the most attacking connections open at once; refused: at the cap, or in their handshake.",
        "Latency in ms, from a send to its OK and push; x: during the flood over quiet.",
        "RSS MB: the relay's before the flood; during x: its highest during the flood, over before;",
        "after x: the settle time after the flood ended, over before.",
    ]
    return "\n".join(lines)


def _environment_entry(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name, value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scenarios",
        type=lambda text: tuple(part.strip() for part in text.split(",") if part.strip()),
        default=tuple(SCENARIOS),
        help=f"comma-separated, of {', '.join(SCENARIOS)} (default all)",
    )
    parser.add_argument("--cap", type=int, default=DEFAULT_CAP, help=f"(default {DEFAULT_CAP})")
    parser.add_argument(
        "--envelopes",
        type=int,
        default=DEFAULT_ENVELOPES,
        help=f"per phase, at least (default {DEFAULT_ENVELOPES})",
    )
    parser.add_argument(
        "--flood-seconds",
        type=float,
        default=DEFAULT_FLOOD_SECONDS,
        help=f"(default {DEFAULT_FLOOD_SECONDS:g})",
    )
    parser.add_argument(
        "--settle-seconds",
        type=float,
        default=DEFAULT_SETTLE_SECONDS,
        help=f"from the flood's end to the last RSS reading (default {DEFAULT_SETTLE_SECONDS:g})",
    )
    parser.add_argument(
        "--relay-env",
        type=_environment_entry,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set in the relay's environment; repeatable",
    )
    args = parser.parse_args(argv)
    try:
        config = Config(
            scenarios=args.scenarios,
            cap=args.cap,
            envelopes=args.envelopes,
            flood_seconds=args.flood_seconds,
            settle_seconds=args.settle_seconds,
            relay_env=tuple(args.relay_env),
        )
    except ValueError as e:
        parser.error(str(e))
    print(report(run(config, progress=_progress), config))


def _progress(text: str) -> None:
    print(f"measuring {text} ...", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
