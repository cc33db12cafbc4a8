"""The permission model: what each role may do, and what each RPC needs.

`RULES` is the single declarative table RPC -> rule. The auth interceptor checks it
before any handler runs; an RPC missing from it is refused (fail closed), and the
test suite fails when a service method has no rule.

A PROJECT rule names how its project is found: a request field (`project_id` or `owner`;
of the first message, for a client stream), or a `Lookup` by what the request holds. The
project's permission is checked before the handler runs. A lookup that finds nothing the
caller may see answers NOT_FOUND (a session of another user, an item of another
organization); a caller without the permission is PERMISSION_DENIED whether or not the
project exists.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from corrigo.v1.admin_pb2 import Member, User


class Permission(enum.Enum):
    VIEW_LABELS = "view_labels"
    VIEW_SOURCES = "view_sources"
    ANNOTATE = "annotate"
    CORRECTION_SESSIONS = "correction_sessions"
    PRACTICE = "practice"
    EDIT_MESSAGES = "edit_messages"
    MODIFY_DATASETS = "modify_datasets"
    EXPORT_DATASETS = "export_datasets"
    DATASETS_ADMIN = "datasets_admin"
    MODEL_ADMIN = "model_admin"
    MEMBERS_ADMIN = "members_admin"
    # Organization-level permissions.
    ORG_ADMIN = "org_admin"
    BATCHES = "batches"


_VIEWER = frozenset({Permission.VIEW_LABELS, Permission.VIEW_SOURCES})
_ANNOTATOR = _VIEWER | {Permission.ANNOTATE, Permission.CORRECTION_SESSIONS, Permission.PRACTICE}
_EDITOR = _ANNOTATOR | {
    Permission.EDIT_MESSAGES,
    Permission.MODIFY_DATASETS,
    Permission.EXPORT_DATASETS,
}
_ADMIN = _EDITOR | {Permission.DATASETS_ADMIN, Permission.MODEL_ADMIN, Permission.MEMBERS_ADMIN}

PROJECT_ROLE_PERMISSIONS: dict[int, frozenset[Permission]] = {
    Member.VIEWER: _VIEWER,
    Member.ANNOTATOR: _ANNOTATOR,
    Member.EDITOR: _EDITOR,
    Member.ADMIN: _ADMIN,
}

# Organization roles. An organization admin holds every project permission in every project.
ORG_ROLE_PERMISSIONS: dict[int, frozenset[Permission]] = {
    User.MEMBER: frozenset(),
    User.ADMIN: _ADMIN | {Permission.ORG_ADMIN, Permission.BATCHES},
    User.SERVICE: frozenset({Permission.BATCHES}),
}


class Scope(enum.Enum):
    """Where a rule's permission is looked up."""

    PUBLIC = "public"  # no token needed (health, reflection)
    USER = "user"  # any valid token; the handler limits what the caller sees
    ORG = "org"  # the caller's organization role
    PROJECT = "project"  # the caller's role in the project the request names or leads to


class Lookup(enum.Enum):
    """How a PROJECT rule without a request field finds its project; each is served by
    the function registered with `auth.register_lookup`."""

    # The caller's own practice session named by `session_id`: its project, or none.
    PRACTICE_SESSION = "practice_session"
    # The new practice session's `project_id`, when given.
    NEW_PRACTICE_SESSION = "new_practice_session"
    # The catalog item named by `class_id`, `agent_id` or `knowledge_id`: its project;
    # an organization-wide item is readable by every user of the organization.
    CATALOG_ITEM_READ = "catalog_item_read"
    # As CATALOG_ITEM_READ; an organization-wide item needs the permission in the
    # organization.
    CATALOG_ITEM_WRITE = "catalog_item_write"
    # The new catalog item's `project_id` (0: organization-wide, which needs the
    # permission in the organization).
    NEW_CATALOG_ITEM = "new_catalog_item"
    # A list's `project_id` (0: the organization-wide items alone, open to every user).
    CATALOG_LIST = "catalog_list"


@dataclass(frozen=True)
class Rule:
    scope: Scope
    permission: Permission | None = None
    # For PROJECT rules, exactly one of: the request field naming the project, either an
    # id (`project_id`) or a name (`owner`); or the lookup that finds it.
    project_field: str | None = None
    lookup: Lookup | None = None


def public() -> Rule:
    return Rule(Scope.PUBLIC)


def user() -> Rule:
    return Rule(Scope.USER)


def org(permission: Permission) -> Rule:
    return Rule(Scope.ORG, permission)


def project(permission: Permission, field: str) -> Rule:
    return Rule(Scope.PROJECT, permission, project_field=field)


