"""Benchmark of the encrypted store against its unencrypted twin, in the same run.

Run from the repository root as a module (run as a file, its name would hide the
``storage`` package)::

    .venv/bin/python -m bench.storage            # the issue's sizes, a few minutes on 2 cores
    .venv/bin/python -m bench.storage --quick    # small sizes, seconds

Measured for the unencrypted twin and SQLCipher (and, at a tenth of the sizes,
SQLCipher with ``cipher_memory_security`` on against off): inserting messages (in
batches of 1,000 per transaction, so the fsync of each commit does not hide the
cipher's cost), reading the newest page of a conversation from a freshly opened store,
searching a word, sweeping expired messages (with the FTS optimize and WAL checkpoint
that come with it); then the latency of one committed message with ``synchronous``
FULL against NORMAL; then the time to open a profile and read its newest page with a
large history against a small one.
Targets are ratios; the script reports MET or MISSED and never fails.
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and not __package__:
    sys.exit("run it as a module from the repository root: .venv/bin/python -m bench.storage")

import argparse
import json
import random
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from keyring.backend import KeyringBackend

import storage.database
from storage.keys import KeySource, Keystore, Unencrypted
from storage.records import ConversationKind, MessageStatus, NewMessage
from storage.store import Store

ENCRYPTION_TARGET = 1.3
OPEN_TARGET = 1.5
CONVERSATIONS = 100
BATCH = 1000
PAGE = 50
VOCABULARY = 5000
WORDS_PER_MESSAGE = 12


class MemoryKeyring(KeyringBackend):
    """A keystore in this process's memory: the bench measures the store, not Secret Service."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self._entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self._entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self._entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self._entries.pop((service, username), None)


@dataclass(frozen=True)
class Config:
    messages: int = 100_000
    sweep: int = 10_000
    history_small: int = 10_000
    history_large: int = 1_000_000
    page_reads: int = 200
    searches: int = 50
    single_commits: int = 200
    opens: int = 5
    memsec_scale: int = 10
    """cipher_memory_security is compared at 1/memsec_scale of the sizes (at full size it takes minutes)."""
    seed: int = 1


QUICK = Config(
    messages=5_000, sweep=500, history_small=1_000, history_large=20_000, page_reads=50, searches=20
)


@dataclass
class Timings:
    insert_s: float = 0.0
    page_ms: float = 0.0
    search_ms: float = 0.0
    sweep_s: float = 0.0


@dataclass
class Result:
    config: Config
    variants: dict[str, Timings] = field(default_factory=dict)
    commit_ms: dict[str, float] = field(default_factory=dict)
    open_ms: dict[str, float] = field(default_factory=dict)

    def ratio(self, variant: str, measure: str, base: str = "plain") -> float:
        return float(getattr(self.variants[variant], measure) / getattr(self.variants[base], measure))

    @property
    def open_ratio(self) -> float:
        return self.open_ms["large"] / self.open_ms["small"]


def _words(rng: random.Random) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choices(letters, k=rng.randint(4, 9))) for _ in range(VOCABULARY)]


def _messages(
    count: int, vocabulary: list[str], rng: random.Random, expiring: int, now: float
) -> Iterator[NewMessage]:
    """``count`` messages over the conversations; ``expiring`` of them expire a second after ``now``."""
    doomed = set(rng.sample(range(count), expiring))
    for i in range(count):
        yield NewMessage(
            conversation_id=1 + i % CONVERSATIONS,
            message_id=i.to_bytes(8, "big"),
            body=" ".join(rng.choices(vocabulary, k=WORDS_PER_MESSAGE)),
            status=MessageStatus.DELIVERED,
            sent_at=now - count + i,
            sender="peer@ministry",
            received_at=now,
            expires_at=now + 1 if i in doomed else None,
        )


