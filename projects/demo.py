#!/usr/bin/env python3
"""ir_d2 demo: ``python projects/demo.py --config-file CFG --input ... --output OUT/``.

The implementation is :mod:`ir_d2.tools.demo` (also ``python -m ir_d2.tools.demo``).
"""

from ir_d2.tools.demo import main

if __name__ == "__main__":
    main()
