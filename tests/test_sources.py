"""SourceService: sources, comment sync (unary and bulk stream), get and delete."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf import field_mask_pb2, struct_pb2

from corrigo.client import CorrigoError
from corrigo.v1 import admin_pb2, datasets_pb2, sources_pb2
from corrigo.v1.comments_pb2 import Comment
from tests import dataset_helpers as h
from tests.conftest import Org

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_source_create_get_list_update_delete(org: Org) -> None:
    project = await org.project()
    owner = project.name
    made = await org.admin.sources.CreateSource(
        sources_pb2.CreateSourceRequest(
            owner=owner, name="inbox", source=sources_pb2.Source(title="Inbox", description="d")
        )
    )
    source = made.source
    assert len(source.id) == 16 and source.owner == owner and source.title == "Inbox"
    assert source.created_at == source.updated_at
    got = await org.admin.sources.GetSource(sources_pb2.GetSourceRequest(owner=owner, name="inbox"))
    assert got.source == source
    other = await h.source(org.admin, owner, "other")
    listed = await org.admin.sources.ListSources(sources_pb2.ListSourcesRequest(owner=owner))
    assert [s.id for s in listed.sources] == [source.id, other.id]
    updated = await org.admin.sources.UpdateSource(
        sources_pb2.UpdateSourceRequest(
            owner=owner,
            name="inbox",
            source=sources_pb2.Source(title="New"),
            update_mask=field_mask_pb2.FieldMask(paths=["title", "description"]),
        )
    )
    assert updated.source.title == "New" and updated.source.description == ""
    with pytest.raises(CorrigoError) as err:
        await h.source(org.admin, owner, "inbox")
    assert err.value.code == grpc.StatusCode.ALREADY_EXISTS

    # Deleting a source removes its comments and takes it out of datasets.
    await h.dataset(org.admin, owner, [source.id, other.id])
    await h.sync(org.admin, owner, "inbox", [h.comment("gone")])
    await org.admin.sources.DeleteSource(sources_pb2.DeleteSourceRequest(owner=owner, name="inbox"))
    ds = await org.admin.datasets.GetDataset(datasets_pb2.GetDatasetRequest(owner=owner, name="ds"))
    assert list(ds.dataset.source_ids) == [other.id]
    with pytest.raises(CorrigoError) as err:
        await org.admin.sources.GetSource(sources_pb2.GetSourceRequest(owner=owner, name="inbox"))
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    # A project that still holds sources cannot be deleted.
    with pytest.raises(CorrigoError) as err:
        await org.admin.admin.DeleteProject(admin_pb2.DeleteProjectRequest(project_id=project.id))
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION


async def test_sync_counts_new_updated_unchanged_and_get_delete(org: Org) -> None:
    project = await org.project()
    owner = project.name
    src = await h.source(org.admin, owner)
    props = struct_pb2.Struct()
    props.update({"string:Domain": "x.org", "number:Score": 2.5})
    first = [h.comment(f"c{i}", i, user_properties=props, thread_id="t") for i in range(5)]
    answer = await h.sync(org.admin, owner, "mailbox", first)
    assert (answer.new, answer.updated, answer.unchanged) == (5, 0, 0)
    got = await org.admin.sources.GetComment(
        sources_pb2.GetCommentRequest(owner=owner, name="mailbox", comment_id="c1")
    )
    comment = got.comment
    assert comment.uid == f"{src.id}.c1" and comment.source_id == src.id
    assert comment.text_format == "plain" and comment.thread_id == "t"
    assert h.as_json(comment)["user_properties"] == {"string:Domain": "x.org", "number:Score": 2.5}
    assert comment.context == str(comment.last_modified.ToMilliseconds())

    again = [h.comment(f"c{i}", i, user_properties=props, thread_id="t") for i in range(3)]
    again.append(h.comment("c3", 3, "changed", user_properties=props, thread_id="t"))
    again.append(h.comment("c9", 9))
    answer = await h.sync(org.admin, owner, "mailbox", again)
    assert (answer.new, answer.updated, answer.unchanged) == (1, 1, 3)
    unchanged = await org.admin.sources.GetComment(
        sources_pb2.GetCommentRequest(owner=owner, name="mailbox", comment_id="c1")
    )
    assert unchanged.comment == comment  # last_modified too
    changed = await org.admin.sources.GetComment(
        sources_pb2.GetCommentRequest(owner=owner, name="mailbox", comment_id="c3")
    )
    assert changed.comment.messages[0].body.text == "changed"
    assert changed.comment.created_at.ToDatetime() < changed.comment.last_modified.ToDatetime()

    deleted = await org.admin.sources.DeleteComments(
        sources_pb2.DeleteCommentsRequest(owner=owner, name="mailbox", ids=["c1", "c2", "nope"])
    )
    assert deleted.deleted == 2
    with pytest.raises(CorrigoError) as err:
        await org.admin.sources.GetComment(
            sources_pb2.GetCommentRequest(owner=owner, name="mailbox", comment_id="c1")
        )
    assert err.value.code == grpc.StatusCode.NOT_FOUND


async def _chunks(
    owner: str, count: int, size: int
) -> AsyncIterator[sources_pb2.StreamSyncCommentsRequest]:
    for n in range(count):
        yield sources_pb2.StreamSyncCommentsRequest(
            owner=owner if n == 0 else "",
            name="mailbox" if n == 0 else "",
            chunk=n,
            comments=[h.comment(f"s{n}-{i}", i) for i in range(size)],
        )


async def test_stream_sync_acknowledges_every_chunk(org: Org) -> None:
    project = await org.project()
    await h.source(org.admin, project.name)
    acks = [
        ack async for ack in org.admin.sources.StreamSyncComments(_chunks(project.name, 5, 200))
    ]
    assert [(a.chunk, a.new, a.updated, a.unchanged) for a in acks] == [
        (n, 200, 0, 0) for n in range(5)
    ]
    # Resending chunks (as a resumed import does) changes nothing.
    acks = [
        ack async for ack in org.admin.sources.StreamSyncComments(_chunks(project.name, 2, 200))
    ]
    assert [(a.new, a.unchanged) for a in acks] == [(0, 200), (0, 200)]

    async def bad_later_chunk() -> AsyncIterator[sources_pb2.StreamSyncCommentsRequest]:
        async for chunk in _chunks(project.name, 1, 1):
            yield chunk
        yield sources_pb2.StreamSyncCommentsRequest(chunk=1, comments=[Comment(id="x")])

    call = org.admin.sources.StreamSyncComments(bad_later_chunk())
    acks = []
    with pytest.raises(CorrigoError) as err:
        async for ack in call:
            acks.append(ack)
    assert [a.chunk for a in acks] == [0]
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.fields == [
        "comments[0].timestamp",
        "comments[0].messages",
    ]


async def test_stream_sync_permissions(org: Org, other_org: Org) -> None:
    project = await org.project()
    await h.source(org.admin, project.name)
    _, annotator = await org.member(project.id, 2)
    _, editor = await org.member(project.id, 3)
    for client, code in [
        (annotator, grpc.StatusCode.PERMISSION_DENIED),
        (other_org.admin, grpc.StatusCode.NOT_FOUND),
    ]:
        with pytest.raises(CorrigoError) as err:
            async for _ in client.sources.StreamSyncComments(_chunks(project.name, 1, 1)):
                pass
        assert err.value.code == code
    acks = [ack async for ack in editor.sources.StreamSyncComments(_chunks(project.name, 1, 3))]
    assert acks[0].new == 3


@pytest.mark.parametrize(
    ("comment", "field"),
    [
        (h.comment(""), "comments[0].id"),
        (h.comment("has space"), "comments[0].id"),
        (Comment(id="x", messages=h.comment("x").messages), "comments[0].timestamp"),
        (Comment(id="x", timestamp=h.comment("x").timestamp), "comments[0].messages"),
        (h.comment("x", text_format="html"), "comments[0].text_format"),
        (h.comment("x", text="t" * 65537), "comments[0].messages[0].body.text"),
        (h.comment("x", thread_id="t" * 257), "comments[0].thread_id"),
    ],
)
async def test_sync_rejects_bad_comments(org: Org, comment: Comment, field: str) -> None:
    project = await org.project()
    await h.source(org.admin, project.name)
    with pytest.raises(CorrigoError) as err:
        await h.sync(org.admin, project.name, "mailbox", [comment])
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in err.value.fields, err.value.fields


@pytest.mark.parametrize(
    ("properties", "problem"),
    [
        ({"Domain": "x"}, "keys are"),
        ({"string:": "x"}, "the name"),
        ({"string:" + "n" * 129: "x"}, "the name"),
        ({"number: Padded": 1}, "the name"),
        ({"string:Domain": 3}, "string value"),
        ({"number:Score": "high"}, "finite number"),
        ({"bool:Flag": True}, "keys are"),
    ],
)
async def test_sync_rejects_bad_user_properties(
    org: Org, properties: dict[str, object], problem: str
) -> None:
    project = await org.project()
    await h.source(org.admin, project.name)
    props = struct_pb2.Struct()
    props.update(properties)
    with pytest.raises(CorrigoError) as err:
        await h.sync(org.admin, project.name, "mailbox", [h.comment("x", user_properties=props)])
    assert err.value.fields[0].startswith("comments[0].user_properties[")
    assert problem in err.value.field_violations[0][1]


async def test_sync_limits(org: Org) -> None:
    project = await org.project()
    await h.source(org.admin, project.name)
    for comments, field in [
        ([], "comments"),
        ([h.comment(f"c{i}") for i in range(4097)], "comments"),
        ([h.comment("same"), h.comment("same")], "comments[1].id"),
    ]:
        with pytest.raises(CorrigoError) as err:
            await org.admin.sources.SyncComments(
                sources_pb2.SyncCommentsRequest(
                    owner=project.name, name="mailbox", comments=comments
                )
            )
        assert err.value.fields == [field]
    full = await h.sync(
        org.admin, project.name, "mailbox", [h.comment(f"c{i}") for i in range(4096)]
    )
    assert full.new == 4096


async def test_sync_writes_nothing_when_a_later_part_fails(org: Org) -> None:
    # The server writes a sync's first comments while it checks the later ones: a
    # failure among those must undo what was written, and every problem is named.
    project = await org.project()
    await h.source(org.admin, project.name)
    later_bad = [h.comment(f"c{i}", i) for i in range(1000)]
    later_bad[300] = h.comment("bad one")
    later_bad[900] = h.comment("c900", text_format="html")
    later_twice = [h.comment(f"c{i}", i) for i in range(1000)]
    later_twice[999] = h.comment("c3", 3)
    for comments, fields in [
        (later_bad, ["comments[300].id", "comments[900].text_format"]),
        (later_twice, ["comments[999].id"]),
    ]:
        with pytest.raises(CorrigoError) as err:
            await h.sync(org.admin, project.name, "mailbox", comments)
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.fields == fields
        with pytest.raises(CorrigoError) as err:
            await org.admin.sources.GetComment(
                sources_pb2.GetCommentRequest(owner=project.name, name="mailbox", comment_id="c0")
            )
        assert err.value.code == grpc.StatusCode.NOT_FOUND
    answer = await h.sync(org.admin, project.name, "mailbox", later_twice[:999])
    assert (answer.new, answer.updated, answer.unchanged) == (999, 0, 0)