def _fill(
    store: Store, count: int, vocabulary: list[str], rng: random.Random, *, expiring: int, now: float
) -> None:
    for n in range(CONVERSATIONS):
        store.conversations.create(ConversationKind.DIRECT, peer_account_id=f"peer{n}@ministry")
    batch: list[NewMessage] = []
    for message in _messages(count, vocabulary, rng, expiring, now):
        batch.append(message)
        if len(batch) == BATCH:
            store.messages.add_many(batch)
            batch = []
    if batch:
        store.messages.add_many(batch)
    store.checkpoint()


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def _timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def _variant(root: Path, name: str, key: KeySource, memory_security: bool, config: Config) -> Timings:
    rng = random.Random(config.seed)
    vocabulary = _words(rng)
    clock = Clock()
    folder = root / name
    timings = Timings()
    store = Store.create(folder, key, clock=clock, memory_security=memory_security)
    timings.insert_s = _timed(
        lambda: _fill(store, config.messages, vocabulary, rng, expiring=config.sweep, now=clock.now)
    )
    store.close()

    store = Store.open(folder, key, clock=clock, memory_security=memory_security)
    conversations = [1 + (i * 37) % CONVERSATIONS for i in range(config.page_reads)]
    timings.page_ms = 1000 * _timed(lambda: [store.messages.page(c, limit=PAGE) for c in conversations])
    timings.page_ms /= config.page_reads
    words = rng.sample(vocabulary, config.searches)
    timings.search_ms = (
        1000 * _timed(lambda: [store.messages.search(w, limit=PAGE) for w in words]) / config.searches
    )
    clock.now += 2
    swept: list[int] = []
    timings.sweep_s = _timed(lambda: swept.extend(store.sweep()))
    if len(swept) != config.sweep:
        raise RuntimeError(f"swept {len(swept)} messages, expected {config.sweep}")
    store.close()
    return timings


def _commit_latency(root: Path, key: KeySource, synchronous: str, config: Config) -> float:
    """Milliseconds per message committed on its own (the receive path: commit, then ack)."""
    previous = storage.database.SYNCHRONOUS
    storage.database.SYNCHRONOUS = synchronous
    try:
        with Store.create(root / f"commit-{synchronous}", key) as store:
            conversation = store.conversations.create(ConversationKind.DIRECT, peer_account_id="p@ministry")
            start = time.perf_counter()
            for i in range(config.single_commits):
                store.messages.add(
                    NewMessage(
                        conversation.id,
                        i.to_bytes(8, "big"),
                        "ack after commit",
                        MessageStatus.SENT,
                        sent_at=i,
                    )
                )
            return 1000 * (time.perf_counter() - start) / config.single_commits
    finally:
        storage.database.SYNCHRONOUS = previous


def _open_and_read(root: Path, name: str, key: KeySource, count: int, config: Config) -> float:
    """Median milliseconds to open a profile of ``count`` messages and read its newest page."""
    rng = random.Random(config.seed)
    vocabulary = _words(rng)
    folder = root / name
    with Store.create(folder, key) as store:
        _fill(store, count, vocabulary, rng, expiring=0, now=time.time())
    samples = []
    for _ in range(config.opens):
        start = time.perf_counter()
        store = Store.open(folder, key)
        page = store.messages.page(1, limit=PAGE)
        samples.append(1000 * (time.perf_counter() - start))
        store.close()
        if not page.messages:
            raise RuntimeError("the newest page is empty")
    return statistics.median(samples)


def _memsec_in_child(root: Path, config: Config) -> Timings:
    """The memory-security variant, in a child process: once on, SQLCipher keeps it on process-wide."""
    child = subprocess.run(
        [sys.executable, "-m", "bench.storage", "--memsec-child", json.dumps(asdict(config)), str(root)],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=True,
    )
    return Timings(**json.loads(child.stdout))


def _memsec_child(config_json: str, root: str) -> None:
    timings = _variant(
        Path(root), "memsec-scaled", Keystore(MemoryKeyring()), True, Config(**json.loads(config_json))
    )
    print(json.dumps(asdict(timings)))


