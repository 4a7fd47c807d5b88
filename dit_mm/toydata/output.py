"""Safe output folders for the toy data sets: never write over the user's files.

A folder made by the generator carries a marker holding the settings it was made
with. Asked again with the same settings, the generator finds it complete and
does nothing (idempotent); with other settings it refuses unless told to
overwrite, and then too if the folder holds files it did not make; a non-empty
folder without the marker is never touched.
"""
import functools
import inspect
import json
import shutil
from pathlib import Path
from typing import List, Optional

MARKER = '.dit_mm_toy.json'


class ToyDataExistsError(FileExistsError):
    """The output folder holds data the generator must not replace."""


def prepare(root: Path, settings: dict, overwrite: bool = False) -> bool:
    """Make ``root`` ready for a data set; return False when it is already there."""
    root = Path(root)
    marker = root / MARKER
    if marker.is_file():
        recorded = json.loads(marker.read_text())
        if recorded.get('complete') and recorded.get('settings') == settings:
            return False
        if recorded.get('complete') and not overwrite:
            raise ToyDataExistsError(
                f'{root} already holds toy data made with other settings '
                f'({recorded.get("settings")}); pass --overwrite to replace it')
        added = _files_added(root, recorded.get('files'))
        if added:
            raise ToyDataExistsError(
                f'{root} holds files the toy data tool did not make '
                f'({", ".join(added[:5])}{" ..." if len(added) > 5 else ""}); '
                '--overwrite replaces toy data only: move them out first')
        shutil.rmtree(root)  # ours: complete and to be replaced, or half made
    elif root.exists() and any(root.iterdir()):
        raise ToyDataExistsError(
            f'{root} exists, is not empty and was not made by the dit_mm toy '
            'data tool; refusing to write into it (choose another --out)')
    root.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({'complete': False, 'settings': settings}))
    return True


def _files(root: Path) -> List[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob('*')
                  if path.is_file() and path.name != MARKER)


def _files_added(root: Path, made: Optional[List[str]]) -> List[str]:
    """The files in ``root`` that are not among those the generator ``made``
    (none known: a set made before the marker listed them)."""
    if made is None:
        return []
    made = set(made)
    return [name for name in _files(root) if name not in made]


def finish(root: Path, settings: dict) -> None:
    """Mark ``root`` complete, so a later run with the same settings skips
    it, with the files it holds (``--overwrite`` replaces only those)."""
    root = Path(root)
    files = _files(root)
    (root / MARKER).write_text(json.dumps(
        {'complete': True, 'settings': settings, 'files': files}, indent=1))


def toy_set(write):
    """Make ``write(root, **settings)`` safe and idempotent.

    The wrapped function takes ``root``, the writer's own keyword settings and
    ``overwrite``; it returns False, writing nothing, when ``root`` already
    holds the set made with the same settings (see :func:`prepare`).
    """
    signature = inspect.signature(write)

    @functools.wraps(write)
    def make(root, overwrite: bool = False, **kwargs) -> bool:
        bound = signature.bind(Path(root), **kwargs)
        bound.apply_defaults()
        settings = {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in bound.arguments.items() if name != 'root'
        }
        settings['kind'] = write.__name__
        if not prepare(root, settings, overwrite):
            return False
        write(*bound.args, **bound.kwargs)
        finish(root, settings)
        return True

    return make
