"""
No command writes over an input or deletes what it did not create: the demo's output planning and
the SIRST-5K synthesis tool's --overwrite, checked byte for byte on disk.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import CONFIGS, REPO_ROOT

from ir_d2.data.ir_datasets.synthetic import make_synthetic_frame
from ir_d2.tools import demo, synthesize_sirst5k
from ir_d2.utils.cli import CommandLineError
from ir_d2.utils.staging import STAGING_MARKER, atomic_write, clean_stale_staging, staged_dir

IRSTD_CFG = str(CONFIGS / "quick_schedules" / "irstd_unet_sirst_instant_test.yaml")


def _snapshot(root: Path):
    """Every file under ``root`` with its content hash (hidden files included)."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _frames(folder: Path, n=3, size=64):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        image, _, _ = make_synthetic_frame(rng, size, size)
        path = folder / f"frame{i}.png"
        cv2.imwrite(str(path), image)
        paths.append(path)
    return paths


def _video(path: Path, n=8, size=64):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (size, size))
    rng = np.random.default_rng(1)
    for _ in range(n):
        image, _, _ = make_synthetic_frame(rng, size, size)
        writer.write(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


def _count_frames(path: Path) -> int:
    video, n = cv2.VideoCapture(str(path)), 0
    while video.read()[0]:
        n += 1
    video.release()
    return n


def _demo(inputs, output, *extra):
    argv = ["--config-file", IRSTD_CFG, "--input", *map(str, inputs), "--output", str(output)]
    return demo.main([*argv, *extra])


# ----------------------------------------------------------------------------- demo
def test_demo_refuses_its_input_folder_as_output_and_changes_nothing(tmp_path):
    data = tmp_path / "data"
    _frames(data)
    _video(data / "clip.mp4")
    before = _snapshot(tmp_path)
    for inputs in ([data], [data / "frame0.png"], [data / "clip.mp4"]):
        with pytest.raises(CommandLineError) as e:
            _demo(inputs, data)
        message = str(e.value)
        assert "\n" not in message and "--output" in message and str(data) in message
    assert _snapshot(tmp_path) == before
    assert _count_frames(data / "clip.mp4") == 8


def test_demo_never_replaces_a_file_it_did_not_write(tmp_path):
    frames = _frames(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    (out / "frame1.png").write_bytes(b"the user's own picture")
    before = _snapshot(tmp_path)
    with pytest.raises(CommandLineError, match="was not written by the demo"):
        _demo(frames, out)
    assert _snapshot(tmp_path) == before  # checked before anything was written
    # two inputs with one output name are refused too
    other = tmp_path / "other"
    _frames(other, n=1)
    with pytest.raises(CommandLineError, match="would both write"):
        _demo([frames[0], other / "frame0.png"], tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


def test_demo_replaces_its_own_outputs_only_with_overwrite(tmp_path):
    frames = _frames(tmp_path / "in", n=2)
    out = tmp_path / "out"
    written = _demo(frames, out)
    assert written == [str(out / "frame0.png"), str(out / "frame1.png")]
    manifest = json.loads((out / demo.MANIFEST).read_text())
    assert manifest["tool"] == "ir_d2.tools.demo" and manifest["complete"] is True
    assert set(manifest["files"]) == {"frame0.png", "frame1.png"}
    assert manifest["files"]["frame0.png"]["input"] == str(frames[0].resolve())
    assert not list(out.glob(".*"))  # no temporary file left
    before = _snapshot(out)
    with pytest.raises(CommandLineError, match="--overwrite"):
        _demo(frames, out)
    assert _snapshot(out) == before
    # --opts and trailing KEY VALUE pairs are the same overrides
    assert _demo(frames, out, "--overwrite", "--opts", "MODEL.IRSTD.THRESHOLD", "0.9") == written
    assert _demo([*frames, "MODEL.IRSTD.THRESHOLD", "0.9"], out, "--overwrite") == written
    # the manifest of an older version ("outputs", not "files") is still the demo's
    older = {"tool": "ir_d2.tools.demo", "outputs": {"frame0.png": {}, "frame1.png": {}}}
    (out / demo.MANIFEST).write_text(json.dumps(older))
    assert _demo(frames, out, "--overwrite") == written
    assert set(json.loads((out / demo.MANIFEST).read_text())["files"]) == {
        "frame0.png",
        "frame1.png",
    }
    # a foreign manifest makes the folder off-limits
    (out / demo.MANIFEST).write_text("{}")
    before = _snapshot(out)
    with pytest.raises(CommandLineError, match="not the demo's record"):
        _demo(frames, out, "--overwrite")
    assert _snapshot(out) == before


def test_demo_reports_a_bad_frame_and_goes_on(tmp_path):
    frames = _frames(tmp_path / "in", n=3)
    frames[1].write_bytes(b"not a png")
    out = tmp_path / "out"
    written, failures = demo.run(
        ["--config-file", IRSTD_CFG, "--input", str(tmp_path / "in"), "--output", str(out)]
    )
    assert written == [str(out / "frame0.png"), str(out / "frame2.png")]
    assert [p for p, _ in failures] == [frames[1]] and "frame1.png" in failures[0][1]
    with pytest.raises(CommandLineError, match="1 of 3 inputs failed"):
        _demo([tmp_path / "in"], tmp_path / "out_again")


def test_demo_video_keeps_the_input_and_writes_a_complete_output(tmp_path):
    video = _video(tmp_path / "clip.mp4")
    out = tmp_path / "out"
    assert _demo([video], out) == [str(out / "clip.mp4")]
    assert _count_frames(video) == 8 and _count_frames(out / "clip.mp4") == 8
    assert sorted(p.name for p in out.iterdir()) == ["clip.frames.csv", "clip.mp4", demo.MANIFEST]


# ----------------------------------------------------------------------------- file helpers
def test_atomic_write_leaves_nothing_half_written(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
    with atomic_write(target) as f:
        f.write("new")
    assert target.read_text() == "new" and len(list(tmp_path.iterdir())) == 1


def test_staged_dir_replaces_only_when_asked_and_cleans_dead_runs(tmp_path):
    final = tmp_path / "set"
    with staged_dir(final, "tool") as tmp:
        (tmp / "x").write_text("1")
    assert sorted(p.name for p in final.iterdir()) == ["x"]
    with pytest.raises(FileExistsError):
        with staged_dir(final, "tool") as tmp:
            (tmp / "y").write_text("2")
    assert sorted(p.name for p in final.iterdir()) == ["x"]
    # a dead run's folder of this tool is removed; another tool's and a live one's are kept
    dead = tmp_path / ".set.tmp-999999991"
    dead.mkdir()
    (dead / STAGING_MARKER).write_text(
        json.dumps({"tool": "tool", "pid": 999999991, "host": os.uname().nodename})
    )
    live = tmp_path / f".set.tmp-{os.getpid()}x"
    live.mkdir()
    (live / STAGING_MARKER).write_text(
        json.dumps({"tool": "tool", "pid": os.getpid(), "host": os.uname().nodename})
    )
    unknown = tmp_path / ".set.tmp-123"
    unknown.mkdir()
    assert clean_stale_staging(final, "tool") == [dead]
    assert live.is_dir() and unknown.is_dir() and not dead.exists()


# ----------------------------------------------------------------------------- synthesis tool
@pytest.fixture
def synthetic_train():
    """The built-in synthetic set's training records (generated into the cache on first use)."""
    from detectron2.data import DatasetCatalog

    return DatasetCatalog.get("ir_synthetic_train")


def _synthesize(out, *extra):
    return synthesize_sirst5k.main(
        ["--dataset", "ir_synthetic_train", "--out", str(out), "--no-progress", *extra]
    )


def test_synthesis_overwrite_refuses_a_folder_it_did_not_write(synthetic_train, tmp_path):
    # a datasets root with copies of real sets: --overwrite must not touch it
    root = tmp_path / "datasets"
    for name in ("sirst/images", "sirst/50_50", "nudt-sirst/masks"):
        (root / name).mkdir(parents=True)
    (root / "sirst/images/Misc_1.png").write_bytes(b"frame")
    (root / "sirst/50_50/test.txt").write_text("Misc_1\n")
    (root / "nudt-sirst/masks/000001.png").write_bytes(b"mask")
    before = _snapshot(tmp_path)
    with pytest.raises(SystemExit) as e:
        _synthesize(root, "--per-image", "0", "--overwrite")
    assert "was not written by this tool" in str(e.value) and "\n" not in str(e.value)
    assert _snapshot(tmp_path) == before


def test_synthesis_overwrite_replaces_its_own_set_only(synthetic_train, tmp_path):
    out = tmp_path / "s5k"
    _synthesize(out, "--per-image", "0.05")
    first = _snapshot(out)
    assert json.loads((out / "synthesis.json").read_text())["tool"] == synthesize_sirst5k.TOOL
    # its own set is replaced with --overwrite (new seed, new content)
    _synthesize(out, "--per-image", "0.05", "--seed", "5", "--overwrite")
    second = _snapshot(out)
    assert second.keys() == first.keys() and second != first
    # once the user adds a file, the folder is no longer only the tool's: refused, kept
    (out / "images" / "my_frame.png").write_bytes(b"mine")
    (out / "notes.txt").write_text("mine")
    before = _snapshot(out)
    with pytest.raises(SystemExit, match="not written by this tool"):
        _synthesize(out, "--per-image", "0", "--overwrite")
    assert _snapshot(out) == before
    assert not list(tmp_path.glob(".*"))


def test_synthesis_overwrite_recognises_the_sets_of_older_versions(synthetic_train, tmp_path):
    out = tmp_path / "s5k"
    _synthesize(out, "--per-image", "0")
    meta = json.loads((out / "synthesis.json").read_text())
    stem = Path(synthetic_train[0]["file_name"]).stem
    assert meta["complete"] is True and len(meta["files"]) == 2 * len(synthetic_train) + 1
    assert {f"images/{stem}.png", f"masks/{stem}.png", "50_50/train.txt"} <= set(meta["files"])
    # synthesis.json as the first versions wrote it: no file list (and, at first, no "tool")
    older = {k: v for k, v in meta.items() if k not in ("files", "complete")}
    for record in (older, {k: v for k, v in older.items() if k != "tool"}):
        (out / "synthesis.json").write_text(json.dumps(record))
        _synthesize(out, "--per-image", "0", "--overwrite")
        assert "files" in json.loads((out / "synthesis.json").read_text())
    # an older set with a frame its train.txt does not list is not the tool's alone
    (out / "synthesis.json").write_text(json.dumps(older))
    (out / "masks" / "extra.png").write_bytes(b"mine")
    before = _snapshot(out)
    with pytest.raises(SystemExit, match="was not written by this tool .*masks/extra.png"):
        _synthesize(out, "--per-image", "0", "--overwrite")
    assert _snapshot(out) == before


def test_the_other_tools_recognise_what_their_older_versions_wrote(tmp_path):
    from ir_d2.tools import export_model, quickstart
    from ir_d2.utils.fileio import OutputRefusedError

    # quickstart.json of an older version: the folder is the quickstart's, its results its own
    run = tmp_path / "quick"
    (run / "overlays").mkdir(parents=True)
    (run / "quickstart.json").write_text('{"tool": "ir_d2.tools.quickstart", "data": "x"}')
    for name in ("results.json", "overlays/f.png", "model_final.pth"):
        (run / name).write_bytes(b"x")
    folder = quickstart.output_folder(run)
    assert {"results.json", "overlays/f.png", "quickstart.json"} <= set(folder.files)
    folder.check(["results.json", "overlays/f.png"])
    (run / "quickstart.json").write_text('{"tool": "my own notes"}')
    with pytest.raises(OutputRefusedError, match="not the quickstart's record"):
        quickstart.output_folder(run)
    # ir_d2_export.json of an older version: the export's files need --overwrite, and get it
    export = tmp_path / "export"
    export.mkdir()
    (export / "ir_d2_export.json").write_text('{"tool": "ir_d2.tools.export_model"}')
    (export / "model.onnx").write_bytes(b"onnx")
    with pytest.raises(OutputRefusedError, match="pass --overwrite"):
        export_model.output_folder(export, "model.onnx")
    assert set(export_model.output_folder(export, "model.onnx", overwrite=True).files) == {
        "ir_d2_export.json",
        "model.onnx",
    }
    # a record that names its model file: the other format's file there is not the tool's
    (export / "ir_d2_export.json").write_text(
        '{"tool": "ir_d2.tools.export_model", "format": "onnx", "file": "model.onnx"}'
    )
    (export / "model.ts").write_bytes(b"the user's own TorchScript")
    with pytest.raises(OutputRefusedError, match="model.ts exists and was not written by"):
        export_model.output_folder(export, "model.ts", overwrite=True)
    assert (export / "model.ts").read_bytes() == b"the user's own TorchScript"


def test_synthesis_killed_with_sigkill_leaves_a_folder_the_next_run_removes(
    synthetic_train, tmp_path
):
    out = tmp_path / "s5k"
    cmd = [sys.executable, "-m", "ir_d2.tools.synthesize_sirst5k", "--dataset"]
    cmd += ["ir_synthetic_train", "--out", str(out), "--per-image", "20", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    staging = tmp_path / f".s5k.tmp-{proc.pid}"
    deadline = time.time() + 120
    while time.time() < deadline and not (staging / "images").is_dir():
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.05)
    time.sleep(0.5)  # some frames written
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    assert staging.is_dir() and not out.exists()  # half-written: not under the final name
    _synthesize(out, "--per-image", "0")
    assert not staging.exists() and out.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s5k"]


# ----------------------------------------------------------------------------- masks_to_coco
def test_masks_to_coco_never_writes_over_a_json_it_did_not_write(tmp_path, capsys):
    from ir_d2.tools.masks_to_coco import main as masks_to_coco

    images = tmp_path / "images"
    frames = _frames(images, n=2)
    masks = tmp_path / "masks"
    masks.mkdir()
    for f in frames:
        mask = np.zeros((64, 64), np.uint8)
        mask[10:13, 20:23] = 255
        cv2.imwrite(str(masks / f.name), mask)
    annotations = tmp_path / "instances.json"
    annotations.write_text('{"images": [], "annotations": [], "note": "hand-made"}')
    before = _snapshot(tmp_path)
    for extra in ([], ["--overwrite"]):
        with pytest.raises(CommandLineError, match="was not written by masks_to_coco") as e:
            masks_to_coco([str(images), str(masks), str(annotations), *extra])
        assert str(annotations) in str(e.value) and "\n" not in str(e.value)
    # the split list named as the output is an input
    split = tmp_path / "split.txt"
    split.write_text("frame0\n")
    with pytest.raises(CommandLineError, match="would be written over the input file"):
        masks_to_coco([str(images), str(masks), str(split), "--split", str(split), "--overwrite"])
    assert split.read_text() == "frame0\n"
    split.unlink()
    assert _snapshot(tmp_path) == before
    out = tmp_path / "out.json"
    assert len(masks_to_coco([str(images), str(masks), str(out)])["annotations"]) == 2
    with pytest.raises(CommandLineError, match="--overwrite"):  # exists: needs --overwrite
        masks_to_coco([str(images), str(masks), str(out)])
    masks_to_coco([str(images), str(masks), str(out), "--overwrite"])
    assert len(json.loads(out.read_text())["annotations"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "images",
        "instances.json",
        "masks",
        "out.json",
    ]
