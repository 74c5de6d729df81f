"""
Mapper throughput (images/s, one worker, CPU) of the IR mappers against detectron2's DatasetMapper
on the same records, measured in one run:

* SIRST frames (mixed modes, ~320x240) through IRSTDDatasetMapper in training (read, binarise,
  flip, brightness, contrast, 256x256 crop) vs DatasetMapper (read, flip);
* 640x512 FLIR frames (RoadScene's, two boxes each) through IRDatasetMapper in training (read,
  resize, flip, brightness, contrast) vs DatasetMapper (read, resize, flip), and the same frames as
  16-bit TIFFs (percentile normalisation).

Goal: the IR mappers cost at most 2x detectron2's mapper (their extra work: the photometric
augmentation, the mask binarisation, the fixed-size crop and, for 16-bit frames, the normalisation).

    python3 benchmarks/bench_mapper.py [--frames 120] [--repeat 3]
"""

import argparse
import os
import tempfile
import time

import numpy as np
from _common import SHARED_DATA, ir_cfg
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.data import transforms as T
from detectron2.structures import BoxMode
from PIL import Image

import ir_d2  # noqa: F401
from ir_d2.data import IRDatasetMapper, IRSTDDatasetMapper

CONFIG = "IR-InstanceSegmentation/mask_rcnn_R_50_FPN_100e_ircoco.yaml"


def images_per_second(mapper, records):
    """len(records) / time, mapping the records one by one."""
    t0 = time.perf_counter()
    for r in records:
        mapper(r)
    return len(records) / (time.perf_counter() - t0)


def compare(title, mappers, records_of, repeat):
    """Median images/s of each mapper; passes interleaved, so drifts of the machine hit all."""
    np.random.seed(0)
    rates = {name: [] for name in mappers}
    for name, mapper in mappers.items():
        mapper(records_of[name][0])  # warm-up
    for _ in range(repeat):
        for name, mapper in mappers.items():
            rates[name].append(images_per_second(mapper, records_of[name]))
    rates = {name: sorted(r)[len(r) // 2] for name, r in rates.items()}
    (b_name, b), *others = rates.items()
    print(f"{title}: {len(records_of[b_name])} frames, median of {repeat}")
    print(f"  {b_name:<34} {b:8.1f} images/s")
    for name, rate in others:
        print(f"  {name:<34} {rate:8.1f} images/s   time ratio {b / rate:.2f}")
    return rates


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not (SHARED_DATA / "sirst").is_dir():
        raise SystemExit(f"needs the real IR data in {SHARED_DATA}")
    os.environ["IR_D2_DATASETS"] = str(SHARED_DATA)

    # SIRST, small-target semantic mapper
    sirst = DatasetCatalog.get("sirst_train")[: args.frames]
    cfg = ir_cfg(CONFIG, ["INPUT.DATASET_MAPPER_NAME", "IRSTDDatasetMapper"])
    ours = IRSTDDatasetMapper(cfg, True)
    flip = [T.RandomFlip(horizontal=True, vertical=False)]
    baseline = DatasetMapper(cfg, is_train=True, augmentations=flip, image_format="BGR")
    compare(
        "SIRST (semantic, training)",
        {"detectron2 DatasetMapper": baseline, "IRSTDDatasetMapper": ours},
        {"detectron2 DatasetMapper": sirst, "IRSTDDatasetMapper": sirst},
        args.repeat,
    )

    # FLIR 640x512, instance mapper, two boxes a frame; and the same frames as 16-bit TIFFs
    files = sorted((SHARED_DATA / "roadscene-thermal").glob("*.png"))[: args.frames]
    boxes = [
        {"bbox": [100, 200, 40, 80], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0},
        {"bbox": [300, 250, 120, 60], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 2},
    ]
    flir = [
        {"file_name": str(f), "height": 512, "width": 640, "image_id": i, "annotations": boxes}
        for i, f in enumerate(files)
    ]
    cfg = ir_cfg(CONFIG, ["MODEL.MASK_ON", False])
    cfg16 = ir_cfg(CONFIG, ["MODEL.MASK_ON", False, "INPUT.IR.NORMALIZE", "percentile"])
    with tempfile.TemporaryDirectory() as tmp:
        flir16 = []
        for r in flir:
            raw = np.asarray(Image.open(r["file_name"]), dtype=np.uint16) * 37 + 21000
            path = os.path.join(tmp, os.path.basename(r["file_name"])[:-4] + ".tiff")
            Image.fromarray(raw.astype(np.uint16)).save(path)
            flir16.append(dict(r, file_name=path))
        compare(
            "FLIR 640x512 (instances, training)",
            {
                "detectron2 DatasetMapper": DatasetMapper(cfg, True),
                "IRDatasetMapper": IRDatasetMapper(cfg, True),
                "IRDatasetMapper, 16-bit percentile": IRDatasetMapper(cfg16, True),
            },
            {
                "detectron2 DatasetMapper": flir,
                "IRDatasetMapper": flir,
                "IRDatasetMapper, 16-bit percentile": flir16,
            },
            args.repeat,
        )
    print("goal: time ratio <= 2 (the IR mappers add photometric augmentation, binarisation,")
    print("the fixed-size crop and, for 16-bit frames, the normalisation)")


if __name__ == "__main__":
    main()
