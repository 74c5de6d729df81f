"""
Files and folders that appear complete or not at all (pure Python): a file written under a
temporary name and renamed (:func:`atomic_write`), a folder filled as a hidden sibling and renamed
(:func:`staged_dir`), and the siblings of killed runs cleaned (:func:`clean_stale_staging`). The
tools write through :class:`ir_d2.utils.fileio.OutputFolder`, which uses these.
"""

import json
import logging
import os
import shutil
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Union

__all__ = ["STAGING_MARKER", "atomic_write", "clean_stale_staging", "staged_dir"]

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
        if path.is_symlink() or not path.is_dir():  # never one of ours: rmtree refuses links
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
    if final.is_symlink():  # the folder it names is replaced; the link stays as the user made it
        final = Path(os.path.realpath(final))
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
