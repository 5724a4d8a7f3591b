"""The playground (GET /) in a real headless browser: Debian's chromium driven by selenium.

The page streams a chat completion with prompt lookup from a tiny random model; its text must be
what the server returns for the same request without streaming, tinted by where the tokens came
from, with live statistics. Side by side, plain AR and the method must agree (greedy is lossless)
and the page shows the speedup. A screenshot goes to $DECODEKIT_SCREENSHOTS (or tmp_path).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest
from serving import serving
from tiny import tiny_backend

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PROMPT = "abc abc abc abc abc abc abc abc"  # repeats itself, so prompt lookup drafts and is accepted
MAX_TOKENS = 48
WAIT_S = 60


@pytest.fixture(scope="module")
def url():
    with serving(tiny_backend("llama"), "tiny", "prompt-lookup", max_tokens=64) as base:
        yield base


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(path)]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found: the playground test needs Debian's chromium and "
                    "chromedriver; run `make browser` to install them", pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
                "--window-size=1280,1000"):
        options.add_argument(arg)
    # An explicit driver path: Selenium Manager must not try to download one.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver, condition, message: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S, poll_frequency=0.05).until(condition, message)


def text_of(driver, selector: str) -> str:
    """An element's textContent: the exact text, not Selenium's rendered, whitespace-folded view."""
    return driver.execute_script("return document.querySelector(arguments[0]).textContent", selector)


def open_page(driver, base: str) -> None:
    driver.get(base + "/")
    # The method list arrives with a fetch after the page loads.
    wait(driver, lambda d: d.execute_script("return document.querySelectorAll('#method option').length") > 0,
         "the method <select> was never filled")


def fill(driver, selector: str, value: str) -> None:
    from selenium.webdriver.common.by import By

    field = driver.find_element(By.CSS_SELECTOR, selector)
    field.clear()
    field.send_keys(value)


def wait_done(driver, pane: str) -> None:
    def finished(d):
        status = text_of(d, f"{pane} .status")
        if status.startswith("error"):
            raise AssertionError(f"{pane}: {status}")
        return status == "done"

    wait(driver, finished, f"{pane} never reached 'done'")
    assert driver.find_element("css selector", pane).get_attribute("data-state") == "done"


def non_streamed(base: str, decoding: dict) -> str:
    body = {"model": "tiny", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": MAX_TOKENS,
            "temperature": 0, "decoding": decoding}
    response = httpx.post(base + "/v1/chat/completions", json=body, timeout=WAIT_S)
    response.raise_for_status()
    return response.json()["choices"][0]["message"]["content"]


def screenshot(driver, tmp_path: Path, name: str) -> Path:
    folder = Path(os.environ.get("DECODEKIT_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    driver.save_screenshot(str(path))
    assert path.is_file() and path.stat().st_size > 0, f"no screenshot at {path}"
    print(f"screenshot: {path}")
    return path


def number(driver, selector: str) -> float:
    text = text_of(driver, selector)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*", text)
    assert match, f"{selector} shows {text!r}, not a number"
    return float(match.group(1))


def test_streams_with_tinted_drafts_and_stats(browser, url, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    open_page(browser, url)
    assert browser.title == "decodekit playground"
    select = Select(browser.find_element(By.ID, "method"))
    names = [option.get_attribute("value") for option in select.options]
    assert {"ar", "prompt-lookup"} <= set(names)
    assert select.first_selected_option.get_attribute("value") == "prompt-lookup"  # the server's default
    groups = browser.execute_script("return [...document.querySelectorAll('#method optgroup')].map(g => g.label)")
    assert "Drafting" in groups
    assert browser.find_element(By.ID, "max-tokens").get_attribute("max") == "64"  # the server's limit
    assert "model: tiny" in text_of(browser, "#server-info")

    fill(browser, "#max-tokens", str(MAX_TOKENS))
    fill(browser, "#temperature", "0")
    fill(browser, "#options", "max_draft=8")
    fill(browser, "#prompt", PROMPT)
    browser.find_element(By.ID, "send").click()
    wait_done(browser, "#pane-main")

    expected = non_streamed(url, {"method": "prompt-lookup", "options": {"max_draft": 8}})
    assert expected
    assert text_of(browser, "#pane-main .output") == expected
    assert browser.find_elements(By.CSS_SELECTOR, "#pane-main .output .tok-draft"), "no token came from a draft"
    assert browser.find_elements(By.CSS_SELECTOR, "#pane-main .output .tok-model")
    assert number(browser, "#pane-main .tps") > 0
    assert number(browser, "#pane-main .tau") > 1  # drafts were accepted
    assert re.match(r"\d+/\d+", text_of(browser, "#pane-main .accepted"))
    bars = browser.find_elements(By.CSS_SELECTOR, "#pane-main .histogram .bar")
    assert len(bars) >= 2 and any(int(bar.get_attribute("data-count")) > 0 for bar in bars[1:])
    # The conversation keeps the prompt; the AR pane stays hidden in single mode.
    assert PROMPT in text_of(browser, "#history")
    assert not browser.find_element(By.ID, "pane-ar").is_displayed()

    screenshot(browser, tmp_path, "playground.png")


def test_side_by_side_shows_speedup(browser, url, tmp_path):
    from selenium.webdriver.common.by import By

    open_page(browser, url)
    fill(browser, "#max-tokens", str(MAX_TOKENS))
    fill(browser, "#temperature", "0")
    browser.find_element(By.ID, "side-by-side").click()
    fill(browser, "#prompt", PROMPT)
    browser.find_element(By.ID, "send").click()
    wait_done(browser, "#pane-ar")
    wait_done(browser, "#pane-main")

    ar, main = text_of(browser, "#pane-ar .output"), text_of(browser, "#pane-main .output")
    assert ar and ar == main  # greedy decoding is lossless
    assert number(browser, "#pane-ar .tau") == 1.0
    assert number(browser, "#pane-main .tau") > 1
    speedup = wait(browser, lambda d: d.find_element(By.ID, "speedup").is_displayed()
                   and d.find_element(By.ID, "speedup").text, "no speedup shown")
    assert re.fullmatch(r"speedup: \d+\.\d\d×", speedup), speedup

    screenshot(browser, tmp_path, "playground-side-by-side.png")


def test_conversation_errors_and_clear(browser, url, tmp_path):
    from selenium.webdriver.common.by import By

    open_page(browser, url)
    fill(browser, "#max-tokens", "8")
    fill(browser, "#prompt", PROMPT)
    browser.find_element(By.ID, "send").click()
    wait_done(browser, "#pane-main")
    first_reply = text_of(browser, "#pane-main .output")

    # Over the server's limit: the server's message shows, and the prompt goes back into the box.
    fill(browser, "#max-tokens", "1000")
    fill(browser, "#prompt", "and again")
    browser.find_element(By.ID, "send").click()
    wait(browser, lambda d: text_of(d, "#pane-main .status").startswith("error: "), "no error shown")
    assert "over this server's limit of 64" in text_of(browser, "#pane-main .status")
    assert browser.find_element(By.ID, "pane-main").get_attribute("data-state") == "error"
    assert browser.find_element(By.ID, "prompt").get_attribute("value") == "and again"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#history .msg")) == 2  # only the first turn

    # A second turn: the first one, reply included, is in the history.
    fill(browser, "#max-tokens", "8")
    browser.find_element(By.ID, "send").click()
    wait_done(browser, "#pane-main")
    messages = browser.find_elements(By.CSS_SELECTOR, "#history .msg")
    assert [m.get_attribute("class") for m in messages] == ["msg user", "msg assistant", "msg user"]
    assert text_of(browser, "#history .msg.assistant").endswith(first_reply)
    screenshot(browser, tmp_path, "playground-conversation.png")

    browser.find_element(By.ID, "clear").click()
    assert not browser.find_elements(By.CSS_SELECTOR, "#history .msg")
    assert text_of(browser, "#pane-main .output") == ""
