"""
Writing outputs without ever losing a user's data (pure Python: no detectron2, no torch).

:class:`OutputFolder` is the one mechanism through which the ir_d2 tools and benchmarks write. A
file is the tool's when its *manifest* in the folder lists it (``{"tool", <info>, "complete",
"files": {name: record}}``) or its ``recognise`` function names it (files marked inside, outputs
of older versions); any other file is *foreign*. Before anything is written, it refuses
(:class:`OutputRefusedError`) to replace a foreign file, or the tool's own without ``overwrite``;
to write into a folder whose manifest name holds something else, into an ``exclusive`` folder
that is not empty and not the tool's, or over an input. Each file is written under a temporary
name, renamed when complete, then recorded in the manifest, written last (``"complete": true``
at the end of the run); a whole folder (:meth:`OutputFolder.staged`) is filled as a hidden
sibling ``.<name>.tmp-<pid>`` (:func:`staged_dir`) and renamed when complete. So a half-written
output never looks complete. Such a sibling left by a run killed with SIGKILL is removed by the
next run when its process is dead on this host (:func:`clean_stale_staging`). A tool's ``main``
turns a refusal into one line (:func:`ir_d2.utils.cli.one_line_errors`).
"""

import json
import logging
import os
import shutil
import socket
import time
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Union

__all__ = [
    "OutputFolder",
    "OutputRefusedError",
    "atomic_write",
    "staged_dir",
    "clean_stale_staging",
    "STAGING_MARKER",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
#: File inside a staging folder that says which tool, process and host are filling it.
STAGING_MARKER = ".ir_d2_staging.json"


@contextmanager
def atomic_write(path: PathLike, mode: str = "w") -> Iterator:
    """
    ``with atomic_write(path) as f:`` writes ``f`` as ``.<name>.tmp-<pid><suffix>`` beside
    ``path`` and renames it to ``path`` when the block ends without error (removing it on error).
    The suffix is kept, so writers that pick a format by extension work on the temporary name too:
    ``with atomic_write(path, mode=None) as tmp_path:`` yields the temporary path itself instead of
    an open file.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        if mode is None:
            yield tmp
        else:
            with open(tmp, mode) as f:
                yield f
        if not tmp.exists():
            raise OSError(f"nothing was written to {path}")
        os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def clean_stale_staging(final: PathLike, tool: str) -> List[Path]:
    """
    Remove the staging siblings ``.<name>.tmp-<pid>`` (and ``.<name>.old-<pid>``, a replaced
    output not yet removed) of ``final`` that ``tool`` left behind in a run that died (its marker
    names this host and a pid that no longer runs). Staging folders of live runs, of other hosts,
    or without a readable marker are left alone, and a warning names each. Returns the folders
    removed.
    """
    final = Path(final)
    removed = []
    if not final.parent.is_dir():
        return removed
    siblings = [*final.parent.glob(f".{final.name}.tmp-*")]
    siblings += final.parent.glob(f".{final.name}.old-*")
    for path in sorted(siblings):
        if not path.is_dir():
            continue
        try:
            marker = json.loads((path / STAGING_MARKER).read_text())
            pid, host = int(marker["pid"]), marker["host"]
            owner = marker["tool"]
        except (OSError, ValueError, KeyError, TypeError):
            logger.warning(
                f"{path} looks like the temporary folder of an interrupted run but has no "
                f"{STAGING_MARKER}: not removed; delete it by hand if no run is using it"
            )
            continue
        if owner != tool or host != socket.gethostname() or _pid_alive(pid):
            logger.warning(
                f"{path} is the temporary folder of another run ({owner}, pid {pid} on {host}); "
                "left alone"
            )
            continue
        shutil.rmtree(path)
        removed.append(path)
        logger.info(f"removed {path}, the temporary folder of a run that was killed (pid {pid})")
    return removed


@contextmanager
def staged_dir(final: PathLike, tool: str, replace: bool = False) -> Iterator[Path]:
    """
    ``with staged_dir(out, "my_tool") as tmp:`` fills ``tmp`` (``.<name>.tmp-<pid>`` beside
    ``out``, created with a :data:`STAGING_MARKER`), then, when the block ends without error,
    renames it to ``out``. If ``out`` exists it must be an empty folder, or ``replace=True`` (the
    caller has checked that ``out`` is ``tool``'s own output): the old folder is then moved aside
    and removed only after the new one is in place. On error the staging folder is removed and
    ``out`` is unchanged. Stale staging folders of killed runs are cleaned first
    (:func:`clean_stale_staging`).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_staging(final, tool)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    if tmp.exists():  # this very process, in an earlier call that was interrupted
        shutil.rmtree(tmp)
    tmp.mkdir()
    marker = {"tool": tool, "pid": os.getpid(), "host": socket.gethostname(), "start": time.time()}
    (tmp / STAGING_MARKER).write_text(json.dumps(marker))
    try:
        yield tmp
        (tmp / STAGING_MARKER).unlink()
        if final.exists() and not (final.is_dir() and not any(final.iterdir())):
            if not replace:
                raise FileExistsError(f"{final} exists and is not empty")
            old = final.parent / f".{final.name}.old-{os.getpid()}"
            final.rename(old)
            (old / STAGING_MARKER).write_text(json.dumps(marker))  # stale if killed right here
            tmp.rename(final)
            shutil.rmtree(old)
        else:
            if final.exists():
                final.rmdir()  # empty
            tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class OutputRefusedError(ValueError):
    """Writing there could lose a user's data (a foreign file, an input); nothing was written."""


#: keys of a manifest that are not the tool's ``info``
_MANIFEST_KEYS = ("tool", "complete", "files")


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

    Attributes: ``files`` (name -> record: the tool's files present in the folder), ``info``
    (the tool's own keys of its manifest, e.g. its arguments).
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
        self._written = set()  # names this object wrote (replaced again without ``overwrite``)
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
        self.files = {n: r for n, r in files.items() if os.path.lexists(self.path / n)}
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
        it in the manifest with ``record``."""
        self.check([name])
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(target, mode) as f:
            yield f
        self._written.add(name)
        self.files[name] = dict(record or {})
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
        with the whole folder; when the block ends, the manifest (every file of ``tmp``, the
        ``info`` set meanwhile, ``"complete": true``) is written into it and it is renamed to the
        folder. An existing non-empty folder is replaced only as :meth:`check_replace` allows,
        checked again just before the rename. On error the folder is unchanged.
        """
        replace = self.check_replace()
        with staged_dir(self.path, self.tool, replace=replace) as tmp:
            yield tmp
            if replace:
                self.check_replace()  # nothing of the user's appeared there meanwhile
            self.files = {
                (Path(root).relative_to(tmp) / n).as_posix(): {}
                for root, _, names in os.walk(tmp)
                for n in names
                if not (root == str(tmp) and n == STAGING_MARKER)
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
