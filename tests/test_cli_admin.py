"""The everyday admin commands (`corrigo projects | users | members | tokens | sources |
datasets | labels | models | groups ...`) as subprocesses against the test server:
tables with a header line by default, JSON with --json."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from corrigo.v1 import admin_pb2
from tests import dataset_helpers as h
from tests.cli_helpers import Ran, corrigo
from tests.conftest import Org

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _ok(ran: Ran) -> Ran:
    assert ran.code == 0, ran.err
    assert "Traceback" not in ran.err
    return ran


async def _json(org: Org, *args: str, token: str | None = None) -> Any:
    return json.loads(_ok(await corrigo(org, *args, "--json", token=token)).out)


def _table(ran: Ran) -> list[list[str]]:
    """A table's rows split on runs of two spaces, the header first, the rule dropped."""
    header, rule, *rows = _ok(ran).out.splitlines()
    assert set(rule.replace(" ", "")) == {"-"}, ran.out
    return [[cell.strip() for cell in line.split("  ") if cell.strip()] for line in [header, *rows]]


async def test_projects_users_members_tokens(org: Org) -> None:
    name = f"p-{uuid.uuid4().hex[:8]}"
    created = await _json(org, "projects", "create", name, "--title", "Support mail")
    assert (created["name"], created["title"]) == (name, "Support mail")
    shown = _ok(await corrigo(org, "projects", "show", name)).out
    assert f"NAME     {name}" in shown and "TITLE    Support mail" in shown
    assert (await _json(org, "projects", "show", str(created["id"])))["name"] == name
    rows = _table(await corrigo(org, "projects", "list"))
    assert rows[0] == ["ID", "NAME", "TITLE", "CREATED"]
    assert [str(created["id"]), name, "Support mail"] == rows[-1][:3]

    email = f"ann-{uuid.uuid4().hex[:6]}@{org.name}.test"
    user = await _json(org, "users", "create", email, "--display-name", "Ann")
    assert (user["email"], user["role"]) == (email, "MEMBER")
    assert (await _json(org, "users", "show", email))["id"] == user["id"]
    assert email in [row[1] for row in _table(await corrigo(org, "users", "list"))[1:]]

    member = await _json(org, "members", "create", name, email, "annotator")
    assert (member["user_id"], member["role"]) == (user["id"], "ANNOTATOR")
    rows = _table(await corrigo(org, "members", "list", name))
    assert rows[0] == ["PROJECT", "USER", "EMAIL", "ROLE"]
    assert [str(created["id"]), str(user["id"]), email, "ANNOTATOR"] in rows

    made = _ok(await corrigo(org, "tokens", "create", "--user", email, "--description", "cli"))
    token = made.out.strip()
    assert token.startswith("crg_") and "shown once" in made.err
    who = json.loads(_ok(await corrigo(org, "whoami", "--json", token=token)).out)
    assert who["user"]["email"] == email
    table = _ok(await corrigo(org, "whoami", token=token)).out
    assert table.splitlines()[0].split() == ["USER", email, f"({user['id']})"], table
    tokens = await _json(org, "tokens", "list", "--user", email)
    assert [t["description"] for t in tokens] == ["cli"]
    revoked = await _json(org, "tokens", "delete", str(tokens[0]["id"]))
    assert "revoked_at" in revoked
    refused = await corrigo(org, "whoami", token=token)
    assert refused.code == 1 and "UNAUTHENTICATED" in refused.err

    _ok(await corrigo(org, "members", "delete", name, str(user["id"])))
    assert await _json(org, "members", "list", name) == []
    deleted = _ok(await corrigo(org, "projects", "delete", name))
    assert f"project {name} deleted" in deleted.err
    gone = await corrigo(org, "projects", "show", name)
    assert gone.code == 1 and f"no project {name!r}" in gone.err


