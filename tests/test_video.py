"""
Video: the K-of-N temporal filter (closed forms and properties) and the demo streaming a
generated video with per-frame latency and --temporal.
"""

import csv
import json

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ir_d2.tools import demo
from ir_d2.utils.cli import CommandLineError
from ir_d2.utils.temporal import TemporalFilter, parse_k_of_n


def test_a_target_is_reported_once_seen_in_k_of_the_last_n_frames():
    f = TemporalFilter(k=2, n=3, distance=3.0)
    assert f.update([(10, 10)]) == [False]  # seen once
    assert f.update([(11.5, 11.5), (50, 50)]) == [True, False]  # 2.1 px away: seen twice
    assert f.update([(13, 13)]) == [True]  # 2.1 px from the last frame's
    assert f.update([]) == []
    assert f.update([(50, 50)]) == [False]  # (50, 50) three frames ago: out of the window
    f.reset()
    assert f.update([(13, 13)]) == [False]


def test_the_match_distance_is_strict_and_the_current_frame_counts():
    f = TemporalFilter(k=2, n=2, distance=3.0)
    f.update([(0, 0)])
    assert f.update([(3, 0), (0, 2.999)]) == [False, True]
    assert TemporalFilter(1, 5).update([(1, 1), (2, 2)]) == [True, True]


def test_the_gate_grows_with_the_age_of_a_detection_by_the_speed():
    track = [[(10 + 3 * i, 20)] for i in range(4)]  # a target moving 3 px a frame
    still = TemporalFilter(k=2, n=3, distance=3.0)
    assert [still.update(p) for p in track] == [[False]] * 4  # 3 px is not closer than 3
    moving = TemporalFilter(k=2, n=3, distance=3.0, speed=1.0)  # 4 px at age 1, 5 at age 2
    assert [moving.update(p) for p in track] == [[False], [True], [True], [True]]
    # K = N = 3: the detection of 2 frames ago is 6 px away, so the gate at age 2 decides
    tight, loose = TemporalFilter(3, 3, 3.0, speed=1.5), TemporalFilter(3, 3, 3.0, speed=1.6)
    assert [tight.update(p)[0] for p in track] == [False] * 4  # 3 + 1.5 * 2 = 6, not < 6
    assert [loose.update(p)[0] for p in track] == [False, False, True, True]
    with pytest.raises(ValueError, match="speed"):
        TemporalFilter(2, 3, speed=-1)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20)), max_size=4),
        min_size=1,
        max_size=12,
    ),
    st.integers(1, 5),
    st.integers(0, 3),
)
def test_a_stricter_rule_keeps_a_subset(frames, k, extra):
    n = k + extra
    loose, strict = TemporalFilter(max(1, k - 1), n), TemporalFilter(k, n)
    everything = TemporalFilter(1, n)
    for points in frames:
        a, b, c = loose.update(points), strict.update(points), everything.update(points)
        assert all(c) and len(a) == len(b) == len(points)
        assert all(x or not y for x, y in zip(a, b))  # strict => loose


@pytest.mark.parametrize("text", ["3", "0/3", "4/3", "a/b", "2/3/4"])
def test_a_bad_k_of_n_is_refused_naming_the_form(text):
    with pytest.raises(ValueError, match="K/N"):
        parse_k_of_n(text)


