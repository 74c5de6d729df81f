"""
Train and evaluate ir_d2 models, the detectron2 way.

    python -m ir_d2.tools.train_net --config-file configs/....yaml [--eval-only] [--resume]
        [--num-gpus N] [--num-machines M --machine-rank R --dist-url URL] [KEY VALUE ...]

(``projects/train_net.py`` is the same script.) Multi-GPU and multi-machine runs go through
detectron2's ``launch``.
"""

import argparse
import logging
import os

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import default_argument_parser
from detectron2.evaluation import verify_results
from detectron2.utils import comm

from ir_d2.data.io import IRDataError
from ir_d2.engine.defaults import ensure_weights, setup_cfg
from ir_d2.engine.launch import launch
from ir_d2.engine.trainer import IRTrainer
from ir_d2.utils.cli import (
    CommandLineError,
    collect_opts,
    one_line_errors,
    quiet_training_errors,
)

logger = logging.getLogger("ir_d2")


def get_parser() -> argparse.ArgumentParser:
    """detectron2's ``default_argument_parser``; config overrides may also follow ``--opts``
    (as in the demo), and ``--config-file`` may name a model-zoo config."""
    parser = default_argument_parser()
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="with --eval-only and no MODEL.WEIGHTS: score a randomly initialised model on purpose",
    )
    parser.add_argument(
        "--debug", action="store_true", help="full tracebacks (as env IR_D2_DEBUG=1)"
    )
    parser.add_argument(
        "--opts", dest="dash_opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE pairs"
    )
    return parser


def no_weights_message(cfg, checkpointer) -> str:
    """--eval-only without weights would score an untrained model: what to pass instead."""
    last = ""
    if checkpointer.has_checkpoint():
        last = (
            f" (this run's last checkpoint: {checkpointer.get_checkpoint_file()}; --resume uses it)"
        )
    return (
        f"--eval-only with MODEL.WEIGHTS '' would score an untrained model: pass "
        f"MODEL.WEIGHTS {os.path.join(cfg.OUTPUT_DIR, 'model_final.pth')}{last}, or "
        "--random-weights to score random weights on purpose"
    )


def main(args):
    if getattr(args, "debug", False):
        os.environ["IR_D2_DEBUG"] = "1"
    with one_line_errors("train_net"):  # bad config, files or data: one line naming it
        cfg = setup_cfg(args.config_file, collect_opts(args), args=args)
        if args.eval_only:
            model = IRTrainer.build_model(cfg)
            checkpointer = DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR)
            if not (args.resume and checkpointer.has_checkpoint()):
                trainable = any(True for _ in model.parameters())  # not a classical detector
                on_purpose = getattr(args, "random_weights", False)
                if not cfg.MODEL.WEIGHTS and trainable and not on_purpose:
                    raise CommandLineError(f"train_net: {no_weights_message(cfg, checkpointer)}")
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
    # a bad frame met while training: one line, without detectron2's logged traceback
    with one_line_errors("train_net", (IRDataError,)), quiet_training_errors((IRDataError,)):
        results = trainer.train()
    # detectron2 returns the end-of-training evaluation only with TEST.EXPECTED_RESULTS set;
    # its EvalHook keeps it in _last_eval_results either way (the quickstart reuses it)
    return results if results is not None else getattr(trainer, "_last_eval_results", None)


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
