"""Preprocessing (deterministic, done once into the cache) and augmentation (training only, seeded per sample).

**Preprocessing** (numpy, no torch; used by :mod:`medclr.data.cache`):

* :func:`resize_pad` - an X-ray ``[H, W]`` is resized so its long side is ``S`` (aspect ratio kept, antialiased
  bilinear) and zero-padded to ``S x S``, centred. The returned :class:`GeometryTuple` is what a
  :class:`medclr.types.Geometry` needs to map network pixels back to original pixels. Example: a 374 x 321 image
  at S = 128 becomes 128 x 110, padded by 9 columns left and right.
* :func:`fit_ecg` - a 12-lead ECG ``[12, T]`` at ``fs`` Hz is resampled to ``target_fs`` with a polyphase
  filter (``scipy.signal.resample_poly``; 500 -> 100 Hz is up 1, down 5 with an anti-aliasing FIR), then cropped
  (from the start or the centre) or zero-padded at the end to exactly ``samples``. NaN samples become 0.

**Augmentation** (training only). Every random choice of sample ``i`` in epoch ``e`` comes from a generator seeded
with ``(seed, e, i)`` (:func:`sample_seed`), so a sample is augmented identically whatever the number of
DataLoader workers, the rank that loads it, or whether the run was resumed in between (exact resume):

* :class:`CxrAugment` - MONAI transforms: ``RandAffine`` (small rotation + zoom + shift in one resampling; a
  zoom-in is a random resized crop), ``RandScaleIntensity`` and ``RandAdjustContrast`` (gamma).
* :class:`EcgAugment` - Gaussian noise (mV), a circular time shift and lead dropout (at least one lead kept).
* :func:`sample_sentences` - keep each report sentence with probability p (at least one), in order.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor

    from medclr.config import AugmentConfig
    from medclr.types import Geometry

_MASK32 = 0xFFFFFFFF
SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+")  # between two sentences of a report


class GeometryTuple(NamedTuple):
    """(H0, W0) original size, (h, w) resized size, (top, bottom, left, right) padding - eight ints."""

    height: int
    width: int
    resized_h: int
    resized_w: int
    top: int
    bottom: int
    left: int
    right: int

    def geometry(self) -> Geometry:
        """The same resize + pad as a :class:`~medclr.types.Geometry` (maps network pixels back to the original)."""
        from medclr.types import Geometry

        return Geometry((self.height, self.width), resized_size=(self.resized_h, self.resized_w),
                        pad=(self.top, self.bottom, self.left, self.right))


def resize_pad(image: np.ndarray, size: int) -> tuple[np.ndarray, GeometryTuple]:
    """``[H, W]`` float image -> ``[size, size]`` float32 (long side = size, centred zero padding) + geometry."""
    from PIL import Image

    h, w = image.shape
    scale = size / max(h, w)
    rh, rw = max(1, min(size, round(h * scale))), max(1, min(size, round(w * scale)))
    resized = np.asarray(Image.fromarray(np.ascontiguousarray(image, dtype=np.float32), mode="F")
                         .resize((rw, rh), Image.Resampling.BILINEAR), dtype=np.float32)  # [rh, rw]
    top, left = (size - rh) // 2, (size - rw) // 2
    out = np.zeros((size, size), dtype=np.float32)
    out[top : top + rh, left : left + rw] = resized
    return out, GeometryTuple(h, w, rh, rw, top, size - rh - top, left, size - rw - left)


def quantize(image: np.ndarray, dtype: str) -> np.ndarray:
    """[0, 1] float -> uint8 (x 255) or uint16 (x 65535), rounded and clipped."""
    top = 255 if dtype == "uint8" else 65535
    return np.clip(np.rint(image * top), 0, top).astype(dtype)


def fit_ecg(signal: np.ndarray, fs: float, target_fs: float, samples: int, crop: str = "start") -> np.ndarray:
    """``[12, T]`` at ``fs`` -> ``[12, samples]`` float32 at ``target_fs`` (see the module docstring)."""
    from scipy.signal import resample_poly

    x = np.nan_to_num(np.asarray(signal, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if not math.isclose(fs, target_fs):
        ratio = Fraction(target_fs / fs).limit_denominator(1000)
        x = resample_poly(x, ratio.numerator, ratio.denominator, axis=1)
    t = x.shape[1]
    if t > samples:
        start = (t - samples) // 2 if crop == "center" else 0
        x = x[:, start : start + samples]
    elif t < samples:
        x = np.pad(x, ((0, 0), (0, samples - t)))
    return x.astype(np.float32)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed for sample ``index`` of ``epoch`` (splitmix-style mixing of the three integers)."""
    z = (seed * 0x9E3779B1 + epoch * 0x85EBCA77 + index * 0xC2B2AE3D + 0x27D4EB2F) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) & _MASK32


