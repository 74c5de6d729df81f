"""
SIRST-5K online augmentation (Lu et al. 2024, sec. III), pure NumPy/OpenCV (no detectron2 import).

- :class:`NoiseBank`: the noise patches of eq. 1, sampled once from the training frames;
- :class:`SIRST5KAugmentation`: a callable ``(image, mask, rng) -> [(image, mask), ...]`` applying
  the Noise2Noise displacement (eqs. 2-3) with a probability and, when enabled, the negative
  augmentation (eq. 4), which turns one frame into the group of its rotated variants (one pair per
  angle) for the negative-sample loss (``ir_d2.layers.negative_sample_loss``).

Built from a config by ``SIRST5KAugmentation.from_config(cfg, frames)`` (keys ``INPUT.SIRST5K.*``).
"""

from functools import partial
from os import PathLike
from typing import Callable, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from .io import read_ir_image
from .synthesis import (
    _patch_size,
    _quarter_turns,
    n2n_displace,
    negative_augment,
    sample_noise_patches,
    to_gray,
)

__all__ = ["NoiseBank", "SIRST5KAugmentation"]

Frame = Union[np.ndarray, str, PathLike]


class NoiseBank:
    """
    The noise patches of eq. 1 (Lu et al. 2024), sampled once from training frames and drawn at
    random by the augmentation. Patches are stored as gray HxW arrays (the IR frames are gray; a
    gray patch is broadcast over an image's channels by :func:`n2n_displace`).
    """

    def __init__(self, patches: Sequence[np.ndarray]):
        self.patches = [np.asarray(p) for p in patches]
        if not self.patches:
            raise ValueError(
                "the SIRST-5K noise bank is empty: no frame region has 0 < variance < "
                "INPUT.SIRST5K.MAX_VAR and 0 < mean < INPUT.SIRST5K.MAX_MEAN (eq. 1); raise them"
            )

    @classmethod
    def from_frames(
        cls,
        frames: Iterable[Frame],
        grid: int = 8,
        max_var: float = 100.0,
        max_mean: float = 100.0,
        reader: Optional[Callable[[str], np.ndarray]] = None,
    ) -> "NoiseBank":
        """
        Sample the bank from ``frames``: arrays (HxW or HxWxC) or file names, read by ``reader``
        (default ``ir_d2.data.read_ir_image``: HxWx3 uint8, more than 8 bits normalised by
        "minmax"). Frames are turned to gray, then split by :func:`sample_noise_patches` (eq. 1)
        one at a time, so only the patches stay in memory. Patches must be in the intensity scale
        of the frames they will be blended into (uint8 for the mappers).
        """
        reader = reader or read_ir_image
        patches = []
        for frame in frames:
            if isinstance(frame, (str, PathLike)):
                frame = reader(frame)
            frame = np.asarray(frame)
            if frame.ndim == 3:
                frame = _gray_like(frame)
            patches.extend(sample_noise_patches([frame], grid, max_var, max_mean))
        return cls(patches)

    def __len__(self) -> int:
        return len(self.patches)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """A patch drawn uniformly at random."""
        return self.patches[int(rng.integers(len(self.patches)))]


def _gray_like(image: np.ndarray) -> np.ndarray:
    """A gray HxW version of an HxWxC frame, in the frame's dtype (exact for replicated gray)."""
    gray = to_gray(image)
    if np.issubdtype(image.dtype, np.integer):
        gray = np.rint(gray)
    return gray.astype(image.dtype)


