#!/usr/bin/env python3
"""ir_d2 demo: ``python projects/demo.py --config-file CFG --input ... --output OUT/``.

The command line is :mod:`ir_d2.tools.demo` (also ``python -m ir_d2.tools.demo``); the model and
the drawing are :class:`ir_d2.engine.visualization_demo.VisualizationDemo` (``run_on_image``,
``run_on_video``), as in detectron2's ``demo/demo.py`` and ``demo/predictor.py``.
"""

from ir_d2.tools.demo import main

if __name__ == "__main__":
    main()
