"""Settings → Email → Templates in a real browser: list, edit, preview of unsaved values in
a sandboxed frame, the sandbox refusing an injection, versions, history, revert, delete."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from postroom import Postroom
from tests.web.conftest import LiveServer, shot, sign_in

LIST = "/settings/email/templates"
INJECTION = "{{ ''.__class__.__mro__ }}"
DEPLOY = {
    "name": "deploy_report",
    "description": "After each deployment",
    "subject": "Deployed {{ service }}",
    "html": "<p>{{ service }} is live.</p>",
    "sample_data": {"service": "billing"},
}


@pytest.fixture(scope="module")
def seeded(live_server: LiveServer) -> Postroom:
    """A custom template and an override, so the list shows every origin."""
    pr = live_server.pr
    pr.templates.create(DEPLOY, actor="web:ada")
    pr.templates.update("alert", {"subject": "[{{ severity }}] {{ title }}"}, version=0)
    return pr


def row(page: Any, name: str) -> Any:
    return page.get_by_role("row").filter(has=page.get_by_role("link", name=name, exact=True))


def test_the_list_shows_origin_version_and_update(
    page: Any, live_server: LiveServer, accounts: dict[str, Any], seeded: Postroom
) -> None:
    sign_in(page, live_server.url, *accounts["admin"])
    page.get_by_role("link", name="Templates").click()
    page.wait_for_url(live_server.url + LIST)
    expect(row(page, "password_reset").locator(".origin-badge")).to_have_text("Built-in")
    expect(row(page, "password_reset")).to_contain_text("as shipped")
    expect(row(page, "alert").locator(".origin-badge")).to_have_text("Override")
    expect(row(page, "deploy_report").locator(".origin-badge")).to_have_text("Custom")
    expect(row(page, "deploy_report")).to_contain_text("After each deployment")
    expect(row(page, "deploy_report")).to_contain_text("web:ada")
    expect(row(page, "alert").locator("td").nth(2)).to_have_text("1")
    shot(page, "templates-list")


def test_preview_renders_unsaved_values_and_save_makes_a_version(
    page: Any, live_server: LiveServer, accounts: dict[str, Any], seeded: Postroom
) -> None:
    pr = seeded
    sign_in(page, live_server.url, *accounts["admin"])
    page.goto(live_server.url + LIST + "/password_reset")
    frame = page.frame_locator("iframe.mail-frame")
    expect(frame.get_by_role("heading", name="Reset your password")).to_be_visible()
    expect(page.locator("iframe.mail-frame")).to_have_attribute("sandbox", "")

    page.get_by_label("Subject").fill("Your {{ site_name }} sign-in link")
    html = page.get_by_label("HTML", exact=True)
    html.fill(
        html.input_value().replace(
            "<h1>Reset your password</h1>",
            "<h1>Forgot it, {{ user_name }}?</h1>\n<script>parent.document.title = 'owned'</script>",
        )
    )
    page.get_by_label("Sample data (JSON)").fill(
        '{"user_name": "Grace", "site_name": "Acme ops", "reset_url": "https://ops.example.com/r/1"}'
    )
    page.get_by_role("button", name="Preview").click()
    expect(page.locator(".preview-subject")).to_have_text("Your Acme ops sign-in link")
    expect(frame.get_by_role("heading", name="Forgot it, Grace?")).to_be_visible()
    expect(page.locator(".mail-text")).to_contain_text("https://ops.example.com/r/1")
    # styled like the mail (inline styles apply), but no script runs in the sandbox
    background = frame.locator("body").evaluate("b => getComputedStyle(b).backgroundColor")
    assert background == "rgb(243, 244, 246)"
    assert page.title() != "owned"
    assert pr.templates.get("password_reset").version == 0  # a preview saves nothing
    html.evaluate("e => { e.scrollTop = 0 }")
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(300)  # let the frame paint before the picture
    shot(page, "template-edit-preview")

    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Template 'password_reset' saved as version 1.")).to_be_visible()
    saved = pr.templates.get("password_reset")
    assert saved.origin == "override" and saved.subject == "Your {{ site_name }} sign-in link"
    history = page.get_by_role("region", name="History")
    expect(history.get_by_role("row")).to_have_count(3)  # header, version 1, the built-in
    expect(history.get_by_role("row").nth(1)).to_contain_text("current")

    # Load the built-in back into the editor from the history, and save it as version 2.
    history.get_by_role("link", name="Load into editor version 0").click()
    expect(page.get_by_text("Loaded version 0 into the editor")).to_be_visible()
    expect(page.get_by_label("Subject")).to_have_value(
        'Reset your {{ site_name | default("postroom") }} password'
    )
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("saved as version 2")).to_be_visible()

    # Revert: the override goes, the built-in is in force again.
    page.get_by_role("link", name="Revert to built-in…").click()
    page.get_by_role("button", name="Revert to built-in").click()
    expect(page.get_by_text("Template 'password_reset' is the built-in again.")).to_be_visible()
    assert pr.templates.get("password_reset").origin == "builtin"


def test_a_sandbox_escape_is_shown_as_an_error_with_its_line_and_never_saved(
    page: Any, live_server: LiveServer, accounts: dict[str, Any], seeded: Postroom
) -> None:
    sign_in(page, live_server.url, *accounts["admin"])
    page.goto(live_server.url + LIST + "/deploy_report")
    version = seeded.templates.get("deploy_report").version
    page.get_by_label("HTML", exact=True).fill(
        f"<p>{{{{ service }}}} is live.</p>\n<p>{INJECTION}</p>"
    )
    page.get_by_role("button", name="Preview").click()
    problem = page.locator(".template-problem")
    expect(problem).to_contain_text("HTML, line 2:")
    expect(problem).to_contain_text("access to attribute '__class__' of 'str' object is unsafe")
    expect(problem.locator(".source-line")).to_contain_text(INJECTION)
    shot(page, "template-preview-error")

    page.get_by_role("button", name="Save").click()
    expect(page.locator("#save-refused")).to_contain_text("fails on its sample data (HTML, line 2)")
    expect(page.locator(".template-problem")).to_contain_text("HTML, line 2:")
    expect(page.get_by_label("HTML", exact=True)).to_have_value(
        f"<p>{{{{ service }}}} is live.</p>\n<p>{INJECTION}</p>"
    )
    assert seeded.templates.get("deploy_report").version == version

    page.get_by_label("Sample data (JSON)").fill('{"service": "billing",}')
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#template-preview")).to_contain_text("Sample data is not valid JSON")


def test_a_save_over_someone_elses_version_is_refused_and_keeps_the_edit(
    browser: Any, live_server: LiveServer, accounts: dict[str, Any], seeded: Postroom
) -> None:
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        sign_in(page, live_server.url, *accounts["admin"])
        page.goto(live_server.url + LIST + "/deploy_report")
        # Preview without JavaScript: the page comes back with the values and the result.
        page.get_by_label("Subject").fill("Shipped {{ service }}")
        page.get_by_role("button", name="Preview").click()
        expect(page.locator(".preview-subject")).to_have_text("Shipped billing")
        current = seeded.templates.get("deploy_report")
        seeded.templates.update("deploy_report", {"description": "changed meanwhile"},
                                version=current.version, actor="api:ci")  # fmt: skip
        page.get_by_role("button", name="Save").click()
        stale = page.locator("#stale-version")
        expect(stale).to_contain_text("was changed by someone else")
        expect(stale).to_contain_text(f"now version {current.version + 1}")
        expect(page.get_by_label("Subject")).to_have_value("Shipped {{ service }}")
        assert seeded.templates.get("deploy_report").subject == DEPLOY["subject"]
    finally:
        context.close()


def test_a_custom_template_is_created_and_deleted(
    page: Any, live_server: LiveServer, accounts: dict[str, Any], seeded: Postroom
) -> None:
    sign_in(page, live_server.url, *accounts["admin"])
    page.goto(live_server.url + LIST)
    page.get_by_role("link", name="+ New template").click()
    page.get_by_label("Name").fill("Bad Name")
    page.get_by_label("Subject").fill("Disk {{ disk }} at {{ pct }}%")
    page.get_by_label("Sample data (JSON)").fill('{"disk": "/var", "pct": 93}')
    page.get_by_role("button", name="Create template").click()
    expect(page.locator(".error-summary")).to_contain_text("Name")
    page.get_by_label("Name").fill("disk_full")
    page.get_by_role("button", name="Create template").click()
    expect(page.get_by_text("Template 'disk_full' created.")).to_be_visible()
    expect(page.locator(".preview-subject")).to_have_text("Disk /var at 93%")
    page.get_by_role("link", name="Delete…").click()
    page.get_by_role("button", name="Delete template").click()
    expect(page.get_by_text("Template 'disk_full' deleted")).to_be_visible()
    expect(row(page, "disk_full")).to_have_count(0)


def test_viewers_read_templates_and_change_nothing(
    page: Any, live_server: LiveServer, accounts: dict[str, Any], seeded: Postroom
) -> None:
    sign_in(page, live_server.url, *accounts["viewer"])
    page.goto(live_server.url + LIST)
    expect(page.get_by_role("link", name="+ New template")).to_have_count(0)
    page.get_by_role("link", name="View deploy_report").click()
    expect(page.get_by_text("Your account has the viewer role")).to_be_visible()
    expect(page.get_by_label("Subject")).to_be_disabled()
    expect(page.get_by_role("button", name="Save")).to_have_count(0)
    expect(page.get_by_role("button", name="Preview")).to_have_count(0)
    expect(page.frame_locator("iframe.mail-frame").get_by_text("billing is live.")).to_be_visible()
    shot(page, "template-viewer")
    token = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    for path, form in (
        (LIST + "/deploy_report", {"action": "save", "subject": "x", "html": "<p>x</p>"}),
        (LIST + "/deploy_report/delete", {}),
        (LIST + "/-/new", {"name": "sneaky", "subject": "x", "html": "x"}),
    ):
        response = page.request.post(
            live_server.url + path, form={"csrf_token": str(token), **form}
        )
        assert response.status == 403, path
    assert seeded.templates.get("deploy_report").subject == DEPLOY["subject"]


def test_template_forms_need_their_csrf_token(
    page: Any, live_server: LiveServer, accounts: dict[str, Any], seeded: Postroom
) -> None:
    sign_in(page, live_server.url, *accounts["admin"])
    for path in (LIST + "/deploy_report", LIST + "/deploy_report/delete"):
        response = page.request.post(
            live_server.url + path, form={"action": "save", "subject": "x"}
        )
        assert response.status == 403 and "This form has expired" in response.text()
    assert seeded.templates.get("deploy_report").subject == DEPLOY["subject"]
