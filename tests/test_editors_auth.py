"""Personal API tokens, the Editors group and the audit log (the write API's foundations)."""

import hashlib
import json
import re

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.http import JsonResponse
from django.test import Client, RequestFactory
from django.urls import path

from editors.auth import api_view, token_user
from editors.models import ApiToken, AuditLog, record

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("static_files")]


@pytest.fixture
def editor():
    user = User.objects.create_user("ed", password="pw-for-tests-only")
    user.groups.add(Group.objects.get(name="Editors"))
    return user


@api_view("editors.post")
def posting(request, user, via):
    return JsonResponse({"user": user.username, "via": via})


urlpatterns = [path("x", posting)]  # for the session test


def call(view, method="post", **extra):
    request = getattr(RequestFactory(), method)("/x", **extra)
    from django.contrib.auth.models import AnonymousUser

    request.user = AnonymousUser()
    response = view(request)
    response.json = lambda: json.loads(response.content)
    return response


def test_a_token_is_stored_only_as_its_hash_and_found_by_it(editor):
    row, token = ApiToken.issue(editor, "cms")
    assert token.startswith("llg_")
    assert len(token) > 40
    row.refresh_from_db()
    assert row.digest == hashlib.sha256(token.encode()).hexdigest()
    assert token not in {row.digest, row.prefix, row.name}
    assert row.prefix == token[:12]
    assert token_user(f"Bearer {token}") == editor
    assert token_user(f"Bearer {token}x") is None
    assert token_user(token) is None  # not a Bearer header


def test_a_used_token_records_when_but_not_on_every_request(editor, django_assert_num_queries):
    row, token = ApiToken.issue(editor)
    assert token_user(f"Bearer {token}") == editor
    row.refresh_from_db()
    assert row.last_used_at is not None
    with django_assert_num_queries(1):  # the lookup only: used a moment ago
        token_user(f"Bearer {token}")


def test_createapitoken_prints_a_working_token_for_an_existing_user(editor, capsys):
    call_command("createapitoken", "ed")
    token = capsys.readouterr().out.strip()
    assert token_user(f"Bearer {token}") == editor
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        call_command("createapitoken", "nobody")


def test_the_api_answers_401_without_or_with_a_revoked_token_and_403_without_permission(editor):
    row, token = ApiToken.issue(editor)
    response = call(posting, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200
    assert response.json() == {"user": "ed", "via": "api"}

    missing = call(posting)
    assert missing.status_code == 401
    assert missing["WWW-Authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in missing.json()["error"]

    row.delete()  # revoked
    revoked = call(posting, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert revoked.status_code == 401
    assert revoked.json() == {"error": "invalid or revoked token"}

    reader = User.objects.create_user("reader")
    _, reader_token = ApiToken.issue(reader)
    forbidden = call(posting, HTTP_AUTHORIZATION=f"Bearer {reader_token}")
    assert forbidden.status_code == 403
    assert forbidden.json()["missing"] == ["editors.post"]


def test_a_deactivated_users_token_stops_working(editor):
    _, token = ApiToken.issue(editor)
    editor.is_active = False
    editor.save()
    assert call(posting, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401


@pytest.mark.urls("tests.test_editors_auth")
def test_a_session_must_pass_csrf_but_a_token_needs_none(editor):
    client = Client(enforce_csrf_checks=True)
    client.force_login(editor)
    refused = client.post("/x")
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["error"]
    secret = "a" * 32  # what the page's script reads from the cookie and sends back
    client.cookies["csrftoken"] = secret
    accepted = client.post("/x", headers={"X-CSRFToken": secret})
    assert accepted.status_code == 200
    assert accepted.json() == {"user": "ed", "via": "page"}
    _, token = ApiToken.issue(editor)
    assert (
        Client(enforce_csrf_checks=True).post("/x", headers={"Authorization": f"Bearer {token}"}).status_code
        == 200
    )


def test_editors_may_post_mark_and_moderate_and_nobody_else_may():
    editor = User.objects.create_user("ed2")
    editor.groups.add(Group.objects.get(name="Editors"))
    for permission in ("editors.post", "editors.mark", "editors.moderate"):
        assert editor.has_perm(permission)
    assert not editor.has_perm("feeds.change_feed")  # sources are staff's
    assert not User.objects.create_user("someone").has_perm("editors.post")


def test_the_admin_shows_a_new_token_once_and_revokes_tokens(admin_client, editor):
    response = admin_client.post(
        "/admin/editors/apitoken/add/", {"user": editor.pk, "name": "cms"}, follow=True
    )
    token = re.search(r"llg_[A-Za-z0-9_-]+", response.content.decode())[0]
    assert token_user(f"Bearer {token}") == editor
    listing = admin_client.get("/admin/editors/apitoken/").content.decode()
    assert token not in listing
    assert token[:12] in listing
    row = ApiToken.objects.get()
    admin_client.post(
        "/admin/editors/apitoken/", {"action": "revoke", "_selected_action": [row.pk]}, follow=True
    )
    assert token_user(f"Bearer {token}") is None


def test_the_audit_log_is_read_only_in_the_admin(admin_client, editor):
    line = record(editor, "pin", editor, via="api", blog="storm")
    listing = admin_client.get("/admin/editors/auditlog/").content.decode()
    assert "pin" in listing
    assert "storm" in listing
    assert admin_client.get("/admin/editors/auditlog/add/").status_code == 403
    page = admin_client.get(f"/admin/editors/auditlog/{line.pk}/change/")
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    admin_client.post(f"/admin/editors/auditlog/{line.pk}/delete/", {"post": "yes"})
    assert AuditLog.objects.filter(pk=line.pk).exists()
