"""Correction sessions: sessions with their change log, candidate and sampled documents,
the claims that keep open sessions of a project from sharing a document, and document
groups. Also what sampling and score projection read from the model tables: each
prediction's top probability, and how many labelled documents each model version was
trained on (both backfilled)."""

from typing import Any

from peewee import (
    AutoField,
    BigAutoField,
    BooleanField,
    CharField,
    CompositeKey,
    DateTimeField,
    DoubleField,
    Field,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
    Tuple,
    fn,
)

from corrigo.v1.comments_pb2 import Predictions

_BACKFILL_PAGE = 1000


class BytesField(Field):
    """BLOB on SQLite, BYTEA on PostgreSQL (as in 0002)."""

    field_type = "BLOB"


def up(migrator: Any, db: Any) -> None:
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    # Frozen references to tables of 0001 and 0002 (what the foreign keys and the
    # backfills need).
    class Organization(Base):
        id = AutoField()

    class User(Base):
        id = AutoField()

    class Project(Base):
        id = AutoField()

    class Comment(Base):
        id = BigAutoField()

    class Dataset(Base):
        id = AutoField()

    class MlModel(Base):
        id = AutoField()

        class Meta:
            table_name = "model"

    class ModelVersion(Base):
        id = AutoField()
        dataset = ForeignKeyField(Dataset, index=False)
        created_at = DateTimeField()
        labelled_documents = IntegerField(null=True)

    class Labelling(Base):
        dataset = ForeignKeyField(Dataset, index=False)
        comment = ForeignKeyField(Comment)
        assigned = BytesField()
        updated_at = DateTimeField()

        class Meta:
            primary_key = CompositeKey("dataset", "comment")

    class Prediction(Base):
        version = ForeignKeyField(ModelVersion, index=False)
        comment = ForeignKeyField(Comment)
        labels = BytesField()
        top_probability = DoubleField(null=True)

        class Meta:
            primary_key = CompositeKey("version", "comment")

    class CorrectionSession(Base):
        id = AutoField()
        uuid = CharField(max_length=36, unique=True)
        organization = ForeignKeyField(Organization, on_delete="CASCADE")
        project = ForeignKeyField(Project)
        user = ForeignKeyField(User)
        model = ForeignKeyField(MlModel, on_delete="CASCADE")
        dataset = ForeignKeyField(Dataset, on_delete="CASCADE")
        document_group_id = IntegerField(null=True)
        scoped = BooleanField()
        strategy = IntegerField()
        sample_size = IntegerField()
        name = CharField(max_length=256)
        description = TextField()
        status = IntegerField(index=True)
        progress = DoubleField()
        document_count = IntegerField()
        predicted_score = IntegerField()
        failure_reason = TextField()
        model_version = ForeignKeyField(ModelVersion, null=True, on_delete="SET NULL")
        version = IntegerField()
        created = DateTimeField()
        finished = DateTimeField(null=True)
        updated_at = DateTimeField()
        lease_owner = CharField(max_length=32, null=True)
        lease_until = DateTimeField(null=True)

    class CorrectionChange(Base):
        session = ForeignKeyField(CorrectionSession, on_delete="CASCADE", index=False)
        version = IntegerField()
        status = IntegerField()
        progress = DoubleField()
        document_count = IntegerField()
        at = DateTimeField()

        class Meta:
            primary_key = CompositeKey("session", "version")

    class CorrectionCandidate(Base):
        session = ForeignKeyField(CorrectionSession, on_delete="CASCADE", index=False)
        comment = ForeignKeyField(Comment, on_delete="CASCADE")

        class Meta:
            primary_key = CompositeKey("session", "comment")

    class CorrectionDocument(Base):
        session = ForeignKeyField(CorrectionSession, on_delete="CASCADE", index=False)
        comment = ForeignKeyField(Comment, on_delete="CASCADE")
        position = IntegerField()
        predicted = BytesField(null=True)
        corrected_at = DateTimeField(null=True)

        class Meta:
            primary_key = CompositeKey("session", "comment")
            indexes = ((("session", "position"), True),)

    class CorrectionClaim(Base):
        # One open session per document of a project: the primary key decides it.
        project = ForeignKeyField(Project, on_delete="CASCADE", index=False)
        comment = ForeignKeyField(Comment, on_delete="CASCADE")
        session = ForeignKeyField(CorrectionSession, on_delete="CASCADE")

        class Meta:
            primary_key = CompositeKey("project", "comment")

    class DocumentGroup(Base):
        id = AutoField()
        project = ForeignKeyField(Project)
        user = ForeignKeyField(User)
        name = CharField(max_length=256)
        created = DateTimeField()

    class DocumentGroupMember(Base):
        group = ForeignKeyField(DocumentGroup, on_delete="CASCADE", index=False)
        comment = ForeignKeyField(Comment, on_delete="CASCADE")
        position = IntegerField()

        class Meta:
            primary_key = CompositeKey("group", "comment")

    migrator.migrate(
        migrator.add_column("prediction", "top_probability", Prediction.top_probability),
        migrator.add_column("model_version", "labelled_documents", ModelVersion.labelled_documents),
    )
    db.create_tables(
        [
            CorrectionSession,
            CorrectionChange,
            CorrectionCandidate,
            CorrectionDocument,
            CorrectionClaim,
            DocumentGroup,
            DocumentGroupMember,
        ]
    )

    # What each existing version was trained on, as well as can be told now: the
    # labellings with assigned labels last written before it was recorded.
    labelled = Labelling.select(fn.COUNT(Labelling.comment)).where(
        Labelling.dataset == ModelVersion.dataset,
        fn.LENGTH(Labelling.assigned) > 0,
        Labelling.updated_at <= ModelVersion.created_at,
    )
    ModelVersion.update(labelled_documents=labelled).execute()

    after: tuple[int, int] = (0, 0)
    while True:
        rows: list[Any] = list(
            Prediction.select(Prediction.version, Prediction.comment, Prediction.labels)
            .where(Tuple(Prediction.version, Prediction.comment) > Tuple(*after))
            .order_by(Prediction.version, Prediction.comment)
            .limit(_BACKFILL_PAGE)
            .tuples()
        )
        for version_id, comment_id, labels in rows:
            probabilities = [p.probability for p in Predictions.FromString(bytes(labels)).labels]
            if probabilities:
                Prediction.update(top_probability=max(probabilities)).where(
                    Prediction.version == version_id, Prediction.comment == comment_id
                ).execute()
        if len(rows) < _BACKFILL_PAGE:
            break
        after = (rows[-1][0], rows[-1][1])
