"""axe-core, the accessibility checker, run inside the pages the browser tests open.

The script comes from the `axe-core` npm package at one pinned version, fetched once into
`.cache/axe/` (ignored by git) by `python -m tests.support.axe`, which `scripts/test` runs
before the tests; the tests read it from there and fail with that command if it is missing.
"""

from __future__ import annotations

import base64
import hashlib
import io
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from playwright.sync_api import Page

VERSION = "4.14.1"
#: The npm registry's integrity of axe-core-4.14.1.tgz: a changed tarball is refused.
INTEGRITY = (
    "sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPj"
    "CKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ=="
)
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".cache" / "axe" / f"axe-core-{VERSION}" / "axe.min.js"
#: The impacts a page may not have at all.
BLOCKING = ("serious", "critical")

RUN = """async () => {
  const results = await axe.run(document, { resultTypes: ["violations"] });
  return results.violations.map((v) => ({
    id: v.id,
    impact: v.impact,
    help: v.help,
    nodes: v.nodes.map((n) => ({ target: n.target.join(" "), summary: n.failureSummary })),
  }));
}"""


def script() -> str:
    """The text of axe.min.js; fails the test with how to fetch it when it is missing."""
    if not SCRIPT.exists():
        import pytest

        pytest.fail(
            f"axe-core {VERSION} is not in {SCRIPT.parent}: run `.venv/bin/python -m "
            "tests.support.axe` (./scripts/test does) with npm on the PATH",
            pytrace=False,
        )
    return SCRIPT.read_text()


def violations(page: Page, source: str) -> list[dict[str, object]]:
    """The page's serious and critical violations as it is now, each with the elements at fault.

    `source` is the text of axe.min.js, as `script()` gives it.
    """
    # Evaluated, not added as a <script>: the pages' Content-Security-Policy allows no inline
    # script, and is kept on so that the pages are checked as people get them.
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate("() => {\n" + source + "\n}")
    found: list[dict[str, object]] = page.evaluate(RUN)
    return [v for v in found if v["impact"] in BLOCKING]


def fetch() -> Path:
    """Put axe.min.js of the pinned version into the cache, unless it is there already."""
    if SCRIPT.exists():
        return SCRIPT
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("the accessibility tests need npm to fetch axe-core: apt-get install npm")
    print(f"Fetching axe-core {VERSION} into {SCRIPT.parent.relative_to(ROOT)} (once)...")
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(
            [npm, "pack", "--silent", f"axe-core@{VERSION}"],
            cwd=folder,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        tarball = Path(folder) / f"axe-core-{VERSION}.tgz"
        data = tarball.read_bytes()
    digest = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != INTEGRITY:
        raise SystemExit(f"axe-core-{VERSION}.tgz has integrity {digest}, not {INTEGRITY}")
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        member = archive.extractfile("package/axe.min.js")
        assert member is not None
        text = member.read()
    SCRIPT.parent.mkdir(parents=True, exist_ok=True)
    partial = SCRIPT.with_suffix(".part")
    partial.write_bytes(text)
    partial.replace(SCRIPT)
    return SCRIPT


if __name__ == "__main__":
    fetch()
