"""
The lowest layer of ir_d2 that data, evaluation, modeling and engine share (NumPy / SciPy /
OpenCV, no detectron2 import): the 8-connected targets of a mask and the fitting of a mask to its
image's size (:mod:`.masks`).
"""

from .masks import *  # noqa: F401, F403
from .masks import __all__  # noqa: F401
