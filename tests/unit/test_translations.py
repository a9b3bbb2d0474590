"""Every user-facing string has a Ukrainian translation, and the compiled catalogue is current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
    wanted = {m.id for m in read_po(pot.open("rb")) if m.id}
    with PO.open("rb") as handle:
        catalogue = {m.id: m.string for m in read_po(handle) if m.id}
    assert len(wanted) > 50
    assert sorted(wanted - catalogue.keys()) == []
    assert sorted(k for k in wanted if not catalogue[k]) == []


def test_the_compiled_catalogue_matches_its_source() -> None:
    with PO.open("rb") as handle:
        source = {m.id: m.string for m in read_po(handle) if m.id}
    with MO.open("rb") as handle:
        compiled = {m.id: m.string for m in read_mo(handle) if m.id}
    assert compiled == source
