"""Published feed-forward stylizers, loaded exactly into :class:`TransformNet`: Magenta's
conditional-instance-norm pastiche generators (TensorFlow V1 checkpoints, Apache-2.0) and
pytorch/examples' fast-neural-style models (torch state dicts, BSD-3).

Both are Johnson et al.'s network as dfi's stylizer is, with the differences a
:class:`~dfi.nets.stylizer.Variant` records (Magenta: no biases, the output layer
normalised too; pytorch/examples: input RGB 0–255, output clamped, no sigmoid). Weights are
mapped layer by layer (TensorFlow's HWIO to OIHW), shapes checked against the network the
first layer's width implies. Johnson's own ``.t7`` models are another network and licensed
for non-commercial use only: not read.
"""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_tools.download import Mirror

from ..core.errors import FileFormatError
from .stylizer import TransformNet

#: dfi's layer → Magenta's variable scope (under ``transformer/``)
MAGENTA_SCOPES = {"c1": "contract/conv1", "d1": "contract/conv2", "d2": "contract/conv3",
                  **{f"r{b}{i}": f"residual/residual{b}/conv{i}" for b in range(1, 6) for i in (1, 2)},
                  "u1": "expand/conv1/conv", "u2": "expand/conv2/conv", "c2": "expand/conv3/conv"}
#: dfi's layer → pytorch/examples' (convolution module, instance norm module or None)
TORCH_MODULES = {"c1": ("conv1", "in1"), "d1": ("conv2", "in2"), "d2": ("conv3", "in3"),
                 **{f"r{b}{i}": (f"res{b}.conv{i}", f"res{b}.in{i}") for b in range(1, 6) for i in (1, 2)},
                 "u1": ("deconv1", "in4"), "u2": ("deconv2", "in5"), "c2": ("deconv3", None)}


class StylizerFormatError(FileFormatError):
    """A file that is not one of the published stylizers dfi reads (named in the message)."""


@dataclass(frozen=True)
class PretrainedSource:
    """A published stylizer: where it is, what it is and under which licence."""

    name: str
    filename: str
    mirrors: tuple[Mirror, ...]
    description: str
    licence: str


PRETRAINED: dict[str, PretrainedSource] = {s.name: s for s in (
    # no checksums are published for these: what arrives is verified by its structure
    PretrainedSource("magenta-monet", "multistyle-pastiche-generator-monet.ckpt", (Mirror(
        "http://download.magenta.tensorflow.org/models/multistyle-pastiche-generator-monet.ckpt"),),
        "Magenta's 10-style Monet pastiche generator (Dumoulin et al. 2017)", "Apache-2.0"),
    PretrainedSource("magenta-varied", "multistyle-pastiche-generator-varied.ckpt", (Mirror(
        "http://download.magenta.tensorflow.org/models/multistyle-pastiche-generator-varied.ckpt"),),
        "Magenta's 32-style varied pastiche generator (Dumoulin et al. 2017)", "Apache-2.0"),
    PretrainedSource("fast-neural-style", "saved_models.zip", (Mirror(
        "https://www.dropbox.com/s/lrvwfehqdcxoza8/saved_models.zip?dl=1"),),
        "pytorch/examples fast_neural_style: candy, mosaic, rain_princess, udnie", "BSD-3-Clause"),
)}


def _width_of(first_out: int, source: str) -> float:
    width = first_out / 32
    if first_out < 1 or first_out != max(1, int(round(32 * width))):
        raise StylizerFormatError(f"{source}: its first convolution has {first_out} outputs; this family has 32·width")
    return width


def _set(net: TransformNet, name: str, weight: np.ndarray, bias, source: str, key: str) -> None:
    link = getattr(net, name)
    if weight.shape != link.W.shape:
        raise StylizerFormatError(f"{source}: {key} has shape {weight.shape}, the network needs {link.W.shape}")
    link.W.array[...] = weight
    if link.b is not None:
        link.b.array[...] = 0.0 if bias is None else bias


def _set_norms(net: TransformNet, name: str, gamma: np.ndarray, beta: np.ndarray, source: str, key: str) -> None:
    count = net.channels[name]
    if gamma.shape != (net.n_styles, count) or beta.shape != gamma.shape:
        raise StylizerFormatError(f"{source}: {key} has shape {gamma.shape}, the network needs "
                                  f"({net.n_styles}, {count})")
    for style in range(net.n_styles):
        table = net.styles[style]
        getattr(table, f"{name}_gamma").array[...] = gamma[style]
        getattr(table, f"{name}_beta").array[...] = beta[style]


def is_magenta(tensors) -> bool:
    return f"transformer/{MAGENTA_SCOPES['c1']}/weights" in tensors


