"""DatasetService (datasets, taxonomy, labellings, tags) and ModelService."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2, json_format, wrappers_pb2

from corrigo.client import CorrigoError
from corrigo.v1 import datasets_pb2, models_pb2
from corrigo.v1.comments_pb2 import Label, PredictedLabel
from corrigo.v1.datasets_pb2 import Dataset
from corrigo.v1.models_pb2 import Model
from tests import dataset_helpers as h
from tests.conftest import Org

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_dataset_create_get_list_update_delete(org: Org) -> None:
    project = await org.project()
    owner = project.name
    first = await h.source(org.admin, owner, "first")
    second = await h.source(org.admin, owner, "second")
    created = await h.dataset(
        org.admin, owner, [first.id], name="example", title="T", description="D"
    )
    assert created.has_sentiment.value is True and created.model_family == "english"
    assert created.created == created.last_modified
    plain = await h.dataset(
        org.admin,
        owner,
        [],
        name="plain",
        model_family="multilingual",
        has_sentiment=wrappers_pb2.BoolValue(value=False),
    )
    assert plain.has_sentiment.value is False and plain.model_family == "multilingual"
    assert h.as_json(plain)["has_sentiment"] is False

    got = await org.admin.datasets.GetDataset(
        datasets_pb2.GetDatasetRequest(owner=owner, name="example")
    )
    assert got.dataset == created and got.status == "ok"

    # Without a mask only non-empty fields are written; with one, exactly its paths.
    updated = await org.admin.datasets.UpdateDataset(
        datasets_pb2.UpdateDatasetRequest(
            owner=owner, name="example", dataset=Dataset(title="An Alternative Title")
        )
    )
    assert updated.dataset.title == "An Alternative Title"
    assert updated.dataset.description == "D" and list(updated.dataset.source_ids) == [first.id]
    assert updated.dataset.last_modified.ToDatetime() > created.last_modified.ToDatetime()
    assert updated.dataset.created == created.created
    masked = await org.admin.datasets.UpdateDataset(
        datasets_pb2.UpdateDatasetRequest(
            owner=owner,
            name="example",
            dataset=Dataset(source_ids=[second.id, first.id], title="ignored"),
            update_mask=field_mask_pb2.FieldMask(paths=["source_ids", "description"]),
        )
    )
    assert list(masked.dataset.source_ids) == [second.id, first.id]
    assert masked.dataset.title == "An Alternative Title" and masked.dataset.description == ""
    # GetDataset reads the dataset in its access check's statement: its sources in order,
    # none for a dataset without, and nothing of another project's dataset of that name.
    again = await org.admin.datasets.GetDataset(
        datasets_pb2.GetDatasetRequest(owner=owner, name="example")
    )
    assert again.dataset == masked.dataset
    bare = await org.admin.datasets.GetDataset(
        datasets_pb2.GetDatasetRequest(owner=owner, name="plain")
    )
    assert bare.dataset == plain and list(bare.dataset.source_ids) == []
    elsewhere = await org.project()
    with pytest.raises(CorrigoError) as err:
        await org.admin.datasets.GetDataset(
            datasets_pb2.GetDatasetRequest(owner=elsewhere.name, name="example")
        )
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    assert err.value.message == f"dataset {elsewhere.name}/example not found"

    listed = await org.admin.datasets.ListDatasets(datasets_pb2.ListDatasetsRequest())
    assert [d.name for d in listed.datasets] == ["example", "plain"]
    assert all(d.owner == owner for d in listed.datasets) and listed.next_page_token == ""
    paged = await org.admin.datasets.ListDatasets(datasets_pb2.ListDatasetsRequest(page_size=1))
    assert [d.name for d in paged.datasets] == ["example"] and paged.next_page_token

    with pytest.raises(CorrigoError) as err:
        await h.dataset(org.admin, owner, [], name="example")
    assert err.value.code == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(CorrigoError) as err:
        await h.dataset(org.admin, owner, [first.id, "0000000000000000"], name="bad")
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.fields == ["dataset.source_ids[1]"]

    deleted = await org.admin.datasets.DeleteDataset(
        datasets_pb2.DeleteDatasetRequest(owner=owner, name="example")
    )
    assert deleted.status == "ok" and h.as_json(deleted) == {"status": "ok"}
    with pytest.raises(CorrigoError) as err:
        await org.admin.datasets.GetDataset(
            datasets_pb2.GetDatasetRequest(owner=owner, name="example")
        )
    assert err.value.code == grpc.StatusCode.NOT_FOUND


async def test_list_datasets_shows_only_the_callers_projects(org: Org, other_org: Org) -> None:
    mine, theirs = await org.project(), await org.project()
    await h.dataset(org.admin, mine.name, [], name="mine")
    await h.dataset(org.admin, theirs.name, [], name="theirs")
    await h.dataset(other_org.admin, (await other_org.project()).name, [], name="foreign")
    _, viewer = await org.member(mine.id, 1)
    listed = await viewer.datasets.ListDatasets(datasets_pb2.ListDatasetsRequest())
    assert [d.name for d in listed.datasets] == ["mine"]
    _, outsider = await org.user()
    listed = await outsider.datasets.ListDatasets(datasets_pb2.ListDatasetsRequest())
    assert list(listed.datasets) == []
    listed = await other_org.admin.datasets.ListDatasets(datasets_pb2.ListDatasetsRequest())
    assert [d.name for d in listed.datasets] == ["foreign"]


async def test_deleting_a_dataset_keeps_its_sources_comments(org: Org) -> None:
    project = await org.project()
    src = await h.source(org.admin, project.name)
    await h.dataset(org.admin, project.name, [src.id])
    await h.sync(org.admin, project.name, "mailbox", [h.comment("kept")])
    await h.model_version(org.admin, project.name, "ds")
    await org.admin.datasets.DeleteDataset(
        datasets_pb2.DeleteDatasetRequest(owner=project.name, name="ds")
    )
    await h.dataset(org.admin, project.name, [src.id])
    pages = await h.export_all(
        org.admin, datasets_pb2.ExportDatasetRequest(owner=project.name, name="ds")
    )
    assert h.uids(pages) == [f"{src.id}.kept"]
    assert list(pages[0].comments[0].predictions.labels) == []  # the old model is gone


async def test_taxonomy_and_labellings(org: Org) -> None:
    project = await org.project()
    owner = project.name
    src = await h.source(org.admin, owner)
    await h.dataset(org.admin, owner, [src.id])
    await h.sync(org.admin, owner, "mailbox", [h.comment("one"), h.comment("two", 5)])
    taxonomy = await org.admin.datasets.CreateLabelDefs(
        datasets_pb2.CreateLabelDefsRequest(
            owner=owner,
            name="ds",
            label_defs=[
                datasets_pb2.LabelDef(name="Billing > Refund > Late", description="late"),
                datasets_pb2.LabelDef(name="Other"),
            ],
        )
    )
    assert [d.name for d in taxonomy.label_defs] == [
        "Billing",
        "Billing > Refund",
        "Billing > Refund > Late",
        "Other",
    ]
    uid = f"{src.id}.one"
    answer = await org.admin.datasets.UpdateLabelling(
        datasets_pb2.UpdateLabellingRequest(
            owner=owner,
            name="ds",
            comment_uid=uid,
            assigned=[Label(name="Billing > Refund", sentiment="negative")],
            dismissed=[Label(name="Other", sentiment="positive")],
        )
    )
    assert [lb.name for lb in answer.assigned] == ["Billing > Refund"]
    assert answer.HasField("updated_at")
    got = await org.admin.datasets.GetLabelling(
        datasets_pb2.GetLabellingRequest(owner=owner, name="ds", comment_uid=uid)
    )
    assert got.assigned == answer.assigned and got.dismissed == answer.dismissed

    bad = [
        ([Label(name="Unknown", sentiment="positive")], "assigned[0].name"),
        ([Label(name="Other")], "assigned[0].sentiment"),
        ([Label(name="Other", sentiment="meh")], "assigned[0].sentiment"),
        ([Label(name="A >B", sentiment="positive")], "assigned[0].name"),
        (
            [Label(name="Other", sentiment="positive"), Label(name="Other", sentiment="negative")],
            "assigned[1].name",
        ),
    ]
    for assigned, field in bad:
        with pytest.raises(CorrigoError) as err:
            await org.admin.datasets.UpdateLabelling(
                datasets_pb2.UpdateLabellingRequest(
                    owner=owner, name="ds", comment_uid=uid, assigned=assigned
                )
            )
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert field in err.value.fields, (field, err.value.fields)
    with pytest.raises(CorrigoError) as err:
        await org.admin.datasets.UpdateLabelling(
            datasets_pb2.UpdateLabellingRequest(
                owner=owner, name="ds", comment_uid=f"{src.id}.absent"
            )
        )
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    for malformed in ("nodot", "0123456789abcdef.one"):
        with pytest.raises(CorrigoError) as err:
            await org.admin.datasets.GetLabelling(
                datasets_pb2.GetLabellingRequest(owner=owner, name="ds", comment_uid=malformed)
            )
        assert err.value.fields == ["comment_uid"]

    # Removing a label prunes it and its descendants from the taxonomy and labellings.
    left = await org.admin.datasets.DeleteLabelDef(
        datasets_pb2.DeleteLabelDefRequest(owner=owner, name="ds", label_name="Billing > Refund")
    )
    assert [d.name for d in left.label_defs] == ["Billing", "Other"]
    got = await org.admin.datasets.GetLabelling(
        datasets_pb2.GetLabellingRequest(owner=owner, name="ds", comment_uid=uid)
    )
    assert list(got.assigned) == [] and [lb.name for lb in got.dismissed] == ["Other"]
    # Empty lists remove the labelling: the export then shows no annotations.
    await org.admin.datasets.UpdateLabelling(
        datasets_pb2.UpdateLabellingRequest(owner=owner, name="ds", comment_uid=uid)
    )
    got = await org.admin.datasets.GetLabelling(
        datasets_pb2.GetLabellingRequest(owner=owner, name="ds", comment_uid=uid)
    )
    assert not got.HasField("updated_at")
    page = await org.admin.datasets.ExportDataset(
        datasets_pb2.ExportDatasetRequest(owner=owner, name="ds", comment_uids=[uid])
    )
    assert not page.comments[0].comment.has_annotations


async def test_label_names_are_exact(org: Org) -> None:
    """A label's descendants are the names that start with it and " > ", byte for byte:
    not names differing in case, nor names that LIKE's wildcards (`%`, `_`, `\\`) match."""
    project = await org.project()
    owner = project.name
    src = await h.source(org.admin, owner)
    await h.dataset(org.admin, owner, [src.id])
    await h.sync(org.admin, owner, "mailbox", [h.comment("one")])
    names = [
        "Foo > x",
        "foo > x",
        "FOO",
        "a%b > c",
        "axxb > c",
        "a_b > c",
        "azb > c",
        "a\\b > c",
        "a\\\\b > c",
    ]
    await org.admin.datasets.CreateLabelDefs(h.label_defs(owner, names))
    uid = f"{src.id}.one"
    await org.admin.datasets.UpdateLabelling(
        datasets_pb2.UpdateLabellingRequest(
            owner=owner,
            name="ds",
            comment_uid=uid,
            assigned=[Label(name=n, sentiment="positive") for n in ("foo > x", "Foo > x", "azb")],
        )
    )
    for deleted in ("Foo", "a%b", "a_b", "a\\b"):
        await org.admin.datasets.DeleteLabelDef(
            datasets_pb2.DeleteLabelDefRequest(owner=owner, name="ds", label_name=deleted)
        )
    left = await org.admin.datasets.ListLabelDefs(
        datasets_pb2.ListLabelDefsRequest(owner=owner, name="ds")
    )
    assert sorted(d.name for d in left.label_defs) == sorted(
        ["foo", "foo > x", "FOO", "axxb", "axxb > c", "azb", "azb > c", "a\\\\b", "a\\\\b > c"]
    )
    got = await org.admin.datasets.GetLabelling(
        datasets_pb2.GetLabellingRequest(owner=owner, name="ds", comment_uid=uid)
    )
    assert [lb.name for lb in got.assigned] == ["foo > x", "azb"]


