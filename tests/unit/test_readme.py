"""The README's table names every environment variable the code reads."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READ = re.compile(
    r"""(?:env|environ)(?:\.get)?\(\s*["']([A-Z][A-Z0-9_]+)["']"""  # env.get("NAME")
    r"""|_\w+\(env, "([A-Z0-9_]+)\""""  # _int(env, "NAME", ...), _choice(env, ...)
)


def test_every_environment_variable_is_documented() -> None:
    names: set[str] = set()
    for package in ("shared", "web", "workers", "media"):
        for path in (ROOT / package).rglob("*.py"):
            for match in READ.finditer(path.read_text()):
                names.add(match.group(1) or match.group(2))
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", readme, flags=re.MULTILINE))
    assert len(names) > 10
    assert sorted(names - documented) == []
