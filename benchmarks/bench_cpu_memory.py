"""
CPU training with and without ``IR_CPU_KEEP_FREED_MEMORY`` (glibc's malloc keeping freed memory
for reuse, :mod:`ir_d2.engine.cpu_memory`): time per iteration, page faults per iteration and
peak resident memory.

Each run trains in a fresh child process (the malloc setting is process-wide and cannot be
undone): ir_d2's DNANet at the parity recipe of ``bench_parity.py`` (widths "three", resnet_10
blocks, batch 4, 256x256 crops, Adam 1e-3, one loader worker) on ``nudt_sirst_train``, for
``--iterations``; the first ``--warmup`` are left out. The runs alternate off, on, off, on ...
(``--repeats`` pairs), so that a drift of the machine falls on both. Prints each run's median
seconds per iteration and minor page faults per iteration (the trainer's process), its peak
resident set, and the ratio on / off of the medians over the runs.

    IR_D2_DATASETS=datasets python3 benchmarks/bench_cpu_memory.py [--iterations 40]
        [--warmup 5] [--repeats 1] [--output output/bench_cpu_memory]
"""

import argparse
import json
import os
import resource
import statistics
import time

from _common import markdown_table, measure_in_child, peak_rss_mib, write_report

TOOL = "benchmarks/bench_cpu_memory.py"


def run_child(case: dict) -> dict:
    """One training run in this (fresh) process: per-iteration seconds and minor page faults."""
    import torch
    from bench_parity import ir_d2_cfg
    from detectron2.engine import HookBase

    from ir_d2.engine import IRTrainer

    if case["threads"]:
        torch.set_num_threads(case["threads"])
    recipe = dict(device="cpu", batch=4, seed=0, crop=256, workers=1, output=case["output"])
    recipe.update(optimizer="Adam", lr=0.001, channel_size="three", backbone="resnet_10")
    recipe = argparse.Namespace(**recipe)
    cfg = ir_d2_cfg(recipe, "dnanet", case["iterations"])
    cfg.defrost()
    cfg.IR_CPU_KEEP_FREED_MEMORY = case["keep"]
    cfg.freeze()
    steps = []

    class StepTimer(HookBase):
        def before_step(self):
            self.t0 = time.perf_counter()
            self.f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt

        def after_step(self):
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - self.f0
            steps.append((time.perf_counter() - self.t0, faults))

    trainer = IRTrainer(cfg)
    trainer.register_hooks([StepTimer()])
    trainer.resume_or_load(resume=False)
    trainer.train()
    kept = steps[case["warmup"] :]
    return {
        "keep_freed_memory": case["keep"],
        "seconds": round(statistics.median(s for s, _ in kept), 4),
        "page_faults": int(statistics.median(f for _, f in kept)),
        "peak_rss_MiB": round(peak_rss_mib(), 1),
    }


def measure(case: dict) -> dict:
    """:func:`run_child` in a fresh child process (:func:`_common.measure_in_child`)."""
    return measure_in_child(__file__, case)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5, help="first iterations left out")
    parser.add_argument("--repeats", type=int, default=1, help="pairs of runs (off, on)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (0: default)")
    parser.add_argument("--output", default="output/bench_cpu_memory")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(run_child(json.loads(args.child))))
        return None
    if not 0 <= args.warmup < args.iterations:
        parser.error("--warmup must be >= 0 and below --iterations")
    runs = []
    for _ in range(args.repeats):
        for keep in (False, True):
            case = {"keep": keep, "iterations": args.iterations, "warmup": args.warmup}
            case.update(threads=args.threads, output=os.path.join(args.output, f"run{len(runs)}"))
            runs.append(measure(case))
            print(json.dumps(runs[-1]), flush=True)

    def median_of(keep, key):
        return statistics.median(r[key] for r in runs if r["keep_freed_memory"] == keep)

    ratio = round(median_of(True, "seconds") / median_of(False, "seconds"), 3)
    record = {"conditions": vars(args) | {"child": None}, "runs": runs, "ratio": ratio}
    rows = [
        [r["keep_freed_memory"], r["seconds"], r["page_faults"], r["peak_rss_MiB"]] for r in runs
    ]
    header = ["IR_CPU_KEEP_FREED_MEMORY", "s / iteration (median)", "page faults / iteration"]
    text = markdown_table(header + ["peak RSS MiB"], rows)
    text += f"\nTime per iteration, on / off: {ratio}x\n"
    write_report(args.output, "bench_cpu_memory", TOOL, record, text)
    print(text)
    return record


if __name__ == "__main__":
    main()
