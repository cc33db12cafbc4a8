"""`corrigo sources | datasets | labels | models | groups ...`: a project's data.

Sources and datasets are named OWNER/NAME (the owner is the project's name), as in the
API; tables by default, `--json` for scripts.
"""

from __future__ import annotations

import argparse
import re

from corrigo.client import transfer_cli
from corrigo.client.admin_cli import project_id
from corrigo.client.cli_support import (
    Column,
    Commands,
    add_named,
    command,
    connect,
    done,
    every,
    group,
    print_item,
    print_items,
    when,
)
from corrigo.v1 import correction_pb2, datasets_pb2, models_pb2, sources_pb2

_MODEL_TYPES = [v.name.lower() for v in models_pb2.Model.Type.DESCRIPTOR.values if v.number]
_SOURCE_ID = re.compile(r"^[0-9a-f]{16}$")

SOURCE_COLUMNS: list[Column] = [
    ("ID", lambda s: s.id),
    ("NAME", lambda s: f"{s.owner}/{s.name}"),
    ("TITLE", lambda s: s.title),
    ("CREATED", lambda s: when(s, "created_at")),
]
DATASET_COLUMNS: list[Column] = [
    ("NAME", lambda d: f"{d.owner}/{d.name}"),
    ("TITLE", lambda d: d.title),
    ("SOURCES", lambda d: ",".join(d.source_ids)),
    ("MODEL FAMILY", lambda d: d.model_family),
    ("CREATED", lambda d: when(d, "created")),
]
LABEL_COLUMNS: list[Column] = [
    ("NAME", lambda label: label.name),
    ("DESCRIPTION", lambda label: label.description),
]
MODEL_COLUMNS: list[Column] = [
    ("ID", lambda m: m.id),
    ("NAME", lambda m: m.display_name),
    ("TYPE", lambda m: models_pb2.Model.Type.Name(m.type)),
    ("LATEST VERSION", lambda m: m.latest_version or "-"),
    ("CREATED", lambda m: when(m, "created_at")),
]
VERSION_COLUMNS: list[Column] = [
    ("MODEL", lambda v: v.model_id),
    ("VERSION", lambda v: v.version),
    ("SCORE", lambda v: v.validation_score),
    ("LABELLED", lambda v: v.labelled_documents),
    ("CREATED", lambda v: when(v, "created_at")),
]
TAG_COLUMNS: list[Column] = [
    ("TAG", lambda t: t.name),
    ("VERSION", lambda t: t.version),
    ("UPDATED", lambda t: when(t, "updated_at")),
]
GROUP_COLUMNS: list[Column] = [
    ("ID", lambda g: g.id),
    ("NAME", lambda g: g.name),
    ("DOCUMENTS", lambda g: g.document_count),
    ("USER", lambda g: g.user_id),
    ("CREATED", lambda g: when(g, "created")),
]


def _sources_list(args: argparse.Namespace) -> int:
    with connect(args) as client:
        request = sources_pb2.ListSourcesRequest(owner=args.owner)
        found = every(client.sources.ListSources, request, "sources")
    print_items(args, found, SOURCE_COLUMNS)
    return 0


def _sources_show(args: argparse.Namespace) -> int:
    owner, name = args.source
    with connect(args) as client:
        answer = client.sources.GetSource(sources_pb2.GetSourceRequest(owner=owner, name=name))
    print_item(args, answer.source, SOURCE_COLUMNS)
    return 0


def _sources_create(args: argparse.Namespace) -> int:
    owner, name = args.source
    source = sources_pb2.Source(title=args.title, description=args.description)
    with connect(args) as client:
        answer = client.sources.CreateSource(
            sources_pb2.CreateSourceRequest(owner=owner, name=name, source=source)
        )
    print_item(args, answer.source, SOURCE_COLUMNS)
    return 0


def _sources_delete(args: argparse.Namespace) -> int:
    owner, name = args.source
    with connect(args) as client:
        client.sources.DeleteSource(sources_pb2.DeleteSourceRequest(owner=owner, name=name))
    done(f"source {owner}/{name} deleted, with its comments")
    return 0


def _datasets_list(args: argparse.Namespace) -> int:
    with connect(args) as client:
        found = every(client.datasets.ListDatasets, datasets_pb2.ListDatasetsRequest(), "datasets")
    if args.owner:
        found = [dataset for dataset in found if dataset.owner == args.owner]
    print_items(args, found, DATASET_COLUMNS)
    return 0


def _datasets_show(args: argparse.Namespace) -> int:
    owner, name = args.dataset
    with connect(args) as client:
        answer = client.datasets.GetDataset(datasets_pb2.GetDatasetRequest(owner=owner, name=name))
    print_item(args, answer.dataset, DATASET_COLUMNS)
    return 0


