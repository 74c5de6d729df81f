#!/usr/bin/env python3
"""
Set up ir_d2 in the active Python environment, then run a job (``./setup.sh`` calls this).

    ./setup.sh main [options]   set up, then the main job (python -m ir_d2.tools.quickstart)
    ./setup.sh test [options]   set up, then the tests (python -m pytest tests)
    ./setup.sh install          set up only

Set-up installs only what is missing, so a second run takes seconds:

1. PyTorch with torchvision: kept when they import (whatever their version), else ``TORCH_SPEC``
   (default below) is installed; with ``TORCH_SPEC`` set, installed unless those versions are in.
2. ``setuptools<81`` (detectron2 imports ``pkg_resources``), checked again at the end (torch
   requires ``setuptools>=77`` and may bring one without ``pkg_resources``).
3. detectron2, built from source as its install guide says (``pip install --no-build-isolation``,
   after torch): kept when it and its compiled ops import; else built from ``DETECTRON2_SRC``, by
   default its official repository at the pinned commit below. ``DETECTRON2_SRC`` may be another
   git URL or a local clone or folder (built from a temporary copy; the folder is not written).
4. ir_d2 itself, editable, with its test extras (``pip install -e ".[dev]"``).

It stops with one line naming the cause when Python is older than 3.10, when detectron2 must be
built and no C++ compiler is found, or when detectron2's source cannot be reached (then set
``DETECTRON2_SRC``). This file must stay parseable by old Pythons, to say so.
"""

from __future__ import print_function

import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIN_PYTHON = (3, 10)
# versions known to work together (CPU or CUDA wheels)
DEFAULT_TORCH_SPEC = "torch==2.14.1 torchvision==0.29.1"
# detectron2's official repository at the commit ir_d2 is tested with
DETECTRON2_REPO = "https://github.com/facebookresearch/detectron2.git"
DETECTRON2_COMMIT = "02b5c4e295e990042a714712c21dc79b731e8833"


class SetupError(Exception):
    """A cause the set-up names in one line."""


def say(message):
    print("[setup] " + message, flush=True)


def check_python(version=None):
    version = tuple(version or sys.version_info[:2])
    if version < MIN_PYTHON:
        raise SetupError(
            "ir_d2 needs Python >= %d.%d, this is %d.%d (%s): run ./setup.sh with PYTHON=python3.X"
            % (MIN_PYTHON + tuple(version[:2]) + (sys.executable,))
        )


def run_python(code, env=None):
    """Exit status and output of ``python -c code`` in this environment (stdout on success,
    stderr on failure)."""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=tempfile.gettempdir(),  # not the repository: what is installed, not what is here
    )
    # what it printed on success; its error output (the reason) on failure
    return proc.returncode, (proc.stdout if proc.returncode == 0 else proc.stderr).strip()


def pip(args, what):
    """``python -m pip install ARGS``; on failure the end of pip's output, then one line."""
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check"] + list(args)
    say("installing %s: %s" % (what, " ".join(cmd[3:])))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        print("\n".join(tail), file=sys.stderr)
        raise SetupError("pip could not install %s (its output above says why)" % what)


# One Python process reports everything installed (imports are the slow part of a check).
_PROBE = r"""
import json, sys
found = {}
def probe(name, code):
    try:
        found[name] = code()
    except Exception as e:  # anything that stops an import
        found[name] = None
        found[name + "_error"] = "%s: %s" % (type(e).__name__, e)
def _torch():
    import torch, torchvision, torchvision.ops
    return [torch.__version__, torchvision.__version__]
def _setuptools():
    import warnings
    warnings.simplefilter("ignore")
    import setuptools, pkg_resources
    return setuptools.__version__
def _detectron2():
    import detectron2, detectron2._C
    return detectron2.__version__
def _ir_d2():
    import hypothesis, pytest, onnx, onnxscript, onnxruntime, ir_d2
    return ir_d2.__file__
for name, fn in [("torch", _torch), ("setuptools", _setuptools), ("detectron2", _detectron2),
                 ("ir_d2", _ir_d2)]:
    probe(name, fn)
print(json.dumps(found))
"""


def probe():
    """What is installed: ``{"torch": [torch, torchvision versions] or None, "setuptools": version,
    "detectron2": version (with its compiled ops), "ir_d2": its file (with its test extras:
    pytest, hypothesis, onnx, onnxscript, onnxruntime)}``, None where the import fails
    (``"<name>_error"`` says why)."""
    rc, out = run_python(_PROBE)
    if rc != 0:
        raise SetupError("cannot run %s: %s" % (sys.executable, out.splitlines()[-1:]))
    import json

    return json.loads(out.splitlines()[-1])


def torch_step(env, found):
    spec = env.get("TORCH_SPEC")
    if found["torch"]:
        torch_version, vision_version = found["torch"]
        wanted = (spec or "").split()
        versions = {"torch": torch_version, "torchvision": vision_version}
        if all(_satisfied(w, versions) for w in wanted):
            say("torch %s, torchvision %s found: kept" % (torch_version, vision_version))
            return False
    pip((spec or DEFAULT_TORCH_SPEC).split(), "PyTorch")
    return True


