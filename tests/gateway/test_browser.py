"""The web page in a real Chromium (Debian's package, driven by Playwright) against the real services.

Every request the page makes to another host is aborted and recorded: the page and the docs must work
with nothing from a CDN.
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.gateway.conftest import RW_TOKEN, Stack
from tests.support.gateway import seventeen_pixel_face
from tests.support.servers import dead_address, start_service

pytestmark = pytest.mark.model

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 180_000  # an identify on a loaded 2-core machine, models warm


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make setup` installs Debian's chromium package.")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


class Visit:
    """A page on a fresh browser context, recording every request to another host (and aborting it)."""

    def __init__(self, browser, url: str) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.elsewhere: list[str] = []
        # Every request that answered 404, and every policy violation the console reports.
        self.missing: list[str] = []
        self.violations: list[str] = []
        own = urlparse(url).netloc
        self.page.on("response", lambda r: self.missing.append(r.url) if r.status == 404 else None)
        self.page.on(
            "console",
            lambda m: self.violations.append(m.text) if "Content Security Policy" in m.text else None,
        )

        def route(route) -> None:
            if urlparse(route.request.url).netloc != own:
                self.elsewhere.append(route.request.url)
                route.abort()
            else:
                route.continue_()

        self.page.route("**/*", route)
        self.page.goto(url)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def visit(browser) -> Iterator:
    opened: list[Visit] = []

    def open_(url: str) -> Visit:
        opened.append(Visit(browser, url))
        return opened[-1]

    yield open_
    for v in opened:
        assert v.elsewhere == [], f"the page asked other hosts: {v.elsewhere}"
        assert v.missing == [], f"requests answered 404: {v.missing}"
        assert v.violations == [], f"the security policy blocked: {v.violations}"
        v.close()


def people(images: list[tuple[str, Path]], who: str) -> list[Path]:
    return [path for person, path in images if person == who]


def test_enroll_through_the_page_then_identify_a_val_picture_shows_the_name(
    stack: Stack, visit, train_images, val_images, tmp_path: Path
) -> None:
    v = visit(stack.url)
    page = v.page
    page.fill("#enroll-name", "jerry_seinfeld")
    page.set_input_files("#enroll-files", [str(p) for p in people(train_images, "jerry_seinfeld")[:4]])
    page.click("#enroll-button")
    # A locator, not wait_for_function: the page's CSP forbids the eval that one would run.
    page.locator("#enroll-results li").nth(3).wait_for()
    outcomes = page.locator("#enroll-results li").all_inner_texts()
    assert sum("enrolled" in o for o in outcomes) >= 3, outcomes
    page.wait_for_selector("#identities-list li[data-identity='jerry_seinfeld']")

    page.set_input_files("#identify-file", str(people(val_images, "jerry_seinfeld")[0]))
    label = page.locator(".face:not(.unknown) span", has_text="jerry_seinfeld")
    label.first.wait_for()
    rows = page.locator("#identify-faces tbody tr").all_inner_texts()
    assert any("jerry_seinfeld" in row for row in rows), rows
    summary = page.inner_text("#identify-summary")
    assert "threshold" in summary
    assert page.locator("#error").is_hidden()

    # Madonna's first and third val pictures lie 0.69 apart, well within the default far_1e-3 (1.09);
    # her first two lie 1.12 apart, which that point rejects (its TAR on the calibration set is 88%).
    same = people(val_images, "madonna")
    page.set_input_files("#verify-a", str(same[0]))
    page.set_input_files("#verify-b", str(same[2]))
    page.click("#verify-button")
    page.wait_for_selector("#verify-result:has-text('distance')")
    assert page.inner_text("#verify-result").startswith("Same person")

    # The person's faces, each shown from its kept picture.
    page.click("#identities-list li[data-identity='jerry_seinfeld'] summary")
    page.locator("#identities-list li[data-identity='jerry_seinfeld'] .thumb img[src^='blob:']").nth(
        3
    ).wait_for()

    shot = tmp_path / "gateway-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if target := os.environ.get("GATEWAY_SCREENSHOT"):
        shutil.copyfile(shot, target)

    page.click("#identities-list li[data-identity='jerry_seinfeld'] button.remove-identity")
    page.wait_for_selector("#identities-list li[data-identity='jerry_seinfeld']", state="detached")
    page.set_input_files("#identify-file", str(people(val_images, "jerry_seinfeld")[1]))
    page.locator(".face.unknown span", has_text="unknown").first.wait_for()


def test_a_picture_dropped_on_the_page_is_identified(stack: Stack, visit, train_images, val_images) -> None:
    page = visit(stack.url).page
    page.fill("#enroll-name", "mindy_kaling")
    page.set_input_files("#enroll-files", [str(p) for p in people(train_images, "mindy_kaling")[:3]])
    page.click("#enroll-button")
    page.wait_for_selector("#identities-list li[data-identity='mindy_kaling']")
    picture = people(val_images, "mindy_kaling")[0]
    # What a drag from the desktop delivers: a drop event whose DataTransfer holds the file.
    page.evaluate(
        """async ([name, b64]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const data = new DataTransfer();
            data.items.add(new File([bytes], name, { type: "image/jpeg" }));
            const target = document.getElementById("identify-drop");
            target.dispatchEvent(new DragEvent("dragover", { dataTransfer: data, bubbles: true, cancelable: true }));
            target.dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
        }""",
        [picture.name, base64.b64encode(picture.read_bytes()).decode()],
    )
    page.locator(".face:not(.unknown) span", has_text="mindy_kaling").first.wait_for()


def test_a_file_that_is_not_a_picture_shows_one_error_sentence(stack: Stack, visit, tmp_path: Path) -> None:
    notes = tmp_path / "notes.jpg"
    notes.write_text("these are notes, not a picture")
    page = visit(stack.url).page
    page.set_input_files("#identify-file", str(notes))
    error = page.locator("#error")
    error.wait_for(state="visible")
    sentence = error.inner_text().strip()
    assert sentence.endswith(".") and "\n" not in sentence and len(sentence) > 10, sentence
    assert page.locator(".face").count() == 0


def test_a_gallery_that_is_down_shows_one_error_sentence(visit, tmp_path: Path) -> None:
    with dead_address() as dead:
        gateway = start_service("gateway", ["--gallery", dead, "--timeout-s", "5"])
        try:
            page = visit(f"http://{gateway.address}").page
            error = page.locator("#error")
            try:
                error.wait_for(state="visible", timeout=60_000)
            except PlaywrightTimeoutError:
                raise AssertionError(
                    f"the page showed no error; the gateway said: {gateway.output}"
                ) from None
            assert error.inner_text().strip() == f"The gallery at {dead} is not reachable."
        finally:
            gateway.stop()


def test_the_page_works_with_tokens_on_and_keeps_the_token_for_the_session(
    secured: Stack, visit, train_images, val_images
) -> None:
    page = visit(secured.url).page
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert "token" in error.inner_text()

    page.fill("#token", RW_TOKEN)
    page.reload()
    assert page.input_value("#token") == RW_TOKEN  # sessionStorage survives a reload of the tab
    page.fill("#enroll-name", "ben_afflek")
    page.set_input_files("#enroll-files", [str(p) for p in people(train_images, "ben_afflek")[:3]])
    page.click("#enroll-button")
    page.wait_for_selector("#identities-list li[data-identity='ben_afflek']")
    page.set_input_files("#identify-file", str(people(val_images, "ben_afflek")[0]))
    page.locator(".face:not(.unknown) span", has_text="ben_afflek").first.wait_for()
    assert page.locator("#error").is_hidden()
    stored = page.evaluate("sessionStorage.getItem('facerec-token')")
    assert stored == RW_TOKEN and page.evaluate("localStorage.length") == 0


def test_the_page_says_what_it_is_and_loads_its_icon_with_no_request_missing(stack: Stack, visit) -> None:
    v = visit(stack.url)
    page = v.page
    page.wait_for_load_state("networkidle")
    assert "face recognition" in page.title()
    assert "face recognition" in page.inner_text("h1")
    icon = page.evaluate("document.querySelector('link[rel=icon]').href")
    assert page.request.get(icon).status == 200
    assert v.missing == []  # the favicon included: Chromium asks for it on every load


def test_a_face_too_small_shows_not_identifiable_with_its_reason(
    stack: Stack, visit, val_images, tmp_path
) -> None:
    with httpx.Client(base_url=stack.url, timeout=180) as http:
        small = tmp_path / "small.png"
        small.write_bytes(seventeen_pixel_face(http, people(val_images, "madonna")[0]))
    page = visit(stack.url).page
    page.set_input_files("#identify-file", str(small))
    page.locator(".face.unidentifiable span", has_text="not identifiable").first.wait_for()
    row = page.locator("#identify-faces tbody tr").first.inner_text()
    assert "not identifiable" in row and "The face is " in row and "px" in row, row


def test_the_docs_page_renders_every_route_without_a_cdn(stack: Stack, visit) -> None:
    page = visit(f"{stack.url}/docs").page
    page.wait_for_selector(".opblock")
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert {"/v1/identify", "/v1/enroll", "/v1/identities", "/healthz"} <= {p.strip() for p in paths}, paths


# ---------------------------------------------------------------- collections


@contextmanager
def created(url: str, name: str) -> Iterator[httpx.Client]:
    """A client of the gateway at url, with the collection `name` created (afresh)."""
    with httpx.Client(base_url=url, timeout=180) as http:
        http.delete(f"/v1/collections/{name}")
        made = http.post("/v1/collections", json={"name": name})
        assert made.status_code == 200, made.text
        yield http


def test_the_collection_picker_keeps_each_collections_people_apart(
    stack: Stack, visit, train_images, val_images
) -> None:
    with created(stack.url, "archive"):
        pass
    page = visit(stack.url).page
    picker = page.locator("#collection")
    page.locator("#collection option[value='archive']").wait_for(state="attached")
    assert picker.input_value() == "default"
    picker.select_option("archive")
    page.fill("#enroll-name", "elton_john")
    page.set_input_files("#enroll-files", [str(p) for p in people(train_images, "elton_john")[:3]])
    page.click("#enroll-button")
    page.wait_for_selector("#identities-list li[data-identity='elton_john']")
    elton = people(val_images, "elton_john")[0]
    page.set_input_files("#identify-file", str(elton))
    page.locator(".face:not(.unknown) span", has_text="elton_john").first.wait_for()

    # In default, nobody of archive is listed or recognized.
    picker.select_option("default")
    page.wait_for_selector("#identities-list li[data-identity='elton_john']", state="detached")
    assert page.locator("#identify-figure").is_hidden()
    page.set_input_files("#identify-file", str(elton))
    page.locator("#identify-summary", has_text="face").wait_for()
    assert page.locator(".face:not(.unknown) span", has_text="elton_john").count() == 0
    assert page.locator("#error").is_hidden()


def test_an_identitys_thumbnails_remove_one_face_and_rename_it(stack: Stack, visit, train_images) -> None:
    madonna = people(train_images, "madonna")[:3]
    with created(stack.url, "thumbs") as http:
        files = [("images", (p.name, p.read_bytes())) for p in madonna]
        enrolled = http.post("/v1/collections/thumbs/enroll", data={"identity": "madonna"}, files=files)
        assert enrolled.status_code == 200, enrolled.text
        # A face enrolled as an embedding keeps no picture: the page shows a placeholder for it.
        found = http.post("/v1/collections/thumbs/represent", files={"image": madonna[0].read_bytes()}).json()
        vector = found["faces"][0]["embedding"]["values"]
        as_vector = http.post(
            "/v1/collections/thumbs/enroll", json={"identity": "madonna", "embeddings": [vector]}
        )
        assert as_vector.json()["results"][0]["outcome"] == "ENROLLED", as_vector.text
    page = visit(stack.url).page
    page.locator("#collection option[value='thumbs']").wait_for(state="attached")
    page.locator("#collection").select_option("thumbs")
    person = page.locator("#identities-list li[data-identity='madonna']")
    person.locator("summary").click()
    pictures = person.locator(".thumb img[src^='blob:']")
    pictures.nth(2).wait_for()
    person.locator(".thumb .placeholder").first.wait_for()
    assert person.locator(".thumb").count() == 4
    # Each decodes as an image (decode() waits for it: no polling, which the page's CSP would forbid).
    widths = [pictures.nth(i).evaluate("img => img.decode().then(() => img.naturalWidth)") for i in range(3)]
    assert all(w > 50 for w in widths), widths
    first = person.locator(".thumb").first
    removed_id = first.get_attribute("data-face-id")
    first.locator("button.remove-face").click()
    page.wait_for_selector("#identities-list li[data-identity='madonna'] .identity-name:has-text('3 faces')")
    with httpx.Client(base_url=stack.url, timeout=60) as http:
        left = http.get("/v1/collections/thumbs/identities/madonna").json()["faces"]
    assert removed_id not in {str(f["face_id"]) for f in left} and len(left) == 3

    person = page.locator("#identities-list li[data-identity='madonna']")
    person.locator("summary").click()
    person.locator(".new-name").fill("Madonna Ciccone")
    person.locator(".rename button").click()
    page.wait_for_selector("#identities-list li[data-identity='Madonna Ciccone']")
    assert page.locator("#identities-list li[data-identity='madonna']").count() == 0
    assert page.locator("#error").is_hidden()
