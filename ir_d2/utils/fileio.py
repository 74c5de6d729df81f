"""
Writing outputs without ever losing a user's data (pure Python: no detectron2, no torch).

:class:`OutputFolder` is the one mechanism through which the ir_d2 tools and benchmarks write. A
file is the tool's when its *manifest* in the folder lists it (``{"tool", <info>, "complete",
"files": {name: record}}``) or its ``recognise`` function names it (files marked inside, outputs
of older versions); any other file is *foreign*. A file the manifest lists is the tool's only as
the tool left it: each record keeps its size and modification time (``"written"``; for a staged
folder its size and SHA-256, so the manifest of a set stays the same for the same content), and a
file a user has since replaced or edited is foreign. Names that leave the folder (absolute, or
with ``..``) are never the tool's. Before anything is written, it refuses
(:class:`OutputRefusedError`) to replace a foreign file, or the tool's own without ``overwrite``;
to write into a folder whose manifest name holds something else, into an ``exclusive`` folder
that is not empty and not the tool's, or over an input. Each file is written under a temporary
name, renamed when complete, then recorded in the manifest, written last (``"complete": false``
from before the run's first file replaces anything, ``true`` at its end); a whole folder
(:meth:`OutputFolder.staged`) is filled as a hidden sibling ``.<name>.tmp-<pid>``
(:func:`~.staging.staged_dir`) and renamed when complete. So a half-written output never looks
complete. Such a sibling left by a run killed with SIGKILL is removed by the next run when its
process is dead on this host (:func:`~.staging.clean_stale_staging`). A tool's ``main``
turns a refusal into one line (:func:`ir_d2.utils.cli.one_line_errors`).
"""

import hashlib
import json
import logging
import os
import stat
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Union

from .staging import STAGING_MARKER, atomic_write, staged_dir

__all__ = ["OutputFolder", "OutputRefusedError", "STAMP"]

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]


class OutputRefusedError(ValueError):
    """Writing there could lose a user's data (a foreign file, an input); nothing was written."""


#: keys of a manifest that are not the tool's ``info``
_MANIFEST_KEYS = ("tool", "complete", "files")
#: the key of a file's record that says what the tool left there: ``[size, mtime_ns]``, or
#: ``[size, "sha256:<hex>"]`` for the files of a staged folder
STAMP = "written"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stamp(path: Path, content: bool = False) -> list:
    """What :func:`_unchanged` compares: the size and the modification time (``content``: the
    SHA-256, which does not depend on when the file was written)."""
    st = os.lstat(path)
    return [st.st_size, "sha256:" + _sha256(path) if content else st.st_mtime_ns]


