"""
OutputFolder (ir_d2.utils.fileio), the one way the tools write: foreign files are never replaced,
the tool's own only with overwrite, a half-written output never looks complete, an exclusive folder
must be the tool's, inputs are never outputs. Each tool's use of it: test_no_data_loss.py.
"""

import hashlib
import json
import os

import pytest

from ir_d2.utils import fileio
from ir_d2.utils.fileio import STAMP, OutputFolder, OutputRefusedError

TOOL = "tests.tool"


def _snapshot(root):
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _folder(path, **kwargs):
    return OutputFolder(path, TOOL, manifest="tool.json", who="the tool", **kwargs)


def _manifest(path, stamps=False):
    """The manifest in ``path``; without ``stamps``, its records without the ``"written"`` key."""
    manifest = json.loads((path / "tool.json").read_text())
    if not stamps:
        for record in manifest["files"].values():
            record.pop(STAMP)
    return manifest


def test_a_file_is_recorded_only_once_complete_and_the_run_marked_complete_last(tmp_path):
    out = tmp_path / "out"
    folder = _folder(out)
    with pytest.raises(RuntimeError):
        with folder.write("a.txt") as f:
            f.write("half")
            raise RuntimeError("killed")
    assert list(out.iterdir()) == []  # nothing half-written is left
    with folder.write("a.txt", record={"input": "x.png"}) as f:
        f.write("one")
        assert not (out / "a.txt").exists() and not (out / "tool.json").exists()
    assert (out / "a.txt").read_text() == "one"
    assert _manifest(out) == {
        "tool": TOOL,
        "complete": False,
        "files": {"a.txt": {"input": "x.png"}},
    }
    with folder.write("sub/b.png", mode=None) as tmp:
        tmp.write_bytes(b"png")
        assert tmp.parent == out / "sub" and tmp.name.startswith(".b.tmp-")
    folder.finish(note="done")
    manifest = _manifest(out)
    assert manifest["complete"] is True and manifest["note"] == "done"
    assert list(manifest["files"]) == ["a.txt", "sub/b.png"]
    assert sorted(p.name for p in out.rglob("*")) == ["a.txt", "b.png", "sub", "tool.json"]


def test_foreign_files_are_never_replaced_and_its_own_only_with_overwrite(tmp_path):
    folder = _folder(tmp_path)
    with folder.write("mine.txt") as f:
        f.write("1")
    (tmp_path / "theirs.txt").write_text("user")
    before = _snapshot(tmp_path)
    for overwrite in (False, True):
        again = _folder(tmp_path, overwrite=overwrite)
        with pytest.raises(OutputRefusedError, match="theirs.txt exists and was not written by"):
            again.check(["theirs.txt"])
        with pytest.raises(OutputRefusedError, match="not written by the tool"):
            with again.write("theirs.txt") as f:
                f.write("x")
    with pytest.raises(OutputRefusedError, match="pass --overwrite"):
        _folder(tmp_path).check(["mine.txt"])
    assert _snapshot(tmp_path) == before
    with _folder(tmp_path, overwrite=True).write("mine.txt") as f:
        f.write("2")
    assert (tmp_path / "mine.txt").read_text() == "2" and (
        tmp_path / "theirs.txt"
    ).read_text() == "user"
    # what one object wrote it may write again without overwrite (a video's two outputs)
    with folder.write("mine.txt") as f:
        f.write("3")
    # a manifest that lists a file no longer there does not make that name the tool's
    (tmp_path / "mine.txt").unlink()
    assert "mine.txt" not in _folder(tmp_path).files


@pytest.mark.parametrize(
    "content", ["{}", "not json", '{"tool": "other", "files": {}}', '{"tool": "tests.tool"}']
)
def test_a_foreign_file_under_the_manifests_name_makes_the_folder_off_limits(tmp_path, content):
    (tmp_path / "tool.json").write_text(content)
    with pytest.raises(OutputRefusedError, match="is not the tool's record of its outputs"):
        _folder(tmp_path, overwrite=True)
    assert (tmp_path / "tool.json").read_text() == content
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputRefusedError, match="file is a file, not a folder"):
        _folder(tmp_path / "file")


