"""The effective policy: one value per key, and where it came from.

Precedence, highest first, as browsers' enterprise policies do it (mandatory values are
*managed*, recommended ones are defaults a user may change):

    system mandatory > imported mandatory > the user's own setting
      > system recommended > imported recommended > Enclave's built-in default

"system" is the config in the machine's system location (managed by the machine's
admins), "imported" the one the user imported (or that later came through the relay).
Values from different sources can disagree across keys (a system minimum above an
imported maximum); ``_reconcile`` settles that with the higher-precedence value kept and
says so in the entry's note, so the effective policy always keeps the cross-key rules.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace

from app.provisioning.config import OrgConfig
from app.provisioning.errors import InvalidPolicyValueError, MandatoryPolicyError
from app.provisioning.rules import (
    BY_NAME,
    POLICY_KEYS,
    PolicyValue,
    ValueProblem,
    cross_key_problems,
    untrusted_value,
)


class Source(enum.Enum):
    SYSTEM_MANDATORY = "system mandatory"
    IMPORTED_MANDATORY = "imported mandatory"
    USER = "user"
    SYSTEM_RECOMMENDED = "system recommended"
    IMPORTED_RECOMMENDED = "imported recommended"
    DEFAULT = "default"

    @property
    def mandatory(self) -> bool:
        return self in (Source.SYSTEM_MANDATORY, Source.IMPORTED_MANDATORY)


@dataclass(frozen=True, slots=True)
class PolicyEntry:
    key: str
    value: PolicyValue
    source: Source
    note: str = ""
    """Set when the value was moved to keep a cross-key rule (``_reconcile``)."""


@dataclass(frozen=True, slots=True)
class EffectivePolicy:
    entries: tuple[PolicyEntry, ...]
    """One per policy key, in the order of ``app.provisioning.rules.POLICY_KEYS``."""

    def entry(self, key: str) -> PolicyEntry:
        for entry in self.entries:
            if entry.key == key:
                return entry
        raise KeyError(key)

    def value(self, key: str) -> PolicyValue:
        return self.entry(key).value

    def check_user_setting(self, key: str, untrusted: object) -> PolicyValue:
        """The value the user may set for ``key``, or the ``PolicyError`` that says why not.

        A mandatory key is refused whatever the value; a value must fit the key and keep
        the cross-key rules with the rest of the effective policy.
        """
        rule = BY_NAME.get(key)
        if rule is None:
            raise InvalidPolicyValueError(f"there is no policy key {key!r}")
        current = self.entry(key)
        if current.source.mandatory:
            raise MandatoryPolicyError(
                f"{key} is set by your organisation ({current.source.value}) and cannot be changed"
            )
        try:
            value = untrusted_value(rule, untrusted)
        except ValueProblem as e:
            raise InvalidPolicyValueError(f"{key} {e}") from e
        values = {entry.key: entry.value for entry in self.entries} | {key: value}
        for problem_key, problem in cross_key_problems(values):
            raise InvalidPolicyValueError(f"{key} cannot be {value!r}: {problem_key} {problem}")
        return value


def effective_policy(
    *, system: OrgConfig | None, imported: OrgConfig | None, user: Mapping[str, PolicyValue]
) -> EffectivePolicy:
    """Merge key by key (module docstring); ``user`` holds the user's own settings."""
    layers: list[tuple[Source, Mapping[str, PolicyValue]]] = [
        (Source.SYSTEM_MANDATORY, system.mandatory if system else {}),
        (Source.IMPORTED_MANDATORY, imported.mandatory if imported else {}),
        (Source.USER, user),
        (Source.SYSTEM_RECOMMENDED, system.recommended if system else {}),
        (Source.IMPORTED_RECOMMENDED, imported.recommended if imported else {}),
    ]
    entries = {}
    for rule in POLICY_KEYS:
        entries[rule.name] = next(
            (
                PolicyEntry(rule.name, values[rule.name], source)
                for source, values in layers
                if rule.name in values
            ),
            PolicyEntry(rule.name, rule.default, Source.DEFAULT),
        )
    _reconcile(entries)
    return EffectivePolicy(tuple(entries.values()))


_RANK = {source: rank for rank, source in enumerate(Source)}


def _reconcile(entries: dict[str, PolicyEntry]) -> None:
    """Keep the cross-key rules where values of different sources break them.

    The timer range: if the minimum is above the maximum, the one from the lower source
    yields to the other; the default is then moved into the range. The default label,
    if it is not among the labels, becomes none ("").
    """
    low, high = entries["timer_minimum_seconds"], entries["timer_maximum_seconds"]
    if isinstance(low.value, int) and isinstance(high.value, int) and low.value > high.value:
        if _RANK[low.source] <= _RANK[high.source]:
            entries[high.key] = replace(high, value=low.value, note="raised to timer_minimum_seconds")
        else:
            entries[low.key] = replace(low, value=high.value, note="lowered to timer_maximum_seconds")
    low, high = entries["timer_minimum_seconds"].value, entries["timer_maximum_seconds"].value
    default = entries["timer_default_seconds"]
    if isinstance(default.value, int) and isinstance(low, int) and isinstance(high, int):
        if default.value < low:
            entries[default.key] = replace(default, value=low, note="raised to timer_minimum_seconds")
        elif default.value > high:
            entries[default.key] = replace(default, value=high, note="lowered to timer_maximum_seconds")
    labels, chosen = entries["classification_labels"].value, entries["classification_default"]
    if isinstance(labels, tuple) and chosen.value and chosen.value not in labels:
        entries[chosen.key] = replace(chosen, value="", note="not one of classification_labels")