def run(config: Config, workdir: Path | None = None) -> Result:
    """Run every measurement; returns the numbers (``report`` prints them)."""
    result = Result(config)
    with tempfile.TemporaryDirectory(dir=workdir, prefix="enclave-bench-") as temp:
        root = Path(temp)
        keystore = Keystore(MemoryKeyring())
        result.variants["plain"] = _variant(root, "plain", Unencrypted(), False, config)
        result.variants["cipher"] = _variant(root, "cipher", keystore, False, config)
        result.commit_ms["FULL"] = _commit_latency(root, keystore, "FULL", config)
        result.commit_ms["NORMAL"] = _commit_latency(root, keystore, "NORMAL", config)
        result.open_ms["small"] = _open_and_read(root, "small", keystore, config.history_small, config)
        result.open_ms["large"] = _open_and_read(root, "large", keystore, config.history_large, config)
        scaled = replace(
            config,
            messages=max(1, config.messages // config.memsec_scale),
            sweep=max(1, config.sweep // config.memsec_scale),
        )
        result.variants["cipher-scaled"] = _variant(root, "cipher-scaled", keystore, False, scaled)
        result.variants["memsec-scaled"] = _memsec_in_child(root, scaled)
    return result


def _verdict(value: float, target: float) -> str:
    return "MET" if value <= target else "MISSED"


def report(result: Result) -> str:
    c = result.config
    lines = [
        f"messages={c.messages:,} sweep={c.sweep:,} history={c.history_small:,} vs {c.history_large:,}; "
        f"cipher_memory_security compared at 1/{c.memsec_scale} of the sizes",
        "",
        f"{'measure':<34}{'plain':>10}{'cipher':>10}{'cipher/plain':>14}  "
        f"{'target':<14}{'memsec on/off':>14}",
    ]
    rows = [
        ("insert_s", f"insert {c.messages:,} (s)"),
        ("page_ms", f"newest page of {PAGE}, cold (ms)"),
        ("search_ms", "search one word (ms)"),
        ("sweep_s", f"sweep {c.sweep:,} expired (s)"),
    ]
    for measure, label in rows:
        plain, cipher = (getattr(result.variants[v], measure) for v in ("plain", "cipher"))
        ratio = result.ratio("cipher", measure)
        memsec = result.ratio("memsec-scaled", measure, base="cipher-scaled")
        verdict = f"<= {ENCRYPTION_TARGET}x {_verdict(ratio, ENCRYPTION_TARGET)}"
        lines.append(
            f"{label:<34}{plain:>10.3f}{cipher:>10.3f}{ratio:>13.2f}x  {verdict:<14}{memsec:>13.2f}x"
        )
    full, normal = result.commit_ms["FULL"], result.commit_ms["NORMAL"]
    lines += [
        "",
        f"one committed message: synchronous=FULL {full:.3f} ms, NORMAL {normal:.3f} ms "
        f"({full / normal:.2f}x)",
        f"open + newest page: {c.history_small:,} messages {result.open_ms['small']:.1f} ms, "
        f"{c.history_large:,} messages {result.open_ms['large']:.1f} ms "
        f"({result.open_ratio:.2f}x, target <= {OPEN_TARGET}x {_verdict(result.open_ratio, OPEN_TARGET)})",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a check in seconds")
    defaults = asdict(Config())
    for name, value in defaults.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None, help=f"default {value:,}")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="where the profiles go (default: system temp)"
    )
    parser.add_argument("--memsec-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memsec_child:
        _memsec_child(*args.memsec_child)
        return
    base = asdict(QUICK if args.quick else Config())
    chosen = {
        name: getattr(args, name) if getattr(args, name) is not None else base[name] for name in defaults
    }
    result = run(Config(**chosen), args.workdir)
    print(report(result))


if __name__ == "__main__":
    main()
