"""The README's configuration table lists every setting, with its current default."""

from __future__ import annotations

import re
from pathlib import Path

from authpi.settings import Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def _documented() -> dict[str, str]:
    rows = re.findall(r"^\| `(AUTHPI_[A-Z_]+)` \| `?([^|`]*)`? \|", README.read_text(), re.MULTILINE)
    return {name: default.strip() for name, default in rows}


def _shown(default: object) -> str:
    if default is None or default == []:
        return "—"
    if isinstance(default, bool):
        return str(default).lower()
    return str(default)


def test_every_setting_is_in_the_readme_table_with_its_default() -> None:
    documented = _documented()
    expected = {f"AUTHPI_{name.upper()}": _shown(f.default) for name, f in Settings.model_fields.items()}
    assert documented == expected