async def test_sources_datasets_labels_models_groups(org: Org) -> None:
    project = await org.project()
    owner = project.name
    source = await _json(org, "sources", "create", f"{owner}/inbox", "--title", "Inbox")
    assert (source["name"], source["title"]) == ("inbox", "Inbox")
    assert _table(await corrigo(org, "sources", "list", owner))[1][:2] == [
        source["id"],
        f"{owner}/inbox",
    ]
    assert (await _json(org, "sources", "show", f"{owner}/inbox"))["id"] == source["id"]

    dataset = await _json(org, "datasets", "create", f"{owner}/ds", "--source", "inbox")
    assert dataset["source_ids"] == [source["id"]]
    rows = _table(await corrigo(org, "datasets", "list", owner))
    assert rows[0] == ["NAME", "TITLE", "SOURCES", "MODEL FAMILY", "CREATED"]
    assert rows[1][:3] == [f"{owner}/ds", source["id"], "english"]
    assert (await _json(org, "datasets", "show", f"{owner}/ds"))["name"] == "ds"

    await _json(org, "labels", "create", f"{owner}/ds", "Seats", "Seats > Comfort")
    assert [row[0] for row in _table(await corrigo(org, "labels", "list", f"{owner}/ds"))] == [
        "NAME",
        "Seats",
        "Seats > Comfort",
    ]
    _ok(await corrigo(org, "labels", "delete", f"{owner}/ds", "Seats > Comfort"))
    assert await _json(org, "labels", "list", f"{owner}/ds") == [{"name": "Seats"}]

    model = await _json(org, "models", "create", f"{owner}/ds", "Triage", "--type", "label")
    assert (model["display_name"], model["type"]) == ("Triage", "LABEL")
    version = await _json(
        org, "models", "version", f"{owner}/ds", str(model["id"]), "--score", "0.8"
    )
    assert (version["version"], version["validation_score"]) == (1, 0.8)
    tag = await _json(org, "models", "tag", f"{owner}/ds", "prod", "1")
    assert (tag["name"], tag["version"]) == ("prod", 1)
    assert _table(await corrigo(org, "models", "tags", f"{owner}/ds"))[1][:2] == ["prod", "1"]
    rows = _table(await corrigo(org, "models", "list", f"{owner}/ds"))
    assert rows[0] == ["ID", "NAME", "TYPE", "LATEST VERSION", "CREATED"]
    assert rows[1][:4] == [str(model["id"]), "Triage", "LABEL", "1"]
    shown = await _json(org, "models", "show", f"{owner}/ds", str(model["id"]))
    assert shown["latest_version"] == 1

    await h.sync(org.admin, owner, "inbox", [h.comment(f"c{i}", i) for i in range(3)])
    uids = [f"{source['id']}.c{i}" for i in range(2)]
    made = await _json(org, "groups", "create", owner, "seats", *uids)
    assert (made["name"], made["document_count"]) == ("seats", 2)
    assert _table(await corrigo(org, "groups", "list", owner))[1][:3] == [
        str(made["id"]),
        "seats",
        "2",
    ]
    assert (await _json(org, "groups", "show", owner, str(made["id"])))["document_uids"] == uids
    _ok(await corrigo(org, "groups", "delete", owner, str(made["id"])))
    assert await _json(org, "groups", "list", owner) == []

    unknown = await corrigo(org, "groups", "list", "999999")
    assert unknown.code == 1 and "project '999999' not found" in unknown.line()

    _ok(await corrigo(org, "datasets", "delete", f"{owner}/ds"))
    _ok(await corrigo(org, "sources", "delete", f"{owner}/inbox"))
    assert await _json(org, "sources", "list", owner) == []
    assert await _json(org, "datasets", "list", owner) == []


async def test_batches_and_practice_listings(org: Org) -> None:
    assert _table(await corrigo(org, "batch", "list"))[0] == [
        "BATCH",
        "STATUS",
        "SESSIONS",
        "RELEASE",
    ]
    assert await _json(org, "practice", "list") == []
    assert _table(await corrigo(org, "practice", "list"))[0] == ["ID", "PROJECT", "CLASS", "TITLE"]


async def test_admin_token_breaks_glass_for_an_admin_only(org: Org) -> None:
    """`corrigo admin token` mints a working token for an existing admin in the database
    itself, logs a WARNING naming who and when (never the secret), and refuses others."""
    url = org.running.db_url
    email = f"admin@{org.name}.test"
    minting = ("admin", "token", "--org", org.name, "--database", url, "--email")
    minted = _ok(await corrigo(None, *minting, email))
    token = minted.out.strip()
    assert token.startswith("crg_") and len(minted.out.splitlines()) == 1
    warning = next(line for line in minted.err.splitlines() if "WARNING" in line)
    assert "break-glass token" in warning and email in warning and repr(org.name) in warning
    assert token.split("_", 2)[2] not in minted.err  # crg_ID_SECRET: never the secret
    async with org.running.client(token) as client:
        me = await client.admin.WhoAmI(admin_pb2.WhoAmIRequest())
    assert me.user.email == email
    stranger = await corrigo(None, *minting, "nobody@x.test")
    assert stranger.code == 1 and stranger.out == ""
    assert stranger.line() == (
        f"corrigo admin token: no admin 'nobody@x.test' in organization {org.name!r}; "
        f"its admins: {email}"
    )
    no_org = await corrigo(
        None, "admin", "token", "--org", "no-such-org", "--email", email, "--database", url
    )
    assert no_org.line().endswith("`corrigo admin bootstrap` creates one"), no_org.err
    again = await corrigo(
        None, "admin", "bootstrap", "--org", org.name, "--email", "x@y.test", "--database", url
    )
    assert again.code == 1 and "is already bootstrapped" in again.line()
    assert f"corrigo admin token --org {org.name} --email ADMIN_EMAIL" in again.line()