def test_older_versions_and_self_marked_files_are_recognised(tmp_path):
    # an older version's marker (no "files") that the tool's recogniser reads
    (tmp_path / "tool.json").write_text('{"tool": "tests.tool", "version": 1}')
    (tmp_path / "old.txt").write_text("old")
    (tmp_path / "user.txt").write_text("user")

    def older(folder):
        return ["tool.json", "old.txt"] if "version" in (folder / "tool.json").read_text() else None

    folder = _folder(tmp_path, recognise=older, overwrite=True)
    assert set(folder.files) == {"tool.json", "old.txt"} and folder.foreign() == ["user.txt"]
    with folder.write("old.txt") as f:
        f.write("new")
    assert set(_manifest(tmp_path)["files"]) == {"old.txt"}  # now in the current format
    # no manifest at all: files that carry their own mark
    marked = tmp_path / "reports"
    marked.mkdir()
    (marked / "r.json").write_text('{"tool": "tests.tool"}')
    (marked / "s.json").write_text('{"tool": "other"}')

    def own(folder):
        return [p.name for p in folder.glob("*.json") if json.loads(p.read_text())["tool"] == TOOL]

    reports = OutputFolder(marked, TOOL, recognise=own, overwrite=True)
    reports.check(["r.json"])
    with pytest.raises(OutputRefusedError, match="s.json exists and was not written by tests.tool"):
        reports.check(["s.json"])
    with reports.write("r.json") as f:
        f.write('{"tool": "tests.tool", "n": 2}')
    assert sorted(p.name for p in marked.iterdir()) == ["r.json", "s.json"]  # no manifest added


def test_an_exclusive_folder_must_be_new_empty_or_the_tools(tmp_path):
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "notes.txt").write_text("x")
    with pytest.raises(OutputRefusedError, match="is not empty and was not written by the tool"):
        _folder(tmp_path / "user", exclusive=True)
    (tmp_path / "empty").mkdir()
    claimed = _folder(tmp_path / "empty", exclusive=True)
    claimed.claim(config="c.yaml")
    (tmp_path / "empty" / "checkpoint.pth").write_bytes(b"a trainer's file")
    again = _folder(tmp_path / "empty", exclusive=True, overwrite=True)
    assert again.info == {"config": "c.yaml"} and _manifest(tmp_path / "empty")["complete"] is False
    _folder(tmp_path / "new", exclusive=True).claim()
    assert (tmp_path / "new" / "tool.json").is_file()


