"""End to end in a real headless browser: Playwright drives Debian's Chromium, with the keyboard alone.

Skips when the ``playwright`` package or ``/usr/bin/chromium`` is missing (never downloads a browser).
"""

import json
import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from rlhf_gym.labelling import LabelStore, create_app, load_pairs
from rlhf_gym.preferences import load_preferences

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SCRIPT = "<script>alert(1)</script>"
IMG = '<img src=x onerror="alert(2)"> plain'

pytestmark = pytest.mark.slow  # a real browser and server: seconds, and a system Chromium

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)


@pytest.fixture
def server(tmp_path):
    """The real app under uvicorn on a free loopback port, in a background thread."""
    pairs = tmp_path / "pairs.jsonl"
    texts = [("the food was", "great , really great .", "cold and bland ."), ("the staff were", SCRIPT, IMG),
             ("overall it was", "fine .", "not bad .")]
    pairs.write_text("".join(json.dumps({"pair_id": k, "prompt": p, "response_a": a, "response_b": b}) + "\n"
                             for k, (p, a, b) in enumerate(texts)))
    out = tmp_path / "prefs.jsonl"
    app = create_app(LabelStore(out, load_pairs(pairs), seed=0))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    uvicorn_server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=uvicorn_server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uvicorn_server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", out
    uvicorn_server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture
def page():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page()
        finally:
            browser.close()


def test_label_three_pairs_with_the_keyboard(server, page):
    base, out = server
    expect = sync_api.expect
    dialogs, foreign = [], []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("request", lambda request: None if request.url.startswith(base) else foreign.append(request.url))

    page.goto(f"{base}/")
    expect(page.locator("#name-input")).to_be_focused()
    page.keyboard.type("ana")
    page.keyboard.press("Enter")
    expect(page.locator("#pair-id")).to_have_text("#0")
    expect(page.locator("#labeler-name")).to_have_text("ana")
    expect(page.locator("#progress")).to_have_text("0 judged · 3 to go")
    expect(page.locator("#name-view")).to_be_hidden()
    expect(page.locator("#done-view")).to_be_hidden()
    seen = {0: (page.locator("#left").text_content(), page.locator("#right").text_content())}
    page.keyboard.press("1")

    expect(page.locator("#pair-id")).to_have_text("#1")
    seen[1] = (page.locator("#left").text_content(), page.locator("#right").text_content())
    assert sorted(seen[1]) == sorted([SCRIPT, IMG])  # shown as literal text
    assert page.locator("#pair-view script, #pair-view img").count() == 0
    page.keyboard.press("2")
    expect(page.locator("#pair-id")).to_have_text("#2")
    page.keyboard.press("Backspace")  # undo: pair 1 comes back
    expect(page.locator("#pair-id")).to_have_text("#1")
    expect(page.locator("#status")).to_have_text("Undone: your judgement of #1")
    page.keyboard.press("2")

    expect(page.locator("#pair-id")).to_have_text("#2")
    page.keyboard.press("3")
    expect(page.locator("#done-view")).to_be_visible()
    expect(page.locator("#pair-view")).to_be_hidden()
    expect(page.locator("#progress")).to_have_text("3 judged · 0 to go")

    assert dialogs == [] and foreign == []
    records = {r["pair_id"]: r for r in load_preferences(out, include_non_preferences=True)}
    assert sorted(records) == [0, 1, 2]
    assert (records[0]["chosen"], records[0]["rejected"]) == seen[0]
    assert (records[1]["chosen"], records[1]["rejected"]) == seen[1][::-1]
    assert records[2]["label"] == "tie"
    assert {r["labeler"] for r in records.values()} == {"ana"}
    assert len(load_preferences(out)) == 2
