"""`corrigo import`: export a dataset, import the file into another organization's
fresh project, export again: the same comments, labels and predictions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from corrigo.client.sync import SERVER_FIELDS
from tests.conftest import Org
from tests.test_parquet_export import _dataset

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _portable(path: Path) -> list[dict[str, Any]]:
    """An export's lines without what names the server's sources and times."""
    lines = []
    for line in path.read_text().splitlines():
        data = json.loads(line)
        for name in SERVER_FIELDS:  # the server's own: not carried over
            data["comment"].pop(name, None)
        lines.append(data)
    return sorted(lines, key=lambda d: d["comment"]["id"])


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
async def test_export_import_export_round_trip(
    org: Org, other_org: Org, tmp_path: Path, fmt: str
) -> None:
    owner = await _dataset(org, 120)
    exported = tmp_path / "first.jsonl"
    code, _, err = await org.cli("export", f"{owner}/ds", "-o", str(exported), "-q")
    assert code == 0, err
    moved = tmp_path / f"moved.{fmt}"
    code, _, err = await org.cli("export", f"{owner}/ds", "-o", str(moved), "--format", fmt, "-q")
    assert code == 0, err

    target = await other_org.project()
    code, _, err = await other_org.cli(
        "import", f"{target.name}/copy", str(moved), "--new-model", "imported", "-q"
    )
    assert code == 0, err
    assert "120 comments into 1 sources, 60 labellings, 120 predictions" in err
    again = tmp_path / "again.jsonl"
    code, _, err = await other_org.cli("export", f"{target.name}/copy", "-o", str(again), "-q")
    assert code == 0, err
    first, second = _portable(exported), _portable(again)
    assert second == first
    assert any("annotations" in d for d in second) and all("predictions" in d for d in second)

    # Importing again changes nothing (and keeps the predictions' version).
    code, _, err = await other_org.cli(
        "import", f"{target.name}/copy", str(moved), "--model-version", "1", "-q"
    )
    assert code == 0, err
    code, _, err = await other_org.cli("export", f"{target.name}/copy", "-o", str(again), "-q")
    assert _portable(again) == first


async def test_import_without_a_model_version_skips_predictions(
    org: Org, other_org: Org, tmp_path: Path
) -> None:
    owner = await _dataset(org, 10)
    moved = tmp_path / "moved.jsonl"
    code, _, err = await org.cli("export", f"{owner}/ds", "-o", str(moved), "-q")
    assert code == 0, err
    target = await other_org.project()
    code, _, err = await other_org.cli("import", f"{target.name}/copy", str(moved), "-q")
    assert code == 0, err
    assert "10 comments' predictions skipped" in err
    moved.write_text('{"comment": {"id": 5}}\n')
    code, _, err = await other_org.cli("import", f"{target.name}/copy", str(moved), "-q")
    assert code == 1 and f"{moved}:1:" in err
