#!/usr/bin/env python3
"""ir_d2 training script: ``python projects/train_net.py --config-file CFG [...]``.

The implementation is :mod:`ir_d2.tools.train_net` (also ``python -m ir_d2.tools.train_net``).
"""

from ir_d2.tools.train_net import invoke_main

if __name__ == "__main__":
    invoke_main()