def _satisfied(requirement, versions):
    """Whether ``name==version`` (or a bare name) is met by ``versions``; other specs count as
    unmet, so they are passed to pip."""
    name, _, version = requirement.partition("==")
    have = versions.get(name)
    if have is None:
        return True  # a package this step does not check (e.g. torchaudio): pip's business
    return not version or have.split("+")[0] == version.split("+")[0]


def setuptools_step(env, found):
    version = found["setuptools"]
    if version and int(version.split(".")[0]) < 81:
        say("setuptools %s found: kept" % version)
        return False
    pip(["setuptools<81"], "setuptools<81 (detectron2 imports pkg_resources)")
    return True


def find_compiler(env):
    """The C++ compiler detectron2's build would use (``CXX``, else c++ / g++ / clang++)."""
    for name in [env.get("CXX")] + ["c++", "g++", "clang++"]:
        if name and shutil.which(name, path=env.get("PATH")):
            return name
    return None


def detectron2_source(env):
    """``(source, is_local)``: ``DETECTRON2_SRC`` if set, else the official repository at the
    pinned commit, as pip takes it."""
    src = env.get("DETECTRON2_SRC")
    if not src:
        return "git+%s@%s" % (DETECTRON2_REPO, DETECTRON2_COMMIT), False
    if os.path.isdir(os.path.expanduser(src)):
        return os.path.abspath(os.path.expanduser(src)), True
    if src.startswith(("http://", "https://", "git@", "ssh://")) and not src.startswith("git+"):
        src = "git+" + src
    return src, False


def _git_url(source):
    """The repository URL of a pip git source ``git+URL[@ref]``."""
    url = source[len("git+") :]
    head, sep, ref = url.rpartition("@")
    return head if sep and "/" not in ref and "://" in head else url


def check_reachable(source, timeout=30):
    """A git source answers ``git ls-remote`` (a SetupError suggesting DETECTRON2_SRC if not)."""
    if not source.startswith("git+"):
        return
    url = _git_url(source)
    hint = (
        "; on a machine without access, clone it elsewhere (git clone %s) and set "
        "DETECTRON2_SRC=/path/to/detectron2" % DETECTRON2_REPO
    )
    if shutil.which("git") is None:
        raise SetupError("git is needed to fetch detectron2's source from %s%s" % (url, hint))
    try:
        proc = subprocess.run(
            ["git", "ls-remote", "--heads", url],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(os.environ, GIT_TERMINAL_PROMPT="0"),
        )
        ok = proc.returncode == 0
    except subprocess.TimeoutExpired:
        ok = False
    if not ok:
        raise SetupError("detectron2's source %s cannot be reached%s" % (url, hint))


def detectron2_step(env, found):
    if found["detectron2"]:
        say("detectron2 %s found: kept" % found["detectron2"])
        return False
    if find_compiler(env) is None:
        raise SetupError(
            "detectron2 must be built and no C++ compiler was found (c++, g++ or clang++; or set "
            "CXX): install one (Debian/Ubuntu: apt install g++), then rerun"
        )
    source, local = detectron2_source(env)
    start = time.time()
    if local:
        with tempfile.TemporaryDirectory(prefix="detectron2-src-") as tmp:
            copy = os.path.join(tmp, "detectron2")
            if os.path.isdir(os.path.join(source, ".git")):
                subprocess.run(["git", "clone", "--quiet", source, copy], check=True)
            else:
                shutil.copytree(source, copy)
            pip(["--no-build-isolation", copy], "detectron2 from %s (a few minutes)" % source)
    else:
        check_reachable(source)
        pip(["--no-build-isolation", source], "detectron2 from %s (a few minutes)" % source)
    rc, out = run_python("import detectron2, detectron2._C")
    if rc != 0:
        raise SetupError("detectron2 was built but does not import: " + out.splitlines()[-1])
    say("detectron2 built in %.0f s" % (time.time() - start))
    return True


def ir_d2_step(env, found):
    where = found["ir_d2"]
    if where and os.path.abspath(where).startswith(os.path.join(REPO, "ir_d2")):
        say("ir_d2 (this checkout) found: kept")
        return False
    pip(["--no-build-isolation", "-e", REPO + "[dev]"], "ir_d2 and its test tools")
    return True


def install(env=None):
    env = dict(os.environ if env is None else env)
    check_python()
    start = time.time()
    # setuptools twice: torch's own requirement (setuptools>=77) may pull in one without
    # pkg_resources, and so may a later step; every step sees what the previous ones installed
    steps = [torch_step, setuptools_step, detectron2_step, ir_d2_step, setuptools_step]
    found, changed = probe(), False
    for step in steps:
        if step(env, found):
            changed = True
            found = probe()
    say("set-up %s in %.0f s" % ("done" if changed else "checked", time.time() - start))


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    job = argv.pop(0) if argv else "install"
    if job not in ("install", "main", "test"):
        print("usage: ./setup.sh install | main [options] | test [pytest options]", file=sys.stderr)
        return 2
    try:
        install()
    except SetupError as e:
        print("setup.sh: %s" % e, file=sys.stderr)
        return 1
    if job == "install":
        return 0
    if job == "main":
        cmd = [sys.executable, "-m", "ir_d2.tools.quickstart"] + argv
    else:
        cmd = [sys.executable, "-m", "pytest", "tests"] + argv
    say("running: " + " ".join(cmd[2:]))
    return subprocess.call(cmd, cwd=REPO)


if __name__ == "__main__":
    sys.exit(main())
