"""Every user-facing string has a Ukrainian translation, and the compiled catalogue is current."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from babel.messages.catalog import Message
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

WEB = Path(__file__).resolve().parents[2] / "web"
PO = WEB / "translations" / "uk" / "LC_MESSAGES" / "messages.po"
MO = PO.with_suffix(".mo")


def test_every_extracted_string_is_translated(tmp_path: Path) -> None:
    pot = tmp_path / "messages.pot"
    subprocess.run(
        [sys.executable, "-m", "babel.messages.frontend", "extract", "-F", str(WEB / "babel.cfg"),
         "-k", "_l", "-k", "lazy_gettext", "-o", str(pot), "--no-location", str(WEB)],
        check=True, capture_output=True,
    )  # fmt: skip
    with pot.open("rb") as handle:
        wanted = set(_entries(read_po(handle)))
    with PO.open("rb") as handle:
        catalogue = _entries(read_po(handle))
    assert len(wanted) > 50
    assert sorted(map(str, wanted - catalogue.keys())) == []
    untranslated = [k for k in wanted if not all(_as_tuple(catalogue[k]))]
    assert untranslated == []


def _entries(messages: Iterable[Message]) -> dict[object, object]:
    """Message id to translation; plural ids and forms as tuples."""
    return {
        tuple(m.id) if isinstance(m.id, list | tuple) else m.id: (
            tuple(m.string) if isinstance(m.string, list | tuple) else m.string
        )
        for m in messages
        if m.id
    }


def test_the_compiled_catalogue_matches_its_source() -> None:
    with PO.open("rb") as handle:
        source = _entries(read_po(handle))
    with MO.open("rb") as handle:
        compiled = _entries(read_mo(handle))
    assert compiled == source


def _as_tuple(value: object) -> tuple[object, ...]:
    return value if isinstance(value, tuple) else (value,)