def _datasets_create(args: argparse.Namespace) -> int:
    owner, name = args.dataset
    with connect(args) as client:
        source_ids = [
            source
            if _SOURCE_ID.match(source)
            else client.sources.GetSource(
                sources_pb2.GetSourceRequest(owner=owner, name=source)
            ).source.id
            for source in args.source
        ]
        dataset = datasets_pb2.Dataset(
            title=args.title,
            description=args.description,
            source_ids=source_ids,
            model_family=args.model_family,
        )
        if args.sentiment:
            dataset.has_sentiment.value = True
        answer = client.datasets.CreateDataset(
            datasets_pb2.CreateDatasetRequest(owner=owner, name=name, dataset=dataset)
        )
    print_item(args, answer.dataset, DATASET_COLUMNS)
    return 0


def _datasets_delete(args: argparse.Namespace) -> int:
    owner, name = args.dataset
    with connect(args) as client:
        client.datasets.DeleteDataset(datasets_pb2.DeleteDatasetRequest(owner=owner, name=name))
    done(f"dataset {owner}/{name} deleted (its sources stay)")
    return 0


def _labels_list(args: argparse.Namespace) -> int:
    owner, name = args.dataset
    with connect(args) as client:
        answer = client.datasets.ListLabelDefs(
            datasets_pb2.ListLabelDefsRequest(owner=owner, name=name)
        )
    print_items(args, answer.label_defs, LABEL_COLUMNS)
    return 0


def _labels_create(args: argparse.Namespace) -> int:
    owner, name = args.dataset
    labels = [datasets_pb2.LabelDef(name=label) for label in args.label]
    with connect(args) as client:
        answer = client.datasets.CreateLabelDefs(
            datasets_pb2.CreateLabelDefsRequest(owner=owner, name=name, label_defs=labels)
        )
    print_items(args, answer.label_defs, LABEL_COLUMNS)
    return 0


def _labels_delete(args: argparse.Namespace) -> int:
    owner, name = args.dataset
    with connect(args) as client:
        client.datasets.DeleteLabelDef(
            datasets_pb2.DeleteLabelDefRequest(owner=owner, name=name, label_name=args.label)
        )
    done(f"label {args.label!r} deleted from {owner}/{name}")
    return 0


def _models_list(args: argparse.Namespace) -> int:
    owner, name = args.dataset
    with connect(args) as client:
        request = models_pb2.ListModelsRequest(owner=owner, dataset=name)
        found = every(client.models.ListModels, request, "models")
    print_items(args, found, MODEL_COLUMNS)
    return 0


def _models_show(args: argparse.Namespace) -> int:
    owner, name = args.dataset
    with connect(args) as client:
        model = client.models.GetModel(
            models_pb2.GetModelRequest(owner=owner, dataset=name, model_id=args.model_id)
        )
    print_item(args, model, MODEL_COLUMNS)
    return 0


def _models_create(args: argparse.Namespace) -> int:
    owner, name = args.dataset
    model = models_pb2.Model(
        display_name=args.name, type=models_pb2.Model.Type.Value(args.type.upper())
    )
    with connect(args) as client:
        created = client.models.CreateModel(
            models_pb2.CreateModelRequest(owner=owner, dataset=name, model=model)
        )
    print_item(args, created, MODEL_COLUMNS)
    return 0


def _models_version(args: argparse.Namespace) -> int:
    owner, name = args.dataset
    with connect(args) as client:
        version = client.models.CreateModelVersion(
            models_pb2.CreateModelVersionRequest(
                owner=owner, dataset=name, model_id=args.model_id, validation_score=args.score
            )
        )
    print_item(args, version, VERSION_COLUMNS)
    return 0


def _models_tag(args: argparse.Namespace) -> int:
    owner, name = args.dataset
    with connect(args) as client:
        tag = client.models.SetModelTag(
            models_pb2.SetModelTagRequest(
                owner=owner, dataset=name, name=args.tag, version=args.version
            )
        )
    print_item(args, tag, TAG_COLUMNS)
    return 0


def _models_tags(args: argparse.Namespace) -> int:
    owner, name = args.dataset
    with connect(args) as client:
        answer = client.datasets.ListModelTags(
            datasets_pb2.ListModelTagsRequest(owner=owner, name=name)
        )
    print_items(args, answer.model_tags, TAG_COLUMNS)
    return 0


def _groups_list(args: argparse.Namespace) -> int:
    with connect(args) as client:
        request = correction_pb2.ListDocumentGroupsRequest(
            project_id=project_id(client, args.project)
        )
        found = every(client.document_groups.ListDocumentGroups, request, "groups")
    print_items(args, found, GROUP_COLUMNS)
    return 0


