"""The published provisioning templates are what the code's rules make, and well-formed."""

from __future__ import annotations

import importlib.util
import xml.etree.ElementTree as ET
from types import ModuleType

from tests.support.organisation import REPO

FOLDER = REPO / "packaging" / "provisioning"
NS = {"gp": "http://schemas.microsoft.com/GroupPolicy/2006/07/PolicyDefinitions"}


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_templates", FOLDER / "make_templates.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_templates_are_up_to_date_with_the_schema() -> None:
    """Test that the schema, ADMX and ADML on disk equal a fresh run of make_templates.py."""
    for name, text in _generator().render().items():
        assert (FOLDER / name).read_text(encoding="utf-8") == text, f"run make_templates.py: {name} is stale"


def test_the_group_policy_template_is_well_formed_and_points_at_a_config_path() -> None:
    """Test that the ADMX and ADML parse as XML, set HKLM\\Software\\Policies\\Enclave ConfigPath,
    and that every string and presentation the ADMX names is in the ADML."""
    admx = ET.parse(FOLDER / "enclave.admx").getroot()
    adml = ET.parse(FOLDER / "en-US" / "enclave.adml").getroot()
    (policy,) = admx.findall("gp:policies/gp:policy", NS)
    assert (policy.get("class"), policy.get("key")) == ("Machine", r"Software\Policies\Enclave")
    assert policy.find("gp:elements/gp:text", NS).get("valueName") == "ConfigPath"  # type: ignore[union-attr]
    strings = {s.get("id") for s in adml.findall("gp:resources/gp:stringTable/gp:string", NS)}
    presentations = {
        p.get("id") for p in adml.findall("gp:resources/gp:presentationTable/gp:presentation", NS)
    }
    named = [
        policy.get("displayName"),
        policy.get("explainText"),
        admx.find("gp:categories/gp:category", NS).get("displayName"),
    ]  # type: ignore[union-attr]
    assert {n[len("$(string.") : -1] for n in named if n} <= strings
    assert policy.get("presentation") == "$(presentation.ConfigPath)" and "ConfigPath" in presentations
    explain = next(s.text for s in adml.iter(f"{{{NS['gp']}}}string") if s.get("id") == "ConfigPath_Explain")
    assert explain is not None and "timer_maximum_seconds" in explain
