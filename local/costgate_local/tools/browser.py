"""Headless Chromium for the HTML report: Debian's /usr/bin/chromium driven by Playwright.

One launch serves the report's render test and the README screenshot. Playwright's own browser
download is never used (`make browser` installs the distribution's package instead), and a page
opened here may load file:// URLs only: anything else is recorded and aborted.
"""

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import BrowserContext, Page, Route, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
# No GPU, no sandbox (containers, root in CI) and none of Chromium's own traffic (updates, sync, field trials).
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


@contextmanager
def headless_chromium(executable: Path = CHROMIUM) -> Iterator[BrowserContext]:
    """A browser context in a fresh, throwaway user data dir; the browser is closed and the dir removed on exit."""
    if not executable.is_file():
        raise FileNotFoundError(f"{executable} is missing: install Debian's chromium package (`make browser` as root)")
    # The profile outlives Playwright: the browser is gone before its directory is removed.
    with tempfile.TemporaryDirectory(prefix="costgate-chromium-") as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=executable, headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            yield context
        finally:
            context.close()


def offline(page: Page) -> list[str]:
    """Abort every request of the page that is not file://; returns the live list of the URLs refused."""
    refused: list[str] = []

    def only_files(route: Route) -> None:
        url = route.request.url
        if url.startswith("file://"):
            route.continue_()
        else:
            refused.append(url)
            route.abort("blockedbyclient")

    page.route("**/*", only_files)
    return refused
