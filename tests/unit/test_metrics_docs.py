"""Every metric the Grafana dashboard queries exists in the code and is in the operators'
table of metrics (infra/README.md)."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
METRIC = re.compile(r"\bvidclinic_[a-z_]+")
SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_info")


def _base(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def test_the_dashboards_metrics_exist_and_are_documented() -> None:
    dashboard = json.loads((ROOT / "infra" / "grafana" / "vidclinic.json").read_text())
    queried = {
        _base(name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in METRIC.findall(target["expr"])
    }
    code = "".join(
        path.read_text()
        for package in ("web", "workers", "media")
        for path in (ROOT / package).rglob("*.py")
    )
    readme = (ROOT / "infra" / "README.md").read_text()
    assert len(queried) > 15
    assert (
        sorted(
            n
            for n in queried
            if f'"{n}"' not in code and f'"{n.removeprefix("vidclinic_media_")}"' not in code
        )
        == []
    )
    assert sorted(n for n in queried if f"`{n}" not in readme) == []
