"""The organisation's config and policy for this profile: the system location read at open,
the user's import, the user's own settings, and the effective policy with its sources.

Every config goes through ``app.provisioning.accept.check_candidate`` before anything is
written, and what it accepts is kept in the store in one transaction
(``store.organisation``), so a refused config changes nothing: not the configs in force,
not the trusted root, not the versions that guard against a downgrade. A system config
refused at open does not stop the profile from opening: the last accepted one stays in
force and the refusal is reported with the policy (``PolicyView.refusals``).

The config in force also says where the relay is and which keys it may present
(``relay``): enrolment goes there, and a newer config's rotated pins reach the profile's
relay settings without re-enrolment (``Account``).

The engine's parts read the policy through ``Provisioning.rules`` (``app.services.rules``)
before each action they own; it is worked out once and again only after a config was
accepted or the user changed a value. A profile not made yet has no store, so what the
machine's system config says about making one is read on its own (``system_rules``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from app.base.errors import ProvisioningError
from app.provisioning.accept import Candidate, InForce, Origin, check_candidate
from app.provisioning.config import OrgConfig, untrusted_config
from app.provisioning.errors import (
    ConfigFileError,
    DowngradedConfigError,
    InvalidPolicyValueError,
    OtherRelayConfigError,
)
from app.provisioning.locations import read_candidate, system_config_path
from app.provisioning.policy import EffectivePolicy, PolicyEntry, effective_policy
from app.provisioning.rules import BY_NAME, PolicyValue, ValueProblem, untrusted_value
from app.services.clock import Clock
from app.services.keylog import LogTrust
from app.services.rules import PolicyRules
from app.services.settings import load_relay
from app.sync.authority import AuthorityAddress
from app.sync.link import RelayAddress
from storage.store import Store

USER_SETTING_PREFIX = "policy.user."
"""A user's own value of a policy key, as JSON in the store's settings."""


@dataclass(frozen=True, slots=True)
class ConfigInForce:
    origin: str
    """``system`` or ``user``."""
    organisation: str
    version: int
    expires: str
    """ISO 8601; an accepted config that has since expired stays in force until a newer one
    comes, since dropping it would lift its mandatory rules."""


@dataclass(frozen=True, slots=True)
class PolicyView:
    policy: EffectivePolicy
    rules: PolicyRules
    """The same policy as typed values: what the window offers (timers, files, look-ups) and
    applies itself (``idle_lock_minutes``, ``notification_previews``)."""
    configs: tuple[ConfigInForce, ...]
    system_location: str
    refusals: tuple[str, ...]
    """Why a config found when the profile opened was refused (nothing of it was kept)."""


class Provisioning:
    def __init__(self, store: Store, *, system_config: Path, clock: Clock) -> None:
        self._store = store
        self._system_config = system_config
        self._clock = clock
        self._refusals: list[str] = []
        self._rules: PolicyRules | None = None
        """The effective policy's rules until a config or a user value changes it."""
        self._parsed: dict[Origin, tuple[bytes, OrgConfig]] = {}
        """Each origin's stored config text and what it parsed to (``_in_force``)."""

    def load_system(self) -> None:
        """Accept the system location's config if it is newer; keep a refusal's reason to show."""
        try:
            candidate = read_candidate(self._system_config, Origin.SYSTEM)
            if candidate is not None:
                self._accept(candidate)
        except ProvisioningError as e:
            self._refusals.append(str(e))

    def import_config(self, path: Path) -> OrgConfig:
        """Accept the config at ``path`` (its signature beside it) as the user's; raises the refusal."""
        candidate = read_candidate(path, Origin.USER)
        if candidate is None:
            raise ConfigFileError(f"there is no config at {path}")
        return self._accept(candidate)

    def offered_by_relay(self, config: bytes, signature: bytes) -> bool:
        """Take the config the relay publishes as the user's, checked as an import is; True if it
        changed what is in force. One that is older than (or the same as) the user's in force
        is not a refusal: the relay is behind, or the user imported the newer one first."""
        candidate = Candidate(Origin.USER, "the relay's published config", config, signature)
        kept = self._store.organisation.config(Origin.USER.value)
        try:
            self._accept(candidate)
        except DowngradedConfigError:
            return False
        changed = self._store.organisation.config(Origin.USER.value)
        return kept is None or changed is None or kept.config != changed.config

    def _accept(self, candidate: Candidate) -> OrgConfig:
        organisation = self._store.organisation
        kept = organisation.config(candidate.origin.value)
        trusted_root = organisation.root_key()
        accepted = check_candidate(
            candidate,
            trusted_root=trusted_root,
            in_force=InForce(kept.version, kept.config) if kept else None,
            now=self._clock(),
        )
        if trusted_root is None and candidate.origin is Origin.USER:
            self._refuse_another_relay(accepted.config, candidate.source)
        if accepted.changed:
            organisation.accept(
                candidate.origin.value,
                root_key=accepted.config.root_key,
                version=accepted.config.version,
                config=candidate.config,
                signature=accepted.signature,
            )
            self._rules = None
        return accepted.config

    def _refuse_another_relay(self, config: OrgConfig, source: str) -> None:
        """The first config a user imports fixes the organisation's root for good, and moves an
        enrolled profile to the relay it names; so for a profile enrolled before any config, it
        must name the relay the profile knows (one of its pins). A system config, which the
        machine's admins install, is not held to this: it is how an organisation moves relays."""
        enrolled = load_relay(self._store)
        if enrolled is not None and not set(enrolled.address.pins) & set(config.relay_pins):
            raise OtherRelayConfigError(
                f"{source} names other relays than the one this device is enrolled with "
                "(none of its pins is that relay's key): it is not your organisation's config"
            )

    def _in_force(self, origin: Origin) -> OrgConfig | None:
        """The config of ``origin`` in force, parsed once per stored text: it is asked for several
        times per message sent (the relay, the authority, the key log), and parsing costs more
        than the read (bench/groups.py measured a quarter of a 1:1 send)."""
        kept = self._store.organisation.config(origin.value)
        if kept is None:
            return None
        parsed = self._parsed.get(origin)
        if parsed is None or parsed[0] != kept.config:
            parsed = kept.config, untrusted_config(kept.config, source=f"the {origin.value} config")
            self._parsed[origin] = parsed
        return parsed[1]

    def relay(self) -> RelayAddress | None:
        """The relay's addresses and pins as the config in force names them: the system config's,
        else the imported one's; None with neither. The system's wins as its mandatory policy
        does, so an import cannot point a machine's profiles at another relay."""
        for origin in (Origin.SYSTEM, Origin.USER):
            config = self._in_force(origin)
            if config is not None:
                return RelayAddress(config.relay_urls, config.relay_pins)
        return None

    def authority(self) -> AuthorityAddress | None:
        """The enrolment authority of the config in force (the system's, else the imported one's):
        where devices are certified and the key every certificate must be signed by."""
        for origin in (Origin.SYSTEM, Origin.USER):
            config = self._in_force(origin)
            if config is not None:
                return AuthorityAddress(config.authority_urls, config.authority_pins, config.authority_key)
        return None

    def transparency(self) -> LogTrust | None:
        """The key log of the config in force (the system's, else the imported one's): the key its
        heads are signed with and the authority its device entries must be certified by."""
        for origin in (Origin.SYSTEM, Origin.USER):
            config = self._in_force(origin)
            if config is not None:
                return LogTrust(
                    config.log_key, config.authority_key, {admin.key: admin.name for admin in config.admins}
                )
        return None

    def _user_settings(self) -> dict[str, PolicyValue]:
        settings: dict[str, PolicyValue] = {}
        for name, rule in BY_NAME.items():
            saved = self._store.settings.get(USER_SETTING_PREFIX + name)
            if saved is None:
                continue
            try:
                settings[name] = untrusted_value(rule, json.loads(saved))
            except (ValueError, ValueProblem):
                continue  # a value an older Enclave allowed: the key falls back to the next source
        return settings

    def effective(self) -> EffectivePolicy:
        return effective_policy(
            system=self._in_force(Origin.SYSTEM),
            imported=self._in_force(Origin.USER),
            user=self._user_settings(),
        )

    def rules(self) -> PolicyRules:
        """The effective policy as the engine's parts check it."""
        if self._rules is None:
            self._rules = PolicyRules.of(self.effective())
        return self._rules

    def view(self) -> PolicyView:
        configs = tuple(
            ConfigInForce(origin.value, config.organisation, config.version, config.expires.isoformat())
            for origin in Origin
            if (config := self._in_force(origin)) is not None
        )
        policy = self.effective()
        return PolicyView(
            policy, PolicyRules.of(policy), configs, str(self._system_config), tuple(self._refusals)
        )

    def set_user(self, key: str, untrusted: object) -> PolicyEntry:
        """Set the user's own value of ``key``; a mandatory key or a bad value is a ``PolicyError``."""
        value = self.effective().check_user_setting(key, untrusted)
        self._store.settings.set(
            USER_SETTING_PREFIX + key, json.dumps(list(value) if isinstance(value, tuple) else value)
        )
        self._rules = None
        return self.effective().entry(key)

    def clear_user(self, key: str) -> PolicyEntry:
        """Forget the user's own value of ``key``; it falls back to the organisation's or the default."""
        if key not in BY_NAME:
            raise InvalidPolicyValueError(f"there is no policy key {key!r}")
        self._store.settings.delete(USER_SETTING_PREFIX + key)
        self._rules = None
        return self.effective().entry(key)


def system_location(chosen: Path | None = None) -> Path:
    """``chosen``, or the OS's system location of the organisation config."""
    return chosen or Path(str(system_config_path()))


def system_rules(system_config: Path, *, clock: Clock) -> PolicyRules:
    """The rules of the system location's config alone, for a profile that is not made yet.

    The checks are those a new profile's ``Provisioning.load_system`` will make (no root
    is trusted yet, no version is in force), so what is enforced before the profile exists
    is what will be in force once it does. With no config, or one refused, Enclave's
    defaults apply, as they will in the profile.
    """
    try:
        candidate = read_candidate(system_config, Origin.SYSTEM)
        if candidate is None:
            return PolicyRules.of(effective_policy(system=None, imported=None, user={}))
        accepted = check_candidate(candidate, trusted_root=None, in_force=None, now=clock())
    except ProvisioningError:
        return PolicyRules.of(effective_policy(system=None, imported=None, user={}))
    return PolicyRules.of(effective_policy(system=accepted.config, imported=None, user={}))
