"""`make gen`'s last step: the OpenAPI document says 201 where the gateway answers 201.

protoc-gen-swagger writes 200 for every success; the server names another status for
CreateCorrectionSession (initial metadata `x-http-code`, which server/gateway turns
into the HTTP status), so its "200" response is renamed here. The file is written back
as the generator writes it (two-space indent, `<`, `>` and `&` escaped as Go does), so
gen-check compares it byte for byte.

usage: python server/gateway/openapi_status.py FILE.swagger.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from corrigo.server.services.correction import CREATED_HTTP_STATUS

# operationId (as protoc-gen-swagger names it) -> the HTTP status of its success.
STATUSES = {"CreateCorrectionSession": CREATED_HTTP_STATUS}
_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}


def fix(document: dict[str, object]) -> list[str]:
    """Rename each listed operation's "200" response; answers the operations renamed."""
    done = []
    paths = document["paths"]
    assert isinstance(paths, dict)
    for operations in paths.values():
        for operation in operations.values():
            status = STATUSES.get(operation.get("operationId", ""))
            if status is not None:
                responses = operation["responses"]
                responses[str(status)] = responses.pop("200")
                done.append(operation["operationId"])
    return done


def main(path: Path) -> None:
    document = json.loads(path.read_text())
    done = fix(document)
    missing = STATUSES.keys() - set(done)
    if missing:
        sys.exit(f"{path}: no operation {', '.join(sorted(missing))}")
    text = json.dumps(document, indent=2, ensure_ascii=False)
    for character, escaped in _GO_ESCAPES.items():
        text = text.replace(character, escaped)
    path.write_text(text + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