def found_by(permission: Permission, lookup: Lookup) -> Rule:
    return Rule(Scope.PROJECT, permission, lookup=lookup)


_ADMIN_SERVICE = "/corrigo.v1.AdminService/"
_CATALOG = "/corrigo.v1.PracticeCatalogService/"
_EXAMPLES = "/corrigo.v1.FewShotExampleService/"
_SESSIONS = "/corrigo.v1.PracticeSessionService/"
_IMPROVEMENT = "/corrigo.v1.ImprovementService/"
_DATASETS = "/corrigo.v1.DatasetService/"
_SOURCES = "/corrigo.v1.SourceService/"
_MODELS = "/corrigo.v1.ModelService/"
_CORRECTION = "/corrigo.v1.CorrectionSessionService/"
_GROUPS = "/corrigo.v1.DocumentGroupService/"
_CATALOG_NOUNS = ("PracticeClass", "PracticeAgent", "KnowledgeItem")

RULES: dict[str, Rule] = {
    "/grpc.health.v1.Health/Check": public(),
    "/grpc.health.v1.Health/Watch": public(),
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": public(),
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": public(),
    _ADMIN_SERVICE + "WhoAmI": user(),
    _ADMIN_SERVICE + "CreateProject": org(Permission.ORG_ADMIN),
    _ADMIN_SERVICE + "GetProject": project(Permission.VIEW_SOURCES, "project_id"),
    _ADMIN_SERVICE + "ListProjects": user(),
    _ADMIN_SERVICE + "DeleteProject": org(Permission.ORG_ADMIN),
    _ADMIN_SERVICE + "SetMember": project(Permission.MEMBERS_ADMIN, "project_id"),
    _ADMIN_SERVICE + "ListMembers": project(Permission.VIEW_SOURCES, "project_id"),
    _ADMIN_SERVICE + "RemoveMember": project(Permission.MEMBERS_ADMIN, "project_id"),
    _ADMIN_SERVICE + "CreateUser": org(Permission.ORG_ADMIN),
    _ADMIN_SERVICE + "ListUsers": org(Permission.ORG_ADMIN),
    # Own tokens for everyone; another user's need ORG_ADMIN, checked by the handler
    # because it depends on the request's user_id.
    _ADMIN_SERVICE + "CreateApiToken": user(),
    _ADMIN_SERVICE + "ListApiTokens": user(),
    _ADMIN_SERVICE + "RevokeApiToken": user(),
    # Practice catalog: items live in a project or in the whole organization.
    **{
        _CATALOG + "Create" + noun: found_by(Permission.MODEL_ADMIN, Lookup.NEW_CATALOG_ITEM)
        for noun in _CATALOG_NOUNS
    },
    **{
        _CATALOG + verb + noun: found_by(Permission.MODEL_ADMIN, Lookup.CATALOG_ITEM_WRITE)
        for verb in ("Update", "Delete")
        for noun in _CATALOG_NOUNS
    },
    **{
        _CATALOG + "Get" + noun: found_by(Permission.PRACTICE, Lookup.CATALOG_ITEM_READ)
        for noun in _CATALOG_NOUNS
    },
    **{
        _CATALOG + "List" + nouns: found_by(Permission.PRACTICE, Lookup.CATALOG_LIST)
        for nouns in ("PracticeClasses", "PracticeAgents", "KnowledgeItems")
    },
    # Few-shot examples: everyone's own, the handler never shows another user's.
    _EXAMPLES + "CreateFewShotExample": user(),
    _EXAMPLES + "GetFewShotExample": user(),
    _EXAMPLES + "ListFewShotExamples": user(),
    _EXAMPLES + "UpdateFewShotExample": user(),
    _EXAMPLES + "DeleteFewShotExample": user(),
    # Practice sessions: the caller's own only (another user's is NOT_FOUND, also for
    # admins); a session of a project needs `practice` there.
    _SESSIONS + "CreatePracticeSession": found_by(Permission.PRACTICE, Lookup.NEW_PRACTICE_SESSION),
    _SESSIONS + "ListPracticeSessions": user(),
    **{
        _SESSIONS + name: found_by(Permission.PRACTICE, Lookup.PRACTICE_SESSION)
        for name in (
            "GetPracticeSession",
            "UpdatePracticeSession",
            "DeletePracticeSession",
            "UpdatePracticeSettings",
            "ListSessionModels",
            "RecordResponse",
            "AppendEvents",
            "ListEvents",
        )
    },
    # Improvement: a session is scheduled by whoever may act on it in
    # PracticeSessionService. Pipelines read and release.
    _IMPROVEMENT + "UseSessionForImprovement": found_by(
        Permission.PRACTICE, Lookup.PRACTICE_SESSION
    ),
    _IMPROVEMENT + "GetBatchSessions": org(Permission.BATCHES),
    _IMPROVEMENT + "StreamBatchSessions": org(Permission.BATCHES),
    _IMPROVEMENT + "ReleaseBatch": org(Permission.BATCHES),
    _IMPROVEMENT + "GetBatch": org(Permission.BATCHES),
    _IMPROVEMENT + "ListBatches": org(Permission.BATCHES),
    # Datasets, taxonomy, labellings, export (the Communications Mining document's
    # permissions). ListDatasets spans projects: the handler shows those the caller is in.
    _DATASETS + "ListDatasets": user(),
    _DATASETS + "GetDataset": project(Permission.VIEW_LABELS, "owner"),
    _DATASETS + "CreateDataset": project(Permission.MODIFY_DATASETS, "owner"),
    _DATASETS + "UpdateDataset": project(Permission.DATASETS_ADMIN, "owner"),
    _DATASETS + "DeleteDataset": project(Permission.DATASETS_ADMIN, "owner"),
    _DATASETS + "ListModelTags": project(Permission.MODEL_ADMIN, "owner"),
    _DATASETS + "CreateLabelDefs": project(Permission.MODIFY_DATASETS, "owner"),
    _DATASETS + "ListLabelDefs": project(Permission.VIEW_LABELS, "owner"),
    _DATASETS + "DeleteLabelDef": project(Permission.MODIFY_DATASETS, "owner"),
    _DATASETS + "UpdateLabelling": project(Permission.ANNOTATE, "owner"),
    _DATASETS + "BatchUpdateLabellings": project(Permission.ANNOTATE, "owner"),
    # Client-streaming: the project named by the first chunk.
    _DATASETS + "StreamUpdateLabellings": project(Permission.ANNOTATE, "owner"),
    _DATASETS + "GetLabelling": project(Permission.VIEW_LABELS, "owner"),
    _DATASETS + "ExportDataset": project(Permission.EXPORT_DATASETS, "owner"),
    _DATASETS + "StreamExportDataset": project(Permission.EXPORT_DATASETS, "owner"),
    # Sources and comments. The bulk sync is client-streaming: the project named by the
    # first chunk.
    _SOURCES + "CreateSource": project(Permission.MODIFY_DATASETS, "owner"),
    _SOURCES + "GetSource": project(Permission.VIEW_SOURCES, "owner"),
    _SOURCES + "ListSources": project(Permission.VIEW_SOURCES, "owner"),
    _SOURCES + "UpdateSource": project(Permission.MODIFY_DATASETS, "owner"),
    _SOURCES + "DeleteSource": project(Permission.DATASETS_ADMIN, "owner"),
    _SOURCES + "SyncComments": project(Permission.EDIT_MESSAGES, "owner"),
    _SOURCES + "StreamSyncComments": project(Permission.EDIT_MESSAGES, "owner"),
    _SOURCES + "GetComment": project(Permission.VIEW_SOURCES, "owner"),
    _SOURCES + "DeleteComments": project(Permission.EDIT_MESSAGES, "owner"),
    # Models, versions, predictions and tags.
    _MODELS + "CreateModel": project(Permission.MODEL_ADMIN, "owner"),
    _MODELS + "GetModel": project(Permission.MODEL_ADMIN, "owner"),
    _MODELS + "ListModels": project(Permission.MODEL_ADMIN, "owner"),
    _MODELS + "CreateModelVersion": project(Permission.MODEL_ADMIN, "owner"),
    _MODELS + "UploadPredictions": project(Permission.MODEL_ADMIN, "owner"),
    _MODELS + "SetModelTag": project(Permission.MODEL_ADMIN, "owner"),
    # Correction sessions and document groups: every request names its project; a session
    # or group of another project is NOT_FOUND.
    **{
        _CORRECTION + name: project(Permission.CORRECTION_SESSIONS, "project_id")
        for name in (
            "CreateCorrectionSession",
            "GetCorrectionSession",
            "ListCorrectionSessions",
            "DeleteCorrectionSession",
            "ListSessionDocuments",
            "SubmitCorrection",
            "WatchCorrectionSession",
            "ListCorrectionSessionChanges",
        )
    },
    **{
        _GROUPS + verb + "DocumentGroup" + suffix: project(
            Permission.CORRECTION_SESSIONS, "project_id"
        )
        for verb, suffix in (("Create", ""), ("Get", ""), ("List", "s"), ("Delete", ""))
    },
}