async def test_sentiment_only_on_datasets_with_sentiment(org: Org) -> None:
    project = await org.project()
    src = await h.source(org.admin, project.name)
    await h.dataset(
        org.admin,
        project.name,
        [src.id],
        name="flat",
        has_sentiment=wrappers_pb2.BoolValue(value=False),
    )
    await h.sync(org.admin, project.name, "mailbox", [h.comment("one")])
    await org.admin.datasets.CreateLabelDefs(
        datasets_pb2.CreateLabelDefsRequest(
            owner=project.name, name="flat", label_defs=[datasets_pb2.LabelDef(name="L")]
        )
    )
    request = datasets_pb2.UpdateLabellingRequest(
        owner=project.name,
        name="flat",
        comment_uid=f"{src.id}.one",
        assigned=[Label(name="L", sentiment="positive")],
    )
    with pytest.raises(CorrigoError) as err:
        await org.admin.datasets.UpdateLabelling(request)
    assert err.value.fields == ["assigned[0].sentiment"]
    request.assigned[0].sentiment = ""
    await org.admin.datasets.UpdateLabelling(request)
    version = await h.model_version(org.admin, project.name, "flat")
    with pytest.raises(CorrigoError) as err:
        await org.admin.models.UploadPredictions(
            models_pb2.UploadPredictionsRequest(
                owner=project.name,
                dataset="flat",
                version=version.version,
                predictions=[
                    models_pb2.CommentPredictions(
                        uid=f"{src.id}.one",
                        labels=[PredictedLabel(name="L", probability=0.5, sentiment=0.2)],
                    )
                ],
            )
        )
    assert err.value.fields == ["predictions[0].labels[0].sentiment"]


