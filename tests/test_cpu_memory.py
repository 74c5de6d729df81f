"""IR_CPU_KEEP_FREED_MEMORY: glibc's malloc keeps freed memory, so reallocating costs no page
faults; the trainer applies it on the CPU only, and only with the key."""

import subprocess
import sys

import pytest
from detectron2.engine import DefaultTrainer

import ir_d2.engine.trainer as trainer_module
from ir_d2.engine import IRTrainer
from ir_d2.engine.cpu_memory import keep_freed_memory
from ir_d2.engine.defaults import setup_cfg

# a 64 MiB tensor written and freed 20 times (16,384 pages each), the page faults of the last
# 10 and the resident memory's growth over them counted, by glibc's default and after
# keep_freed_memory(); in a child process, as the setting cannot be undone
CHILD = """
import resource, torch
from ir_d2.engine.cpu_memory import keep_freed_memory

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1])

def last_ten():
    for i in range(20):
        if i == 10:
            f0, r0 = faults(), resident()
        torch.empty(2**24).fill_(1.0)  # every page written
    return faults() - f0, resident() - r0

print(*last_ten(), keep_freed_memory(), *last_ten())
"""


def _glibc() -> bool:
    import platform

    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not _glibc(), reason="IR_CPU_KEEP_FREED_MEMORY acts on glibc's malloc only")
def test_kept_memory_is_reused_without_page_faults_or_growth():
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    default, _, applied, kept, growth = proc.stdout.split()
    assert applied == "True"
    # glibc's default mmaps and unmaps a block this large: every write faults in fresh pages
    assert int(default) >= 9 * 2**14, default
    # kept: after a few rounds the heap holds a free block that fits, reused without a fault,
    # and the resident memory stops growing
    assert int(kept) < 2**12 and int(growth) < 2**12, (default, kept, growth)


def test_the_trainer_keeps_freed_memory_on_the_cpu_with_the_key(monkeypatch):
    calls = []
    monkeypatch.setattr(trainer_module, "keep_freed_memory", lambda: calls.append(1))
    monkeypatch.setattr(DefaultTrainer, "__init__", lambda self, cfg: None)
    config = "IRSTD/irstd_unet_W32_1500e_sirst.yaml"
    cases = ((True, "cpu", 1), (True, "cpu:0", 1), (False, "cpu", 0), (True, "cuda", 0))
    for keep, device, expected in cases:
        calls.clear()
        cfg = setup_cfg(config, ["IR_CPU_KEEP_FREED_MEMORY", keep])
        cfg.defrost()
        cfg.MODEL.DEVICE = device  # as set up on a machine with CUDA
        IRTrainer(cfg)
        assert len(calls) == expected, (keep, device)


@pytest.mark.skipif(_glibc(), reason="off glibc the call must do nothing")
def test_off_glibc_it_does_nothing():
    assert keep_freed_memory() is False