def _unchanged(path: Path, stamp, hashes: Optional[dict] = None) -> bool:
    """Whether ``path`` is still the regular file the tool recorded with ``stamp`` (``hashes``
    keeps the SHA-256 of files already read, by inode, size and times)."""
    try:
        size, mark = stamp
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size != size:
            return False
        if isinstance(mark, str) and mark.startswith("sha256:"):
            key = (os.fspath(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            hashes = {} if hashes is None else hashes
            if key not in hashes:
                hashes[key] = _sha256(path)
            return hashes[key] == mark[len("sha256:") :]
        return st.st_mtime_ns == mark
    except (OSError, TypeError, ValueError):
        return False


def _inside(name) -> bool:
    """Whether ``name`` (a manifest's or a recogniser's) names a path inside the folder."""
    if not isinstance(name, str) or not name:
        return False
    path = PurePosixPath(name)
    return not path.is_absolute() and ".." not in path.parts


class OutputFolder:
    """
    A folder a tool writes its outputs into (see the module docstring)::

        folder = OutputFolder(out, "my_tool", manifest="my_tool.json", overwrite=args.overwrite)
        folder.check(["a.png"])  # refusals first, before any work
        with folder.write("a.png", mode=None, record={"input": "x.png"}) as tmp:
            cv2.imwrite(str(tmp), picture)  # renamed to a.png when complete, then recorded
        folder.finish()  # "complete": true

    Args:
        path: the folder, created on the first write.
        tool: the tool, as its manifest records it (``"tool"``).
        manifest: the manifest's file name in the folder; None for tools whose files carry their
            own mark (``recognise`` alone then says which files are the tool's).
        recognise: ``recognise(folder)`` -> names (relative, ``/``-separated) of files the tool
            wrote that no manifest of the current format lists: files marked inside, outputs of
            older versions. Nothing (None or empty) when it recognises none.
        exclusive: the folder is the tool's alone: a non-empty folder it has not claimed (no
            file of its own there) is refused.
        overwrite: the tool's own files may be replaced; foreign files never are.
        who: the tool in messages ("the demo"); flag: the option naming the folder ("--output").

    Attributes: ``files`` (name -> record: the tool's files present in the folder, as it left
    them), ``changed`` (names the manifest lists whose file was replaced or edited since: foreign),
    ``info`` (the tool's own keys of its manifest, e.g. its arguments).
    """

    def __init__(
        self,
        path,
        tool: str,
        *,
        manifest: Optional[str] = None,
        recognise: Optional[Callable[[Path], Optional[Iterable[str]]]] = None,
        exclusive: bool = False,
        overwrite: bool = False,
        who: Optional[str] = None,
        flag: str = "--output",
    ):
        self.path, self.tool, self.manifest = Path(path), tool, manifest
        self.recognise, self.exclusive, self.overwrite = recognise, exclusive, overwrite
        self.who, self.flag = who or tool, flag
        self.files: Dict[str, dict] = {}
        self.complete, self._stored_info = False, {}
        self.changed: List[str] = []  # listed in the manifest, but not as the tool left them
        self._written = set()  # names this object wrote (replaced again without ``overwrite``)
        self._saved = False  # whether this object has written the manifest yet
        self._hashes: dict = {}  # SHA-256 of the listed files read so far (:func:`_unchanged`)
        self.reload()
        self.info = dict(self._stored_info)

    # ------------------------------------------------------------------ what the folder holds
    def reload(self) -> None:
        """Read which files are the tool's; refuse a file in the folder's place, a foreign file
        under the manifest's name, and an ``exclusive`` non-empty folder that is not the tool's."""
        self.files = {}
        if self.path.exists() and not self.path.is_dir():
            raise OutputRefusedError(
                f"{self.flag} {self.path} is a file, not a folder; name a folder for the outputs"
            )
        if not self.path.is_dir():
            return
        manifest = self.path / self.manifest if self.manifest else None
        files = self._read_manifest(manifest) if manifest and manifest.exists() else None
        if files is None:
            known = self.recognise(self.path) if self.recognise else None
            files = {name: {} for name in known or ()}
            if not files and manifest and manifest.exists():
                raise OutputRefusedError(
                    f"{manifest} exists and is not {self.who}'s record of its outputs: refusing to "
                    f"write into {self.flag}; choose another folder"
                )
        files = {n: r for n, r in files.items() if _inside(n) and os.path.lexists(self.path / n)}
        self.changed = sorted(
            n
            for n, r in files.items()
            if isinstance(r, dict)
            and STAMP in r
            and not _unchanged(self.path / n, r[STAMP], self._hashes)
        )
        self.files = {n: r for n, r in files.items() if n not in self.changed}
        if self.exclusive and not self.files and any(self.path.iterdir()):
            raise OutputRefusedError(
                f"{self.flag} {self.path} is not empty and was not written by {self.who}: choose "
                "a new or empty folder"
            )

    def _read_manifest(self, manifest: Path) -> Optional[Dict[str, dict]]:
        """The files a manifest of the tool (current format) lists, itself included; else None."""
        try:
            data = json.loads(manifest.read_text())
        except (OSError, ValueError):
            return None
        ours = isinstance(data, dict) and data.get("tool") == self.tool
        if not (ours and isinstance(data.get("files"), dict)):
            return None
        self._stored_info = {k: v for k, v in data.items() if k not in _MANIFEST_KEYS}
        return {**data["files"], self.manifest: {}}

    def foreign(self) -> List[str]:
        """The entries of the folder that are not the tool's: files it did not write (symbolic
        links included) and folders holding none of its files (``name/``), sorted."""
        parents = {str(p) for name in self.files for p in PurePosixPath(name).parents}
        found = []
        for root, dirs, names in os.walk(self.path):
            rel = Path(root).relative_to(self.path)
            for d in list(dirs):
                name = (rel / d).as_posix()
                if os.path.islink(os.path.join(root, d)):
                    dirs.remove(d)
                    names.append(d)
                elif name not in parents:
                    dirs.remove(d)
                    found.append(name + "/")
            found += [(rel / n).as_posix() for n in names if (rel / n).as_posix() not in self.files]
        return sorted(found)

    # ------------------------------------------------------------------ refusals
    def check(self, names: Iterable[str]) -> None:
        """Refuse to write ``names`` when one exists and is foreign, or is the tool's and
        ``overwrite`` is off (unless this object wrote it)."""
        for name in names:
            target = self.path / name
            if not os.path.lexists(target):
                continue
            if name in self.changed:
                raise OutputRefusedError(
                    f"{target} was changed after {self.who} wrote it (it is not the file "
                    f"{self.manifest} records): refusing to replace it; choose another {self.flag}"
                )
            if name not in self.files:
                raise OutputRefusedError(
                    f"{target} exists and was not written by {self.who}: refusing to replace it; "
                    f"choose another {self.flag}"
                )
            if not self.overwrite and name not in self._written:
                raise OutputRefusedError(
                    f"{target} exists (an earlier run of {self.who} wrote it): pass --overwrite "
                    f"to replace {self.who}'s own outputs"
                )

    def check_inputs(self, inputs: Iterable, outputs: Iterable[str] = ()) -> None:
        """Refuse when the folder is one of the ``inputs`` folders, or one of the ``outputs``
        (names in the folder) is one of the ``inputs`` files (links and hard links included)."""

        def key(path):
            st = os.stat(path)
            return st.st_dev, st.st_ino

        given = [Path(p) for p in inputs if p is not None and os.path.exists(p)]
        seen = {key(p): p for p in reversed(given)}
        if self.path.exists() and key(self.path) in seen:
            raise OutputRefusedError(
                f"{self.flag} {self.path} is the input folder {seen[key(self.path)]}: the outputs "
                f"would mix with (or replace) the inputs; choose another {self.flag}"
            )
        for target in (self.path / name for name in outputs):
            if target.exists() and key(target) in seen:
                raise OutputRefusedError(
                    f"{target} would be written over the input file {seen[key(target)]}: choose "
                    f"another {self.flag}"
                )

    def check_replace(self) -> bool:
        """Whether a whole new folder (:meth:`staged`) will replace one: False when there is
        none or it is empty, True when it may (``overwrite``, and every entry is the tool's);
        refused otherwise."""
        self.reload()
        if not self.path.is_dir() or not any(self.path.iterdir()):
            return False
        if not self.overwrite:
            raise OutputRefusedError(
                f"{self.flag} {self.path} is not empty; choose a new folder, or pass --overwrite "
                f"to replace what {self.who} wrote there"
            )
        foreign = self.foreign()
        if foreign:
            raise OutputRefusedError(
                f"{self.flag} {self.path} was not written by {self.who} (it holds {foreign[:3]}, "
                f"which {self.who} did not write): --overwrite replaces only {self.who}'s own "
                "output; choose a new or empty folder"
            )
        return True

    # ------------------------------------------------------------------ writing
    @contextmanager
    def write(self, name: str, mode: Optional[str] = "w", record: Optional[dict] = None):
        """``with folder.write(name) as f:`` (``mode=None``: the temporary path) writes
        ``<folder>/<name>`` atomically (:func:`atomic_write`) after :meth:`check`, then records
        it in the manifest with ``record`` and its size and modification time (:data:`STAMP`)."""
        self.check([name])
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(target, mode) as f:
            yield f
            if not self._saved:  # an earlier run's "complete": true goes before a file is replaced
                self._save(self.path)
        self._written.add(name)
        self.files[name] = {**(record or {}), STAMP: _stamp(target)}
        self._save(self.path)

    def claim(self, **info) -> None:
        """Create the folder and write the manifest now (``"complete": false``), before files the
        tool does not write through this object (a trainer's checkpoints) appear in it."""
        self.info.update(info)
        self.path.mkdir(parents=True, exist_ok=True)
        self._save(self.path)

    def finish(self, **info) -> None:
        """The run is done: the manifest is written with ``info`` and ``"complete": true``."""
        self.info.update(info)
        self.complete = True
        self._save(self.path)

    @contextmanager
    def staged(self) -> Iterator[Path]:
        """
        ``with folder.staged() as tmp:`` fills ``tmp`` (a hidden sibling, :func:`staged_dir`)
        with the whole folder; when the block ends, the manifest (every file of ``tmp`` with its
        size and SHA-256, the ``info`` set meanwhile, ``"complete": true``) is written into it and
        it is renamed to the
        folder. An existing non-empty folder is replaced only as :meth:`check_replace` allows,
        checked again just before the rename. On error the folder is unchanged.
        """
        replace = self.check_replace()
        with staged_dir(self.path, self.tool, replace=replace) as tmp:
            yield tmp
            if replace:
                self.check_replace()  # nothing of the user's appeared there meanwhile
            names = sorted(
                (Path(root) / n).relative_to(tmp).as_posix()
                for root, _, files in os.walk(tmp)
                for n in files
            )
            self.files = {
                n: {STAMP: _stamp(tmp / n, content=True)}
                for n in names
                if n not in (STAGING_MARKER, self.manifest)
            }
            self.complete = True
            self._save(tmp)

    def _save(self, folder: Path) -> None:
        if not self.manifest:
            return
        files = {n: r for n, r in self.files.items() if n != self.manifest}
        info = {k: v for k, v in self.info.items() if k not in _MANIFEST_KEYS}
        record = {"tool": self.tool, **info, "complete": self.complete, "files": files}
        with atomic_write(folder / self.manifest) as f:
            json.dump(record, f, indent=1)
        self.files[self.manifest] = {}
        self._saved = True
