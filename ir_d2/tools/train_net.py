"""
Train and evaluate ir_d2 models, the detectron2 way.

    python -m ir_d2.tools.train_net --config-file configs/....yaml [--eval-only] [--resume]
        [--num-gpus N] [--num-machines M --machine-rank R --dist-url URL] [KEY VALUE ...]

(``projects/train_net.py`` is the same script.) Multi-GPU and multi-machine runs go through
detectron2's ``launch``.
"""

import argparse
import logging

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import default_argument_parser, launch
from detectron2.evaluation import verify_results
from detectron2.utils import comm

from ir_d2.data.io import IRDataError
from ir_d2.engine.defaults import ensure_weights, setup_cfg
from ir_d2.engine.trainer import IRTrainer
from ir_d2.utils.cli import collect_opts, one_line_errors

logger = logging.getLogger("ir_d2")


def get_parser() -> argparse.ArgumentParser:
    """detectron2's ``default_argument_parser``; config overrides may also follow ``--opts``
    (as in the demo), and ``--config-file`` may name a model-zoo config."""
    parser = default_argument_parser()
    parser.add_argument(
        "--opts", dest="dash_opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE pairs"
    )
    return parser


def main(args):
    with one_line_errors("train_net"):  # bad config, files or data: one line naming it
        cfg = setup_cfg(args.config_file, collect_opts(args), args=args)
        if args.eval_only:
            model = IRTrainer.build_model(cfg)
            checkpointer = DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR)
            if not (args.resume and checkpointer.has_checkpoint()):
                ensure_weights(cfg.MODEL.WEIGHTS)
            checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
            results = IRTrainer.test(cfg, model)
            if comm.is_main_process():
                verify_results(cfg, results)
            return results
        trainer = IRTrainer(cfg)
        if not (args.resume and trainer.checkpointer.has_checkpoint()):
            ensure_weights(cfg.MODEL.WEIGHTS)
        trainer.resume_or_load(resume=args.resume)
    with one_line_errors("train_net", (IRDataError,)):  # a bad frame met while training
        return trainer.train()


def invoke_main(argv=None):
    args = get_parser().parse_args(argv)
    return launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


if __name__ == "__main__":
    invoke_main()  # pragma: no cover