def _video(path, n=9, size=64):
    """A target drifting one pixel per frame, and a bright flash in one frame only."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (size, size))
    for i in range(n):
        frame = np.full((size, size), 40, np.uint8)
        cv2.circle(frame, (20 + i, 30), 2, 255, -1)
        if i == 4:
            cv2.circle(frame, (50, 10), 2, 255, -1)
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()


class _Threshold:
    """A stand-in small-target model: bright pixels are targets (no training needed)."""

    def __call__(self, inputs):

        from ir_d2.evaluation import connected_targets

        out = []
        for x in inputs:
            prob = (x["image"].float().mean(0) > 200).float()[None]
            out.append({"sem_seg": prob, "targets": connected_targets(prob[0].numpy(), 0.5)})
        return out


@pytest.fixture
def threshold_net(monkeypatch):
    """IRPredictor with :class:`_Threshold` in place of its net."""
    from ir_d2.engine import IRPredictor

    original = IRPredictor.__init__

    def init(self, cfg):
        original(self, cfg)
        self.model = _Threshold()

    monkeypatch.setattr(IRPredictor, "__init__", init)


def test_the_demo_streams_a_video_with_latency_and_temporal_filtering(tmp_path, threshold_net):
    _video(tmp_path / "clip.mp4")
    config = "ir_d2://quick_schedules/irstd_unet_sirst_instant_test.yaml"
    argv = ["--config-file", config, "--input", str(tmp_path / "clip.mp4")]
    out = tmp_path / "out"
    written = demo.main([*argv, "--output", str(out), "--temporal", "2/3", "MODEL.WEIGHTS", ""])
    assert written == [str(out / "clip.mp4")]
    video = cv2.VideoCapture(written[0])
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 9
    video.release()
    rows = list(csv.DictReader((out / "clip.frames.csv").open()))
    assert [int(r["frame"]) for r in rows] == list(range(9))
    assert all(float(r["latency_ms"]) > 0 for r in rows)
    detected = [int(r["detected"]) for r in rows]
    reported = [int(r["reported"]) for r in rows]
    assert detected == [1, 1, 1, 1, 2, 1, 1, 1, 1]  # the drifting target, and the flash
    assert reported == [0, 1, 1, 1, 1, 1, 1, 1, 1]  # first sighting, and the flash, dropped
    manifest = json.loads((out / "ir_d2_demo.json").read_text())["files"]
    assert {"clip.mp4", "clip.frames.csv"} <= set(manifest)
    # the per-frame table is the demo's own output: replaced only with --overwrite
    with pytest.raises(CommandLineError, match="--overwrite"):
        demo.main([*argv, "--output", str(out), "MODEL.WEIGHTS", ""])
    demo.main([*argv, "--output", str(out), "--overwrite", "MODEL.WEIGHTS", ""])
    assert [
        int(r["reported"]) for r in csv.DictReader((out / "clip.frames.csv").open())
    ] == detected
    with pytest.raises(CommandLineError, match="K/N"):
        demo.main([*argv, "--output", str(out), "--temporal", "5/3", "MODEL.WEIGHTS", ""])
    with pytest.raises(CommandLineError, match="--temporal-speed"):
        demo.main(
            [*argv, "--output", str(out), "--temporal", "2/3", "--temporal-speed", "-1",
             "MODEL.WEIGHTS", ""]
        )  # fmt: skip
    # a clip.frames.csv the demo did not write is never replaced
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "clip.frames.csv").write_text("their table")
    with pytest.raises(CommandLineError, match="not written by the demo"):
        demo.main([*argv, "--output", str(theirs), "MODEL.WEIGHTS", ""])
    assert (theirs / "clip.frames.csv").read_text() == "their table"
    assert sorted(p.name for p in theirs.iterdir()) == ["clip.frames.csv"]


def test_visualization_demo_run_on_video_is_run_on_image_frame_by_frame(tmp_path, threshold_net):
    from ir_d2.engine.defaults import setup_cfg
    from ir_d2.engine.visualization_demo import VisualizationDemo
    from ir_d2.utils.visualizer import draw_small_targets

    _video(tmp_path / "clip.mp4")
    cfg = setup_cfg("ir_d2://quick_schedules/irstd_unet_sirst_instant_test.yaml")
    visualization = VisualizationDemo(cfg)
    temporal = TemporalFilter(2, 3, distance=3.0)
    temporal.update([(0, 0)])  # a filter that has seen frames before: reset by run_on_video
    video = cv2.VideoCapture(str(tmp_path / "clip.mp4"))
    streamed = list(visualization.run_on_video(video, temporal))
    video.release()
    video, frames = cv2.VideoCapture(str(tmp_path / "clip.mp4")), []
    while (frame := video.read())[0]:
        frames.append(frame[1])
    video.release()
    assert len(streamed) == len(frames) == 9
    assert [p["detected"] for p, _ in streamed] == [1, 1, 1, 1, 2, 1, 1, 1, 1]
    assert [len(p["targets"]) for p, _ in streamed] == [0, 1, 1, 1, 1, 1, 1, 1, 1]
    for (predictions, overlay), frame in zip(streamed, frames):
        alone, expected = visualization.run_on_image(frame)
        assert "detected" not in alone
        if len(predictions["targets"]) == len(alone["targets"]):  # the filter kept them all
            np.testing.assert_array_equal(overlay, expected)
        prob = alone["sem_seg"][0].numpy()
        np.testing.assert_array_equal(
            overlay, draw_small_targets(frame, prob, predictions["targets"])
        )
