"""Every RPC of the dataset, source and model services: the role it needs, other
organizations never see anything, and bad input names the field."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from corrigo.client import AsyncClient, CorrigoError
from corrigo.server.api.permissions import RULES
from corrigo.v1 import datasets_pb2, models_pb2, sources_pb2
from corrigo.v1.admin_pb2 import Member
from corrigo.v1.comments_pb2 import Label, PredictedLabel
from corrigo.v1.datasets_pb2 import Dataset
from corrigo.v1.models_pb2 import Model
from tests import dataset_helpers as h
from tests.conftest import Org

pytestmark = pytest.mark.asyncio(loop_scope="session")

NOBODY = 0  # an organization member without a role in the project
D, S, M = datasets_pb2, sources_pb2, models_pb2


class World:
    """A project with a source, a comment, a dataset with a label, a model and a version."""

    owner: str
    source_id: str

    @property
    def uid(self) -> str:
        return f"{self.source_id}.c0"

    def labelling(self) -> D.LabellingUpdate:
        """The comment labelled L, as the bulk labelling calls set it."""
        return D.LabellingUpdate(
            comment_uid=self.uid, assigned=[Label(name="L", sentiment="positive")]
        )


async def _world(org: Org) -> tuple[World, int]:
    project = await org.project()
    world = World()
    world.owner = project.name
    world.source_id = (await h.source(org.admin, project.name)).id
    await h.dataset(org.admin, project.name, [world.source_id])
    await h.sync(org.admin, project.name, "mailbox", [h.comment("c0")])
    await org.admin.datasets.CreateLabelDefs(
        D.CreateLabelDefsRequest(owner=project.name, name="ds", label_defs=[D.LabelDef(name="L")])
    )
    await h.model_version(org.admin, project.name, "ds")
    return world, project.id


Factory = Callable[[World], Any]

# (service, method, request, the least role allowed). Destructive calls name things that
# do not exist, so an allowed call answers NOT_FOUND and the world stays intact.
CALLS: list[tuple[str, str, Factory, int]] = [
    ("datasets", "GetDataset", lambda w: D.GetDatasetRequest(owner=w.owner, name="ds"), 1),
    (
        "datasets",
        "CreateDataset",
        lambda w: D.CreateDatasetRequest(owner=w.owner, name="new", dataset=Dataset()),
        3,
    ),
    (
        "datasets",
        "UpdateDataset",
        lambda w: D.UpdateDatasetRequest(owner=w.owner, name="ds", dataset=Dataset(title="t")),
        4,
    ),
    ("datasets", "DeleteDataset", lambda w: D.DeleteDatasetRequest(owner=w.owner, name="x"), 4),
    ("datasets", "ListModelTags", lambda w: D.ListModelTagsRequest(owner=w.owner, name="ds"), 4),
    (
        "datasets",
        "CreateLabelDefs",
        lambda w: D.CreateLabelDefsRequest(
            owner=w.owner, name="ds", label_defs=[D.LabelDef(name="M")]
        ),
        3,
    ),
    ("datasets", "ListLabelDefs", lambda w: D.ListLabelDefsRequest(owner=w.owner, name="ds"), 1),
    (
        "datasets",
        "DeleteLabelDef",
        lambda w: D.DeleteLabelDefRequest(owner=w.owner, name="ds", label_name="Absent"),
        3,
    ),
    (
        "datasets",
        "UpdateLabelling",
        lambda w: D.UpdateLabellingRequest(
            owner=w.owner,
            name="ds",
            comment_uid=w.uid,
            assigned=[Label(name="L", sentiment="positive")],
        ),
        2,
    ),
    (
        "datasets",
        "BatchUpdateLabellings",
        lambda w: D.BatchUpdateLabellingsRequest(
            owner=w.owner, name="ds", labellings=[w.labelling()]
        ),
        2,
    ),
    (
        "datasets",
        "StreamUpdateLabellings",
        lambda w: D.StreamUpdateLabellingsRequest(
            owner=w.owner, name="ds", labellings=[w.labelling()]
        ),
        2,
    ),
    (
        "datasets",
        "GetLabelling",
        lambda w: D.GetLabellingRequest(owner=w.owner, name="ds", comment_uid=w.uid),
        1,
    ),
    ("datasets", "ExportDataset", lambda w: D.ExportDatasetRequest(owner=w.owner, name="ds"), 3),
    (
        "datasets",
        "StreamExportDataset",
        lambda w: D.StreamExportDatasetRequest(owner=w.owner, name="ds"),
        3,
    ),
    (
        "sources",
        "CreateSource",
        lambda w: S.CreateSourceRequest(owner=w.owner, name="new", source=S.Source()),
        3,
    ),
    ("sources", "GetSource", lambda w: S.GetSourceRequest(owner=w.owner, name="mailbox"), 1),
    ("sources", "ListSources", lambda w: S.ListSourcesRequest(owner=w.owner), 1),
    (
        "sources",
        "UpdateSource",
        lambda w: S.UpdateSourceRequest(owner=w.owner, name="mailbox", source=S.Source(title="t")),
        3,
    ),
    ("sources", "DeleteSource", lambda w: S.DeleteSourceRequest(owner=w.owner, name="x"), 4),
    (
        "sources",
        "SyncComments",
        lambda w: S.SyncCommentsRequest(owner=w.owner, name="mailbox", comments=[h.comment("c0")]),
        3,
    ),
    (
        "sources",
        "StreamSyncComments",
        lambda w: S.StreamSyncCommentsRequest(
            owner=w.owner, name="mailbox", comments=[h.comment("c0")]
        ),
        3,
    ),
    (
        "sources",
        "GetComment",
        lambda w: S.GetCommentRequest(owner=w.owner, name="mailbox", comment_id="c0"),
        1,
    ),
    (
        "sources",
        "DeleteComments",
        lambda w: S.DeleteCommentsRequest(owner=w.owner, name="mailbox", ids=["absent"]),
        3,
    ),
    (
        "models",
        "CreateModel",
        lambda w: M.CreateModelRequest(
            owner=w.owner, dataset="ds", model=Model(display_name="m", type=Model.LABEL)
        ),
        4,
    ),
    ("models", "GetModel", lambda w: M.GetModelRequest(owner=w.owner, dataset="ds", model_id=1), 4),
    ("models", "ListModels", lambda w: M.ListModelsRequest(owner=w.owner, dataset="ds"), 4),
    (
        "models",
        "CreateModelVersion",
        lambda w: M.CreateModelVersionRequest(owner=w.owner, dataset="ds", model_id=999999),
        4,
    ),
    (
        "models",
        "UploadPredictions",
        lambda w: M.UploadPredictionsRequest(
            owner=w.owner,
            dataset="ds",
            version=1,
            predictions=[
                M.CommentPredictions(uid=w.uid, labels=[PredictedLabel(name="L", probability=1)])
            ],
        ),
        4,
    ),
    (
        "models",
        "SetModelTag",
        lambda w: M.SetModelTagRequest(owner=w.owner, dataset="ds", name="prod", version=1),
        4,
    ),
]


async def _one(request: Any) -> AsyncIterator[Any]:
    yield request


async def invoke(client: AsyncClient, service: str, method: str, request: Any) -> None:
    """Make the call, whatever its kind; raise CorrigoError when it fails."""
    stub = getattr(client, service)
    try:
        if method == "StreamExportDataset":
            async for _ in stub.StreamExportDataset(request):
                pass
        elif method in ("StreamSyncComments", "StreamUpdateLabellings"):
            async for _ in getattr(stub, method)(_one(request)):
                pass
        else:
            await getattr(stub, method)(request)
    except grpc.RpcError as error:
        raise CorrigoError.from_rpc_error(error) from None


async def test_every_rpc_has_a_rule_and_a_case() -> None:
    methods = {
        f"/corrigo.v1.{service.name}/{method.name}"
        for file in (datasets_pb2, sources_pb2, models_pb2)
        for service in file.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    assert methods <= set(RULES)
    covered = {method for _, method, _, _ in CALLS} | {"ListDatasets"}
    assert {m.rsplit("/", 1)[1] for m in methods} == covered


async def test_each_rpc_needs_its_role(org: Org, other_org: Org) -> None:
    world, project_id = await _world(org)
    clients = {NOBODY: (await org.user())[1]}
    for role in (Member.VIEWER, Member.ANNOTATOR, Member.EDITOR, Member.ADMIN):
        clients[role] = (await org.member(project_id, role))[1]
    for service, method, factory, least in CALLS:
        with pytest.raises(CorrigoError) as err:
            await invoke(clients[least - 1], service, method, factory(world))
        assert err.value.code == grpc.StatusCode.PERMISSION_DENIED, method
        assert err.value.reason == "PERMISSION_MISSING"
        # Another organization's admin holds every permission, and still sees nothing.
        with pytest.raises(CorrigoError) as err:
            await invoke(other_org.admin, service, method, factory(world))
        assert err.value.code == grpc.StatusCode.NOT_FOUND, method
        try:
            await invoke(clients[least], service, method, factory(world))
        except CorrigoError as error:
            assert error.code == grpc.StatusCode.NOT_FOUND, (method, error.message)


def _bad(world: World) -> list[tuple[str, str, Any, str]]:
    o, uid = world.owner, world.uid
    return [
        ("datasets", "ListDatasets", D.ListDatasetsRequest(page_size=1001), "page_size"),
        ("datasets", "ListDatasets", D.ListDatasetsRequest(page_token="x"), "page_token"),
        ("datasets", "GetDataset", D.GetDatasetRequest(owner="bad owner", name="ds"), "owner"),
        ("datasets", "CreateDataset", D.CreateDatasetRequest(owner=o, name="a b"), "name"),
        (
            "datasets",
            "CreateDataset",
            D.CreateDatasetRequest(owner=o, name="n", dataset=Dataset(model_family="french")),
            "dataset.model_family",
        ),
        (
            "datasets",
            "CreateDataset",
            D.CreateDatasetRequest(owner=o, name="n", dataset=Dataset(title="t" * 257)),
            "dataset.title",
        ),
        (
            "datasets",
            "UpdateDataset",
            D.UpdateDatasetRequest(
                owner=o, name="ds", update_mask=field_mask_pb2.FieldMask(paths=["name"])
            ),
            "update_mask.paths[0]",
        ),
        (
            "datasets",
            "UpdateDataset",
            D.UpdateDatasetRequest(owner=o, name="ds", dataset=Dataset(source_ids=["nope"])),
            "dataset.source_ids[0]",
        ),
        ("datasets", "DeleteDataset", D.DeleteDatasetRequest(owner="", name="ds"), "owner"),
        ("datasets", "ListModelTags", D.ListModelTagsRequest(owner="-x", name="ds"), "owner"),
        ("datasets", "CreateLabelDefs", D.CreateLabelDefsRequest(owner=o, name="ds"), "label_defs"),
        (
            "datasets",
            "CreateLabelDefs",
            D.CreateLabelDefsRequest(owner=o, name="ds", label_defs=[D.LabelDef(name="A>B")]),
            "label_defs[0].name",
        ),
        (
            "datasets",
            "CreateLabelDefs",
            D.CreateLabelDefsRequest(
                owner=o, name="ds", label_defs=[D.LabelDef(name=" > ".join("abcdefghi"))]
            ),
            "label_defs[0].name",
        ),
        ("datasets", "ListLabelDefs", D.ListLabelDefsRequest(owner="", name="ds"), "owner"),
        (
            "datasets",
            "DeleteLabelDef",
            D.DeleteLabelDefRequest(owner=o, name="ds", label_name=""),
            "label_name",
        ),
        (
            "datasets",
            "UpdateLabelling",
            D.UpdateLabellingRequest(owner=o, name="ds", comment_uid="x"),
            "comment_uid",
        ),
        (
            "datasets",
            "UpdateLabelling",
            D.UpdateLabellingRequest(
                owner=o,
                name="ds",
                comment_uid=uid,
                assigned=[Label(name="L", sentiment="positive")],
                dismissed=[Label(name="L", sentiment="positive")],
            ),
            "dismissed[0].name",
        ),
        (
            "datasets",
            "GetLabelling",
            D.GetLabellingRequest(owner=o, name="ds", comment_uid=""),
            "comment_uid",
        ),
        (
            "datasets",
            "ExportDataset",
            D.ExportDatasetRequest(owner=o, name="ds", limit=300),
            "limit",
        ),
        (
            "datasets",
            "StreamExportDataset",
            D.StreamExportDatasetRequest(owner=o, name="ds", order_by="id"),
            "order_by",
        ),
        ("sources", "CreateSource", S.CreateSourceRequest(owner=o, name=""), "name"),
        (
            "sources",
            "CreateSource",
            S.CreateSourceRequest(owner=o, name="n", source=S.Source(description="d" * 4097)),
            "source.description",
        ),
        ("sources", "GetSource", S.GetSourceRequest(owner=o, name="a/b"), "name"),
        ("sources", "ListSources", S.ListSourcesRequest(owner=o, page_size=-1), "page_size"),
        (
            "sources",
            "UpdateSource",
            S.UpdateSourceRequest(
                owner=o, name="mailbox", update_mask=field_mask_pb2.FieldMask(paths=["id"])
            ),
            "update_mask.paths[0]",
        ),
        ("sources", "DeleteSource", S.DeleteSourceRequest(owner=o, name=""), "name"),
        ("sources", "SyncComments", S.SyncCommentsRequest(owner=o, name="mailbox"), "comments"),
        (
            "datasets",
            "BatchUpdateLabellings",
            D.BatchUpdateLabellingsRequest(
                owner=o, name="ds", labellings=[D.LabellingUpdate(comment_uid="x")]
            ),
            "labellings[0].comment_uid",
        ),
        (
            "datasets",
            "StreamUpdateLabellings",
            D.StreamUpdateLabellingsRequest(owner=o, name="ds"),
            "labellings",
        ),
        (
            "sources",
            "StreamSyncComments",
            S.StreamSyncCommentsRequest(owner=o, name="mailbox"),
            "comments",
        ),
        (
            "sources",
            "StreamSyncComments",
            S.StreamSyncCommentsRequest(owner="", name="mailbox", comments=[h.comment("c")]),
            "owner",
        ),
        (
            "sources",
            "GetComment",
            S.GetCommentRequest(owner=o, name="mailbox", comment_id="a b"),
            "comment_id",
        ),
        ("sources", "DeleteComments", S.DeleteCommentsRequest(owner=o, name="mailbox"), "ids"),
        (
            "sources",
            "DeleteComments",
            S.DeleteCommentsRequest(owner=o, name="mailbox", ids=[""]),
            "ids[0]",
        ),
        (
            "models",
            "CreateModel",
            M.CreateModelRequest(owner=o, dataset="ds", model=Model(display_name="m")),
            "model.type",
        ),
        (
            "models",
            "CreateModel",
            M.CreateModelRequest(owner=o, dataset="ds", model=Model(type=Model.ABSA)),
            "model.display_name",
        ),
        (
            "models",
            "CreateModel",
            M.CreateModelRequest(
                owner=o,
                dataset="ds",
                model=Model(display_name="m", type=Model.LABEL, labels=["A", "A"]),
            ),
            "model.labels[1]",
        ),
        ("models", "GetModel", M.GetModelRequest(owner=o, dataset="ds"), "model_id"),
        (
            "models",
            "ListModels",
            M.ListModelsRequest(owner=o, dataset="ds", page_token="x"),
            "page_token",
        ),
        (
            "models",
            "CreateModelVersion",
            M.CreateModelVersionRequest(owner=o, dataset="ds", model_id=1, validation_score=1.5),
            "validation_score",
        ),
        (
            "models",
            "UploadPredictions",
            M.UploadPredictionsRequest(owner=o, dataset="ds", version=1),
            "predictions",
        ),
        (
            "models",
            "UploadPredictions",
            M.UploadPredictionsRequest(
                owner=o,
                dataset="ds",
                version=1,
                predictions=[
                    M.CommentPredictions(uid=uid, labels=[PredictedLabel(name="L", probability=2)])
                ],
            ),
            "predictions[0].labels[0].probability",
        ),
        (
            "models",
            "UploadPredictions",
            M.UploadPredictionsRequest(
                owner=o, dataset="ds", version=1, predictions=[M.CommentPredictions(uid="x")]
            ),
            "predictions[0].uid",
        ),
        (
            "models",
            "SetModelTag",
            M.SetModelTagRequest(owner=o, dataset="ds", name="Prod", version=1),
            "name",
        ),
        (
            "models",
            "SetModelTag",
            M.SetModelTagRequest(owner=o, dataset="ds", name="prod"),
            "version",
        ),
    ]


async def test_bad_input_is_invalid_argument_naming_the_field(org: Org) -> None:
    world, _ = await _world(org)
    cases = _bad(world)
    assert {method for _, method, _, _ in cases} == {m for _, m, _, _ in CALLS} | {"ListDatasets"}
    for service, method, request, field in cases:
        with pytest.raises(CorrigoError) as err:
            await invoke(org.admin, service, method, request)
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT, (method, err.value.message)
        assert field in err.value.fields, (method, field, err.value.fields)
