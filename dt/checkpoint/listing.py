"""Where checkpoints and finished runs are on disk (no torch): the picker, the Train page and the command line
find them through here."""

from __future__ import annotations

from pathlib import Path

from dt.checkpoint.meta import META_FILE


def list_checkpoints(*roots: str | Path) -> list[Path]:
    """Checkpoint directories (holding ``checkpoint.json``) under the given roots, sorted by name (no torch)."""
    found: list[Path] = []
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            continue
        for meta in sorted(root.glob(f"*/{META_FILE}")):
            if not meta.parent.name.startswith("."):
                found.append(meta.parent)
    return found


def list_runs(root: str | Path, resumable: bool = False) -> list[Path]:
    """Run directories under ``root`` whose ``checkpoint/`` holds ``checkpoint.json``, newest checkpoint first
    (no torch): the one definition of a finished run, for the picker and the Train page. ``resumable`` also asks
    for the run's own ``config.json`` (what ``--resume`` reads)."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [
        d
        for d in root.iterdir()
        if (d / "checkpoint" / META_FILE).is_file() and (not resumable or (d / "config.json").is_file())
    ]
    return sorted(runs, key=lambda d: (d / "checkpoint" / META_FILE).stat().st_mtime, reverse=True)
