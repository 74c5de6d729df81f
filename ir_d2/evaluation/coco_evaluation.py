"""
COCOEvaluator of the ir_d2 trainer: detectron2's, scoring only the frames that were evaluated and
reporting the Recall column of Wang & Ren's tables.
"""

import itertools

from detectron2.evaluation import COCOEvaluator
from detectron2.utils import comm

__all__ = ["IRCOCOEvaluator"]


#: Index of COCOeval's stats that is AR at 100 detections over all areas (bbox and segm).
_AR100 = 8


class IRCOCOEvaluator(COCOEvaluator):
    """
    detectron2's ``COCOEvaluator`` with two changes:

    - ``"Recall"`` beside the APs of bbox and segm: COCO's AR at 100 detections per image over all
      areas (``stats[8]``), on the 0-1 scale Wang & Ren's Tables 1-5 print in their Recall column
      (the APs stay detectron2's 0-100);
    - when fewer frames were processed than the dataset holds (frames skipped as bad with
      ``DATALOADER.SKIP_BAD_SAMPLES``), only the processed frames are scored (the others would
      count as missed objects) and a warning says how many were left out.
    """

    def _derive_coco_results(self, coco_eval, iou_type, class_names=None):
        results = super()._derive_coco_results(coco_eval, iou_type, class_names)
        if iou_type in ("bbox", "segm"):
            recall = float(coco_eval.stats[_AR100]) if coco_eval is not None else float("nan")
            results["Recall"] = recall
            self._logger.info(f"Recall ({iou_type}, COCO AR@100, 0-1 scale): {recall:.3f}")
        return results

    def evaluate(self, img_ids=None):
        if img_ids is None and self._do_evaluation:
            ids = [p["image_id"] for p in self._predictions]
            if self._distributed:
                ids = list(itertools.chain(*comm.all_gather(ids)))
            total = len(self._coco_api.getImgIds())
            if ids and len(set(ids)) < total:
                img_ids = sorted(set(ids))
                if comm.is_main_process():
                    self._logger.warning(
                        f"COCO evaluation of {self._metadata.name}: {len(img_ids)} of {total} "
                        "images were evaluated (the others were skipped as bad samples); the "
                        "scores are over those images only"
                    )
        return super().evaluate(img_ids)
