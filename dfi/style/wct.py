"""Universal style transfer (Li et al. 2017): whitening and colouring transforms, coarse to
fine, with one reconstruction decoder per VGG level (trained by ``dfi train-decoder
--layers convB_1``).

For each level from the deepest given (relu5_1 … relu1_1): encode the current image
(the content at first, then the previous level's output), whiten and colour its features
to the style's (:func:`~dfi.style.transforms.wct`; blends, masks and α as AdaIN's), decode.
The image is padded by reflection to the deepest level's stride and cropped back.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np

from ..core.backend import to_cpu, using_device
from ..core.errors import SettingError
from ..core.image import pad_to_multiple
from ..nets.decoder import layer_stride
from ..nets.features import extract
from .adain import feature_mask
from .transforms import stylise_features, wct

#: the levels Li et al. use, coarse to fine
LEVELS = ("conv5_1", "conv4_1", "conv3_1", "conv2_1", "conv1_1")
#: Li et al.'s default content–style trade-off
ALPHA = 0.6


def wct_transfer(net, decoders: Mapping[str, object], content: np.ndarray, styles: Sequence[np.ndarray], *,
                 alpha: float = ALPHA, weights: Optional[Sequence[float]] = None,
                 mask: Optional[np.ndarray] = None) -> np.ndarray:
    """``content`` (CHW RGB [0, 255]) through every level of ``decoders`` ({layer:
    :class:`~dfi.nets.decoder.FastDecoder`} of ``net``'s features), deepest first. Returns
    CHW [0, 255] float32 (CPU) of the content's size."""
    levels = [name for name in LEVELS if name in decoders]
    unknown = sorted(set(decoders) - set(LEVELS))
    if unknown or not levels:
        raise SettingError(f"WCT decodes the levels {', '.join(LEVELS)}; got {', '.join(unknown) or 'none'}")
    if not styles:
        raise SettingError("give at least one STYLE image")
    device = net.device
    height, width = content.shape[1:]
    image = pad_to_multiple(np.asarray(content, np.float32), layer_stride(levels[0]))
    if mask is not None:  # padded as the image is
        mask = np.pad(np.asarray(mask, np.float32), ((0, image.shape[1] - height), (0, image.shape[2] - width)),
                      mode="edge")
    with using_device(device):
        current = device.send(image[None])
        sent = [device.send(np.ascontiguousarray(s[None], np.float32)) for s in styles]
        for level in levels:
            c = extract(net, current, [level])[level][0]
            s = [extract(net, one, [level])[level][0] for one in sent]
            small = None if mask is None else device.send(feature_mask(mask, c.shape[1:]))
            target = stylise_features(c, s, wct, alpha=alpha, weights=weights, mask=small)
            current = device.xp.clip(decoders[level]({level: target[None]}, image.shape[1:]), 0, 255)
        out = np.asarray(to_cpu(current), np.float32)[0, :, :height, :width]
    return np.clip(out, 0, 255).astype(np.float32)