def _groups_show(args: argparse.Namespace) -> int:
    with connect(args) as client:
        found = client.document_groups.GetDocumentGroup(
            correction_pb2.GetDocumentGroupRequest(
                project_id=project_id(client, args.project), group_id=args.group_id
            )
        )
    print_item(args, found, [*GROUP_COLUMNS, ("UIDS", lambda g: " ".join(g.document_uids))])
    return 0


def _groups_create(args: argparse.Namespace) -> int:
    with connect(args) as client:
        created = client.document_groups.CreateDocumentGroup(
            correction_pb2.CreateDocumentGroupRequest(
                project_id=project_id(client, args.project),
                name=args.name,
                document_uids=args.uid,
            )
        )
    print_item(args, created, GROUP_COLUMNS)
    return 0


def _groups_delete(args: argparse.Namespace) -> int:
    with connect(args) as client:
        client.document_groups.DeleteDocumentGroup(
            correction_pb2.DeleteDocumentGroupRequest(
                project_id=project_id(client, args.project), group_id=args.group_id
            )
        )
    done(f"document group {args.group_id} deleted")
    return 0


def add_commands(commands: Commands) -> None:
    sources = group(commands, "sources", "a project's sources of comments")
    listing = command(sources, "list", "list a project's sources", _sources_list)
    listing.add_argument("owner", metavar="OWNER", help="the project's name")
    add_named(command(sources, "show", "show a source", _sources_show), "source")
    create = command(sources, "create", "create a source", _sources_create)
    add_named(create, "source")
    create.add_argument("--title", default="")
    create.add_argument("--description", default="")
    add_named(
        command(sources, "delete", "delete a source and its comments", _sources_delete), "source"
    )

    datasets = group(commands, "datasets", "datasets: named views over sources")
    listing = command(datasets, "list", "list the datasets of your projects", _datasets_list)
    listing.add_argument("owner", metavar="OWNER", nargs="?", help="only this project's")
    add_named(command(datasets, "show", "show a dataset", _datasets_show), "dataset")
    create = command(datasets, "create", "create a dataset over sources", _datasets_create)
    add_named(create, "dataset")
    create.add_argument(
        "--source", action="append", required=True, help="source name or id (repeatable)"
    )
    create.add_argument("--title", default="")
    create.add_argument("--description", default="")
    create.add_argument("--model-family", default="english", help="default %(default)s")
    create.add_argument("--sentiment", action="store_true", help="labels carry a sentiment")
    add_named(command(datasets, "delete", "delete a dataset", _datasets_delete), "dataset")

    labels = group(commands, "labels", "a dataset's label taxonomy")
    add_named(command(labels, "list", "list a dataset's labels", _labels_list), "dataset")
    create = command(labels, "create", "add labels ('Parent > Child' nests)", _labels_create)
    add_named(create, "dataset")
    create.add_argument("label", nargs="+")
    delete = command(labels, "delete", "delete a label", _labels_delete)
    add_named(delete, "dataset")
    delete.add_argument("label")
    transfer_cli.add_labels_import(labels)

    models = group(commands, "models", "a dataset's models, their versions and tags")
    add_named(command(models, "list", "list a dataset's models", _models_list), "dataset")
    show = command(models, "show", "show a model", _models_show)
    add_named(show, "dataset")
    show.add_argument("model_id", type=int)
    create = command(models, "create", "create a model", _models_create)
    add_named(create, "dataset")
    create.add_argument("name", help="display name")
    create.add_argument("--type", choices=_MODEL_TYPES, default="label", help="default label")
    version = command(models, "version", "record a new version of a model", _models_version)
    add_named(version, "dataset")
    version.add_argument("model_id", type=int)
    version.add_argument("--score", type=float, required=True, help="validation score, 0..1")
    tag = command(models, "tag", "pin a tag (prod, staging) to a version", _models_tag)
    add_named(tag, "dataset")
    tag.add_argument("tag")
    tag.add_argument("version", type=int)
    add_named(command(models, "tags", "list a dataset's model tags", _models_tags), "dataset")

    groups = group(commands, "groups", "saved sets of documents to sample correction from")
    listing = command(groups, "list", "list a project's document groups", _groups_list)
    listing.add_argument("project", help="project id or name")
    show = command(groups, "show", "show a group with its document uids", _groups_show)
    show.add_argument("project", help="project id or name")
    show.add_argument("group_id", type=int)
    create = command(groups, "create", "create a group of documents", _groups_create)
    create.add_argument("project", help="project id or name")
    create.add_argument("name")
    create.add_argument("uid", nargs="+", help="document uids: SOURCE_ID.COMMENT_ID")
    delete = command(groups, "delete", "delete a group", _groups_delete)
    delete.add_argument("project", help="project id or name")
    delete.add_argument("group_id", type=int)