async def test_models_versions_predictions_and_tags(org: Org) -> None:
    project = await org.project()
    owner = project.name
    src = await h.source(org.admin, owner)
    await h.dataset(org.admin, owner, [src.id])
    await h.sync(org.admin, owner, "mailbox", [h.comment("one")])
    model = await org.admin.models.CreateModel(
        models_pb2.CreateModelRequest(
            owner=owner,
            dataset="ds",
            model=Model(
                display_name="Triage", type=Model.CLASSLABEL, classes=["a", "b"], labels=["X > Y"]
            ),
        )
    )
    assert model.id > 0 and model.latest_version == 0 and list(model.classes) == ["a", "b"]
    assert h.as_json(model)["type"] == "CLASSLABEL"
    versions = [
        await org.admin.models.CreateModelVersion(
            models_pb2.CreateModelVersionRequest(
                owner=owner, dataset="ds", model_id=model.id, validation_score=score
            )
        )
        for score in (0.5, 0.75)
    ]
    assert [(v.version, v.validation_score) for v in versions] == [(1, 0.5), (2, 0.75)]
    got = await org.admin.models.GetModel(
        models_pb2.GetModelRequest(owner=owner, dataset="ds", model_id=model.id)
    )
    assert got.latest_version == 2
    listed = await org.admin.models.ListModels(
        models_pb2.ListModelsRequest(owner=owner, dataset="ds")
    )
    assert [m.id for m in listed.models] == [model.id]

    upload = models_pb2.UploadPredictionsRequest(
        owner=owner,
        dataset="ds",
        version=2,
        predictions=[
            models_pb2.CommentPredictions(
                uid=f"{src.id}.one", labels=[PredictedLabel(name="X", probability=0.25)]
            )
        ],
    )
    assert (await org.admin.models.UploadPredictions(upload)).stored == 1
    upload.predictions[0].labels[0].probability = 0.75  # replaces, does not add
    await org.admin.models.UploadPredictions(upload)
    page = await org.admin.datasets.ExportDataset(
        datasets_pb2.ExportDatasetRequest(owner=owner, name="ds")
    )
    assert [(p.name, p.probability) for p in page.comments[0].predictions.labels] == [("X", 0.75)]
    upload.predictions[0].uid = f"{src.id}.absent"
    with pytest.raises(CorrigoError) as err:
        await org.admin.models.UploadPredictions(upload)
    assert err.value.fields == ["predictions[0].uid"]

    for name, version in (("staging", 2), ("prod", 1)):
        await org.admin.models.SetModelTag(
            models_pb2.SetModelTagRequest(owner=owner, dataset="ds", name=name, version=version)
        )
    moved = await org.admin.models.SetModelTag(
        models_pb2.SetModelTagRequest(owner=owner, dataset="ds", name="prod", version=2)
    )
    tags = await org.admin.datasets.ListModelTags(
        datasets_pb2.ListModelTagsRequest(owner=owner, name="ds")
    )
    assert [(t.name, t.version) for t in tags.model_tags] == [("prod", 2), ("staging", 2)]
    assert tags.model_tags[0].updated_at == moved.updated_at
    shown = json_format.MessageToDict(tags, preserving_proto_field_name=True)
    assert set(shown) == {"model_tags", "status"}
    assert set(shown["model_tags"][0]) == {"name", "updated_at", "version"}
    with pytest.raises(CorrigoError) as err:
        await org.admin.models.SetModelTag(
            models_pb2.SetModelTagRequest(owner=owner, dataset="ds", name="prod", version=9)
        )
    assert err.value.code == grpc.StatusCode.NOT_FOUND