class CxrAugment:
    """MONAI X-ray augmentation on ``[1, S, S]`` float tensors; ``__call__(x, rng)`` draws from ``rng`` only."""

    def __init__(self, cfg: AugmentConfig, size: int) -> None:
        from monai.transforms import Compose, RandAdjustContrast, RandAffine, RandScaleIntensity

        self.transform = Compose([
            RandAffine(prob=cfg.cxr_prob, rotate_range=(math.radians(cfg.cxr_rotate_deg),),
                       scale_range=(cfg.cxr_zoom, cfg.cxr_zoom), translate_range=(cfg.cxr_shift * size,) * 2,
                       padding_mode="zeros", spatial_size=(size, size), cache_grid=True),
            RandScaleIntensity(factors=cfg.cxr_intensity, prob=1.0),
            RandAdjustContrast(prob=1.0, gamma=tuple(cfg.cxr_gamma)),
        ])

    def __call__(self, x: Tensor, rng: np.random.RandomState) -> Tensor:
        from monai.data import get_track_meta, set_track_meta

        for t in self.transform.transforms:  # every MONAI Randomizable draws from .R (RandAffine: its grid's too)
            t.set_random_state(state=rng)
        tracking = get_track_meta()
        set_track_meta(False)  # plain tensors out: MetaTensor bookkeeping costs ~2x here
        try:
            out = self.transform(x)
        finally:
            set_track_meta(tracking)
        return out.clamp_(0.0, 1.0)


class EcgAugment:
    """Gaussian noise, circular time shift and lead dropout on ``[12, T]`` float32 numpy arrays (in place)."""

    def __init__(self, cfg: AugmentConfig, fs: float) -> None:
        self.noise, self.dropout = cfg.ecg_noise_mv, cfg.ecg_lead_dropout
        self.max_shift = round(cfg.ecg_shift_s * fs)
        self.noise_gen: Any = None

    def __getstate__(self) -> dict[str, Any]:  # a torch.Generator does not pickle: DataLoader workers make theirs
        return {**self.__dict__, "noise_gen": None}

    def __call__(self, x: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
        import torch

        if self.noise_gen is None:
            self.noise_gen = torch.Generator()
        if self.max_shift:
            x = np.roll(x, int(rng.randint(-self.max_shift, self.max_shift + 1)), axis=1)
        if self.noise:  # torch's normals, seeded from rng: ~4x faster than RandomState.normal on [12, T]
            self.noise_gen.manual_seed(int(rng.randint(2**31)))
            noise = torch.randn(x.shape, generator=self.noise_gen).numpy()
            x = x + noise * np.float32(self.noise)
        if self.dropout:
            drop = np.asarray(rng.random_sample(x.shape[0])) < self.dropout  # [12] bool
            if drop.all():
                drop[rng.randint(x.shape[0])] = False
            x[drop] = 0.0
        return x


def sample_sentences(text: str, keep: float, rng: np.random.RandomState) -> str:
    """Keep each sentence with probability ``keep`` (at least one, order unchanged).

    >>> sample_sentences("A. B. C.", 1.0, np.random.RandomState(0))
    'A. B. C.'
    """
    sentences = [s for s in SENTENCE_BREAK.split(text.strip()) if s]
    if len(sentences) <= 1 or keep >= 1.0:
        return text
    chosen = np.asarray(rng.random_sample(len(sentences))) < keep
    if not chosen.any():
        chosen[rng.randint(len(sentences))] = True
    return " ".join(s for s, c in zip(sentences, chosen, strict=True) if c)


class Augmenter:
    """All training augmentations of one sample, driven by one generator reseeded per (seed, epoch, index)."""

    def __init__(self, cfg: AugmentConfig, image_size: int, ecg_fs: float, seed: int) -> None:
        self.cfg, self.seed = cfg, seed
        self.cxr = CxrAugment(cfg, image_size)
        self.ecg = EcgAugment(cfg, ecg_fs)
        self.rng = np.random.RandomState(0)

    def generator(self, epoch: int, index: int) -> np.random.RandomState:
        """The (reseeded, shared) generator of sample ``index`` in ``epoch``."""
        self.rng.seed(sample_seed(self.seed, epoch, index))
        return self.rng
