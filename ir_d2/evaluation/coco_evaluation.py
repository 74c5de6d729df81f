"""
COCOEvaluator of the ir_d2 trainer: detectron2's, scoring only the frames that were evaluated.
"""

import itertools

from detectron2.evaluation import COCOEvaluator
from detectron2.utils import comm

__all__ = ["IRCOCOEvaluator"]


class IRCOCOEvaluator(COCOEvaluator):
    """
    detectron2's ``COCOEvaluator``; when fewer frames were processed than the dataset holds (frames
    skipped as bad with ``DATALOADER.SKIP_BAD_SAMPLES``), only the processed frames are scored (the
    others would count as missed objects) and a warning says how many were left out.
    """

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