class SIRST5KAugmentation:
    """
    The SIRST-5K training augmentation (Lu et al. 2024, sec. III) as one callable for a dataset
    mapper:

    1. with probability ``n2n_prob``, Noise2Noise displacement with a patch drawn from the bank
       (:func:`n2n_displace`, eqs. 2-3, weight ``alpha``);
    2. when ``negative`` is on, negative augmentation (:func:`negative_augment`, eq. 4), returning
       the group of rotated variants of the (displaced) frame, which the negative-sample loss
       treats as one group; otherwise the single pair. With ``per_target`` (the paper's form:
       "4z samples for z targets") each variant rotates the patch of ONE target by one angle,
       ``len(angles) * z`` variants, target-major (a frame without targets is its own group of
       one); without it (ours, ir_d2 0.1) each variant rotates every target's patch by the same
       angle, ``len(angles)`` variants.

    ``aug(image, mask, rng)`` takes an HxW or HxWx3 frame (uint8 in the mapper), an HxW {0, 1}
    mask and a ``np.random.Generator`` (or a seed, or None for fresh entropy), and returns a list of
    ``(image, mask)`` pairs (``group_size`` of them; with ``per_target`` it depends on the
    frame), new arrays of the inputs' dtypes.
    """

    def __init__(
        self,
        noise_bank: Optional[NoiseBank] = None,
        *,
        n2n_prob: float = 0.5,
        alpha: float = 0.1,
        negative: bool = False,
        patch_size: Optional[int] = None,
        angles: Sequence[int] = (0, 90, 180, 270),
        mode: str = "paper",
        per_target: bool = True,
    ):
        if not 0.0 <= n2n_prob <= 1.0:
            raise ValueError(f"INPUT.SIRST5K.N2N_PROB must be in [0, 1], got {n2n_prob}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"INPUT.SIRST5K.ALPHA must be in [0, 1], got {alpha}")
        if n2n_prob > 0 and noise_bank is None:
            raise ValueError("INPUT.SIRST5K.N2N_PROB > 0 needs a noise bank (NoiseBank)")
        if negative and len(angles) == 0:
            raise ValueError("INPUT.SIRST5K.ANGLES is empty while INPUT.SIRST5K.NEGATIVE is on")
        _patch_size(patch_size, mode)  # validate MODE, PATCH_SIZE and ANGLES here, not per frame
        _quarter_turns(angles)
        self.noise_bank = noise_bank
        self.n2n_prob = float(n2n_prob)
        self.alpha = float(alpha)
        self.negative = bool(negative)
        self.patch_size = patch_size
        self.angles = tuple(angles)
        self.mode = mode
        self.per_target = bool(per_target)

    @classmethod
    def from_config(cls, cfg, frames: Iterable[Frame] = ()) -> "SIRST5KAugmentation":
        """
        Build from ``cfg.INPUT.SIRST5K``: N2N_PROB, ALPHA, GRID, MAX_VAR, MAX_MEAN (the bank, eq.
        1), NEGATIVE, PATCH_SIZE, ANGLES, MODE. ``frames`` (arrays or file names, e.g. the
        training dicts' ``file_name``) feed the noise bank, which is only built when N2N_PROB > 0;
        file names are read by ``ir_d2.data.read_ir_image`` with ``INPUT.IR.NORMALIZE`` /
        ``INPUT.IR.PERCENTILES``, as the mappers read frames.
        ``INPUT.SIRST5K.ENABLED`` is the caller's switch (the mapper builds this only when on).
        """
        c = cfg.INPUT.SIRST5K
        bank = None
        if c.N2N_PROB > 0:
            reader = partial(
                read_ir_image,
                normalize=cfg.INPUT.IR.NORMALIZE,
                percentiles=tuple(cfg.INPUT.IR.PERCENTILES),
            )
            bank = NoiseBank.from_frames(frames, c.GRID, c.MAX_VAR, c.MAX_MEAN, reader=reader)
        return cls(
            bank,
            n2n_prob=c.N2N_PROB,
            alpha=c.ALPHA,
            negative=c.NEGATIVE,
            patch_size=c.PATCH_SIZE,
            angles=tuple(c.ANGLES),
            mode=c.MODE,
            per_target=c.PER_TARGET,
        )

    @property
    def group_size(self):
        """Number of pairs one call returns: 1 without negatives, ``len(angles)`` with them, None
        with ``per_target`` (``len(angles)`` per target: it depends on the frame)."""
        if not self.negative:
            return 1
        return None if self.per_target else len(self.angles)

    def __call__(
        self, image: np.ndarray, mask: np.ndarray, rng=None
    ) -> List[Tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng(rng)
        image, mask = np.asarray(image), np.asarray(mask)
        if mask.ndim != 2 or image.shape[:2] != mask.shape:
            raise ValueError(f"image {image.shape} and mask {mask.shape} must share H x W")
        # one draw each, always, so the random stream does not depend on the outcome
        apply_n2n = rng.random() < self.n2n_prob
        if self.noise_bank is not None:
            noise = self.noise_bank.sample(rng)
        if apply_n2n:
            image = n2n_displace(image, noise, self.alpha)  # a new array
        if self.negative:
            pairs = negative_augment(
                image, mask, self.patch_size, self.angles, self.mode, per_target=self.per_target
            )
            if pairs:  # none for a frame without targets: the single pair below
                return pairs
        return [(image if apply_n2n else image.copy(), mask.copy())]

    def __repr__(self) -> str:
        bank = len(self.noise_bank) if self.noise_bank is not None else None
        return (
            f"SIRST5KAugmentation(bank={bank} patches, n2n_prob={self.n2n_prob}, "
            f"alpha={self.alpha}, negative={self.negative}, patch_size={self.patch_size}, "
            f"angles={self.angles}, mode={self.mode!r}, per_target={self.per_target})"
        )