def from_magenta(tensors: dict[str, np.ndarray], source: str) -> tuple[TransformNet, list[str]]:
    """The network of a Magenta checkpoint's ``transformer/…`` variables, and what was
    repaired: non-finite weights (the varied file's NaNs in the last output channel of
    ``contract/conv1/weights``, tensorflow#8550) are set to 0, as the known fix does —
    that channel's normalised output is then its β alone."""
    key = f"transformer/{MAGENTA_SCOPES['c1']}/weights"
    if not is_magenta(tensors):
        raise StylizerFormatError(f"{source}: a TensorFlow checkpoint without Magenta's {key}; "
                                  "not a pastiche generator")
    gamma = tensors.get(f"transformer/{MAGENTA_SCOPES['c1']}/InstanceNorm/gamma")
    if gamma is None or gamma.ndim != 2:
        raise StylizerFormatError(f"{source}: no conditional instance norm (gamma [styles, C]) under "
                                  f"transformer/{MAGENTA_SCOPES['c1']}/InstanceNorm")
    net = TransformNet(gamma.shape[0], width=_width_of(tensors[key].shape[3], source), variant="magenta")
    repaired = []
    for name, scope in MAGENTA_SCOPES.items():
        prefix = f"transformer/{scope}"
        try:
            weight, gamma, beta = (tensors[f"{prefix}/{part}"] for part in
                                   ("weights", "InstanceNorm/gamma", "InstanceNorm/beta"))
        except KeyError as exc:
            raise StylizerFormatError(f"{source}: no variable {exc.args[0]}") from None
        weight = np.asarray(weight, np.float32)
        bad = ~np.isfinite(weight)
        if bad.any():
            repaired.append(f"{prefix}/weights: {int(bad.sum())} non-finite values set to 0")
            weight = np.where(bad, 0.0, weight).astype(np.float32)
        _set(net, name, np.ascontiguousarray(weight.transpose(3, 2, 0, 1)), None, source, f"{prefix}/weights")
        _set_norms(net, name, np.asarray(gamma, np.float32), np.asarray(beta, np.float32), source,
                   f"{prefix}/InstanceNorm/gamma")
    return net, repaired


def is_fast_neural_style(state) -> bool:
    return "conv1.conv2d.weight" in state and "deconv3.conv2d.weight" in state


def from_fast_neural_style(state: dict[str, np.ndarray], source: str) -> TransformNet:
    """The network of a pytorch/examples ``TransformerNet`` state dict (old files'
    ``in*.running_mean/var`` are ignored: instance statistics at inference)."""
    if not is_fast_neural_style(state):
        raise StylizerFormatError(f"{source}: a torch state dict without pytorch/examples' conv1.conv2d / "
                                  "deconv3.conv2d keys; not a fast-neural-style TransformerNet")
    net = TransformNet(1, width=_width_of(state["conv1.conv2d.weight"].shape[0], source), variant="fast-neural-style")
    for name, (conv, norm) in TORCH_MODULES.items():
        try:
            _set(net, name, np.asarray(state[f"{conv}.conv2d.weight"], np.float32),
                 np.asarray(state[f"{conv}.conv2d.bias"], np.float32), source, f"{conv}.conv2d.weight")
            if norm is not None:
                _set_norms(net, name, np.asarray(state[f"{norm}.weight"], np.float32)[None],
                           np.asarray(state[f"{norm}.bias"], np.float32)[None], source, f"{norm}.weight")
        except KeyError as exc:
            raise StylizerFormatError(f"{source}: no key {exc.args[0]}") from None
    return net


def sniff(path: str | os.PathLike):
    """("magenta", tensors) or ("fast-neural-style", state) for a published stylizer's
    file, else None (a VGG's weights, or something else: the caller decides). A file named
    like a TensorFlow checkpoint (``.ckpt``, V2's parts) is read as one, so a truncated or
    V2 checkpoint gets the checkpoint reader's error."""
    import re

    from .tfcheckpoint import V2_PART, MAGIC, read_checkpoint
    from .weights import read_torch_state_dict

    path = Path(path)
    if path.suffix == ".ckpt" or re.search(V2_PART, path.name):  # TensorFlow's: its own errors
        return "magenta", read_checkpoint(path)
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 8))
        tail = handle.read(8)
    if len(tail) == 8 and int.from_bytes(tail, "little") == MAGIC:
        return "magenta", read_checkpoint(path)
    if path.suffix in (".pth", ".pt", ".model") or zipfile.is_zipfile(path):
        try:
            state = read_torch_state_dict(path)
        except ValueError:
            return None
        if is_fast_neural_style(state):
            return "fast-neural-style", state
    return None
