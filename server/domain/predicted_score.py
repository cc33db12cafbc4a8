"""The projected score of a model once a correction session's documents are labelled.

Models learn roughly logarithmically in their number of training documents, so each of
the model's versions is a point (ln(n + 1), score), n being how many labelled documents
the dataset had when the version was recorded. With at least two distinct n, a line
score = a + b * ln(n + 1) is fitted by least squares; a negative slope (noise: more
data should not hurt) counts as 0. The latest version is moved along that slope to
n_latest + the session's documents. With fewer points there is no slope to follow and
the projection is the latest score. The result is a percentage, clamped to 0..100.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def _slope(points: Sequence[tuple[float, float]]) -> float:
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


def project(versions: Sequence[tuple[int, float]], added: int) -> int:
    """`versions`: (labelled documents, validation score 0..1) oldest first, the last
    being the version the session corrects; `added`: the session's documents."""
    if not versions:
        return 0
    labelled, score = versions[-1]
    points = [(math.log(n + 1), s) for n, s in versions]
    slope = max(_slope(points), 0.0) if len({n for n, _ in versions}) >= 2 else 0.0
    projected = score + slope * (math.log(labelled + added + 1) - math.log(labelled + 1))
    return round(100 * min(max(projected, 0.0), 1.0))
