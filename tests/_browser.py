"""Headless Chromium for report tests (Debian's chromium + chromedriver, driven by selenium)."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

# Flags that work on a closed network as root (no sandbox, no background connections).
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)


def find_chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@contextmanager
def headless_chromium():
    """A selenium driver, or a pytest skip naming what is missing."""
    found = find_chromium()
    if found is None:
        pytest.skip(
            "chromium/chromedriver not installed (apt-get install chromium chromium-driver)"
        )
    pytest.importorskip("selenium", reason="pip install selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = found[0]
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(found[1]))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


try:
    from selenium.webdriver.common.by import By
except ImportError:  # the tests that need it skip via headless_chromium()
    By = None


def click_text(driver, text):
    elements = driver.find_elements(By.XPATH, f"//*[normalize-space(text())='{text}']")
    assert elements, f"report has no element with text {text!r}"
    elements[0].click()
    time.sleep(0.3)


def open_every_entry(driver, report: Path) -> list[tuple[str, str, str]]:
    """Open every entry of a Snakemake HTML report; assert each figure decodes, each table shows.

    Returns the (category, subcategory, path) of every entry.
    """
    uri = report.as_uri()
    driver.get(uri)
    time.sleep(1)
    categories = json.loads(driver.execute_script("return JSON.stringify(categories)"))
    results = json.loads(driver.execute_script("return JSON.stringify(results)"))
    entries = [
        (cat, sub, path)
        for cat, subs in categories.items()
        for sub, paths in subs.items()
        for path in paths
    ]
    assert entries, f"{report}: the report lists no results"
    for category, subcategory, path in entries:
        driver.get(uri)
        time.sleep(0.5)
        click_text(driver, category)
        if len(categories[category]) > 1:
            click_text(driver, subcategory)
        labels = results[path].get("labels")
        assert labels, f"{path}: report entry without labels (wrap it in report(..., labels=))"
        label = next(iter(labels.values()))
        row = driver.find_element(By.XPATH, f"//tr[td[normalize-space(text())='{label}']]")
        row.find_elements(By.TAG_NAME, "a")[0].click()  # the "view" (eye) button
        time.sleep(0.5)
        if path.endswith(".png"):
            shown = [
                img
                for img in driver.find_elements(By.TAG_NAME, "img")
                if (img.get_attribute("src") or "").startswith("data:image/png")
            ]
            assert shown, f"{path}: no figure displayed"
            complete, width = driver.execute_script(
                "return [arguments[0].complete, arguments[0].naturalWidth]", shown[0]
            )
            assert complete and width > 300, f"{path}: image did not decode ({width}px)"
        else:
            frames = driver.find_elements(By.TAG_NAME, "iframe")
            assert frames, f"{path}: table not displayed"
            driver.switch_to.frame(frames[0])
            if "/explorer/" in path:
                # an example explorer: its script ran inside the report and listed the examples
                shown = driver.find_elements(By.CSS_SELECTOR, "#list li")
                assert shown, f"{path}: the explorer listed no examples inside the report"
            else:
                # a table, or the explicit note of a table with nothing configured to fill it
                shown = driver.find_elements(By.TAG_NAME, "table") or driver.find_elements(
                    By.CSS_SELECTOR, "p.empty"
                )
                assert shown, f"{path}: neither a <table> nor a 'no rows' note"
            driver.switch_to.default_content()
    return entries