def test_a_staged_folder_replaces_only_a_folder_entirely_the_tools(tmp_path):
    out = tmp_path / "set"
    with _folder(out, exclusive=True).staged() as tmp:
        (tmp / "images").mkdir()
        (tmp / "images" / "a.png").write_bytes(b"a")
        assert not out.exists()  # only under the temporary name while it is filled
    assert _manifest(out) == {"tool": TOOL, "complete": True, "files": {"images/a.png": {}}}
    digest = hashlib.sha256(b"a").hexdigest()  # a set's record does not depend on when it was made
    assert _manifest(out, stamps=True)["files"]["images/a.png"] == {STAMP: [1, f"sha256:{digest}"]}
    first = _snapshot(out)
    with pytest.raises(OutputRefusedError, match="not empty; choose a new folder, or pass --over"):
        _folder(out, exclusive=True).check_replace()
    replacing = _folder(out, exclusive=True, overwrite=True)
    with replacing.staged() as tmp:
        (tmp / "b.png").write_bytes(b"b")
        replacing.info = {"seed": 2}
    assert _manifest(out) == {"tool": TOOL, "seed": 2, "complete": True, "files": {"b.png": {}}}
    assert not (out / "images").exists()
    # a file or an empty folder of the user's in it: never replaced, even with overwrite
    for extra in ("notes.txt", "mine/"):
        path = out / extra.rstrip("/")
        path.mkdir() if extra.endswith("/") else path.write_text("u")
        before = _snapshot(out)
        with pytest.raises(OutputRefusedError, match=f"holds \\['{extra}'\\], which the tool did"):
            with _folder(out, exclusive=True, overwrite=True).staged() as tmp:
                (tmp / "c.png").write_bytes(b"c")
        assert _snapshot(out) == before and path.exists()
        path.rmdir() if extra.endswith("/") else path.unlink()
    # a user's file that appears while the new folder is filled: checked again before the rename
    with pytest.raises(OutputRefusedError, match="late.txt"):
        with _folder(out, exclusive=True, overwrite=True).staged() as tmp:
            (tmp / "d.png").write_bytes(b"d")
            (out / "late.txt").write_text("u")
    assert sorted(p.name for p in out.iterdir()) == ["b.png", "late.txt", "tool.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]  # no temporary folder left
    assert first != _snapshot(out)


def test_inputs_are_never_outputs(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.png").write_bytes(b"frame")
    os.link(data / "a.png", tmp_path / "hard.png")
    (tmp_path / "link").symlink_to(data)
    with pytest.raises(OutputRefusedError, match="is the input folder"):
        _folder(tmp_path / "link").check_inputs([data])
    with pytest.raises(OutputRefusedError, match="hard.png would be written over the input file"):
        _folder(tmp_path).check_inputs([data / "a.png"], outputs=["hard.png"])
    _folder(tmp_path / "out").check_inputs([data, data / "a.png"], outputs=["a.png"])
    _folder(tmp_path).check_inputs([data / "a.png"], outputs=["b.png"])


def test_a_listed_file_the_user_replaced_or_edited_is_no_longer_the_tools(tmp_path):
    folder = _folder(tmp_path)
    for name in ("a.txt", "b.txt", "c.txt"):
        with folder.write(name) as f:
            f.write("tool")
    assert _manifest(tmp_path, stamps=True)["files"]["a.txt"][STAMP][0] == 4
    (tmp_path / "a.txt").write_text("the user's notes")  # replaced: another size
    os.utime(tmp_path / "b.txt", ns=(1, 1))  # same size, edited in place (another time)
    (tmp_path / "c.txt").unlink()
    (tmp_path / "c.txt").symlink_to(tmp_path / "b.txt")  # a link of the user's
    before = _snapshot(tmp_path)
    again = _folder(tmp_path, overwrite=True)
    assert again.changed == ["a.txt", "b.txt", "c.txt"] and "a.txt" not in again.files
    for name in again.changed:
        with pytest.raises(OutputRefusedError, match=f"{name} was changed after the tool wrote it"):
            again.check([name])
    assert _snapshot(tmp_path) == before
    # a staged folder replaces a set only as the tool left it
    out = tmp_path / "set"
    with _folder(out, exclusive=True).staged() as tmp:
        (tmp / "m.png").write_bytes(b"mask")
    (out / "m.png").write_bytes(b"MASK")  # edited in place, same size
    before = _snapshot(out)
    with pytest.raises(OutputRefusedError, match="holds \\['m.png'\\]"):
        with _folder(out, exclusive=True, overwrite=True).staged() as tmp:
            (tmp / "n.png").write_bytes(b"n")
    assert _snapshot(out) == before


def test_names_that_leave_the_folder_are_never_the_tools(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "precious.txt").write_text("user")
    files = {"../precious.txt": {}, str(tmp_path / "precious.txt"): {}, "": {}, "ok.txt": {}}
    (out / "ok.txt").write_text("tool")
    (out / "tool.json").write_text(json.dumps({"tool": TOOL, "files": files}))
    assert set(_folder(out).files) == {"ok.txt", "tool.json"}


def test_a_staged_folder_named_by_a_link_replaces_the_folder_and_keeps_the_link(tmp_path):
    real = tmp_path / "real"
    with _folder(real, exclusive=True).staged() as tmp:
        (tmp / "a.png").write_bytes(b"a")
    (tmp_path / "link").symlink_to(real)
    with _folder(tmp_path / "link", exclusive=True, overwrite=True).staged() as tmp:
        (tmp / "b.png").write_bytes(b"b")
    assert (tmp_path / "link").is_symlink() and sorted(p.name for p in real.iterdir()) == [
        "b.png",
        "tool.json",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


def test_an_earlier_complete_run_stops_looking_complete_before_a_file_is_replaced(
    tmp_path, monkeypatch
):
    folder = _folder(tmp_path)
    with folder.write("a.txt") as f:
        f.write("1")
    folder.finish()
    replace = os.replace

    def killed_at_the_rename(src, dst):
        if os.path.basename(dst) == "a.txt":
            raise KeyboardInterrupt
        replace(src, dst)

    monkeypatch.setattr(fileio.os, "replace", killed_at_the_rename)
    with pytest.raises(KeyboardInterrupt):
        with _folder(tmp_path, overwrite=True).write("a.txt") as f:
            f.write("2")
    assert _manifest(tmp_path)["complete"] is False and (tmp_path / "a.txt").read_text() == "1"
