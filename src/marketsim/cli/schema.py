"""``marketsim schema``: print (or ``--write``) the JSON Schema of the file formats and their reference."""

from __future__ import annotations

import argparse
from pathlib import Path

from marketsim.errors import UserError


def cmd_schema(args: argparse.Namespace) -> int:
    from marketsim.io import store
    from marketsim.scenario import schema

    if not args.write:
        print(schema.reference_markdown() if args.kind == "reference" else schema.schema_text(args.kind), end="")
        return 0
    root = Path(args.root)
    doc_path = root / "docs" / "scenarios.md"
    if not doc_path.is_file():
        raise UserError(
            f"{doc_path}: not found; run `marketsim schema --write` from the repository root (or give --root)"
        )
    try:
        doc = schema.with_reference(doc_path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise UserError(f"{doc_path}: {e}") from None
    files = {
        root / "schema" / "scenario.schema.json": schema.schema_text("scenario"),
        root / "schema" / "sweep.schema.json": schema.schema_text("sweep"),
        doc_path: doc,
    }
    for path, text in files.items():
        same = path.is_file() and path.read_text(encoding="utf-8") == text
        if not same:
            store.write_text(path, text)
        print(f"{path}: {'unchanged' if same else 'written'}")
    return 0
