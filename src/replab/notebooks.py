"""Output-stripped notebooks: what the pipeline depends on, so saved outputs do not re-run stages."""

from __future__ import annotations

from pathlib import Path

import nbformat

# Metadata that changes on every execution or save and says nothing about the code.
_VOLATILE_CELL_METADATA = ("execution", "collapsed", "scrolled", "papermill", "ExecuteTime")
_VOLATILE_NB_METADATA = ("widgets", "papermill")


def strip(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop outputs, execution counts and volatile metadata in place; keeps cell ids and tags."""
    for cell in nb.cells:
        for key in _VOLATILE_CELL_METADATA:
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    for key in _VOLATILE_NB_METADATA:
        nb.metadata.pop(key, None)
    return nb


def is_stripped(nb: nbformat.NotebookNode) -> bool:
    return all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")


def strip_file(source: Path, dest: Path | None = None) -> Path:
    """Write the stripped ``source`` to ``dest`` (default: in place). Writes only if the bytes change."""
    dest = Path(dest or source)
    try:
        nb = nbformat.read(source, as_version=4)
    except FileNotFoundError:
        raise
    except Exception as exc:  # nbformat raises several types for a damaged file
        first = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"{source}: not a readable notebook ({first}); restore it with `git checkout -- {source}`"
        ) from None
    text = nbformat.writes(strip(nb)) + "\n"
    if not dest.exists() or dest.read_text() != text:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text)
    return dest
