"""Published feed-forward stylizers, loaded exactly into :class:`TransformNet`: Magenta's
conditional-instance-norm pastiche generators (TensorFlow V1 checkpoints, Apache-2.0) and
pytorch/examples' fast-neural-style models (torch state dicts, BSD-3); and pytorch-AdaIN's
encoder and decoder (MIT) into :class:`~dfi.nets.encoder.Encoder` and
:class:`~dfi.nets.decoder.Decoder`.

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
from .weights import WeightSource

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
class PretrainedSource(WeightSource):
    """A published stylizer: a :class:`~dfi.nets.weights.WeightSource` and its licence."""

    licence: str = ""


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


# ---------------------------------------------------------------- pytorch-AdaIN
#: ``vgg_normalised.pth``'s nn.Sequential indices: the 1×1 input convolution, then VGG-19's
ADAIN_VGG_KEYS = {"input": 0, "conv1_1": 2, "conv1_2": 5, "conv2_1": 9, "conv2_2": 12, "conv3_1": 16,
                  "conv3_2": 19, "conv3_3": 22, "conv3_4": 25, "conv4_1": 29, "conv4_2": 32, "conv4_3": 35,
                  "conv4_4": 38, "conv5_1": 42, "conv5_2": 45, "conv5_3": 48, "conv5_4": 51}
#: ``decoder.pth``'s convolutions, in order
ADAIN_DECODER_KEYS = (1, 5, 8, 11, 14, 18, 21, 25, 28)


def is_adain_encoder(state) -> bool:
    first = state.get("0.weight")
    return first is not None and tuple(first.shape) == (3, 3, 1, 1) and "2.weight" in state


def is_adain_decoder(state) -> bool:
    return all(f"{k}.weight" in state for k in ADAIN_DECODER_KEYS) and "0.weight" not in state


def adain_encoder(state: dict, source: str):
    """The :class:`~dfi.nets.encoder.Encoder` of ``vgg_normalised.pth`` (every layer it holds,
    up to conv5_4; its 1×1 input convolution folded into conv1_1)."""
    from .encoder import Encoder, fold_input_conv

    if not is_adain_encoder(state):
        raise StylizerFormatError(f"{source}: not pytorch-AdaIN's vgg_normalised.pth (no 1×1 input convolution "
                                  "at key 0 followed by a convolution at key 2)")
    params = {}
    for name, key in list(ADAIN_VGG_KEYS.items())[1:]:
        if f"{key}.weight" not in state:
            break
        params[name] = (np.asarray(state[f"{key}.weight"], np.float32), np.asarray(state[f"{key}.bias"], np.float32))
    if "conv4_1" not in params:
        raise StylizerFormatError(f"{source}: the encoder stops before relu4_1 (AdaIN needs conv1_1 … conv4_1)")
    params["conv1_1"] = fold_input_conv(*params["conv1_1"], state["0.weight"], state["0.bias"])
    return Encoder(params, name=source)


def adain_decoder(state: dict, source: str):
    """The :class:`~dfi.nets.decoder.Decoder` of ``decoder.pth`` (:func:`adain_spec`; it
    outputs [0, 1], clamped when saved, here ×255)."""
    from .decoder import Decoder, adain_spec

    if not is_adain_decoder(state):
        raise StylizerFormatError(f"{source}: not pytorch-AdaIN's decoder.pth (convolutions at keys "
                                  f"{', '.join(map(str, ADAIN_DECODER_KEYS))})")
    net = Decoder(adain_spec(width=state["1.weight"].shape[1] / 512))
    for index, key in enumerate(ADAIN_DECODER_KEYS):
        _set(net, f"conv{index}", np.asarray(state[f"{key}.weight"], np.float32),
             np.asarray(state[f"{key}.bias"], np.float32), source, f"{key}.weight")
    return net


def sniff(path: str | os.PathLike):
    """("magenta", tensors), ("fast-neural-style" | "adain-encoder" | "adain-decoder", state)
    for a published network's file, else None (a VGG's weights, or something else: the caller decides). A file named
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
        for kind, test in (("fast-neural-style", is_fast_neural_style), ("adain-encoder", is_adain_encoder),
                           ("adain-decoder", is_adain_decoder)):
            if test(state):
                return kind, state
    return None
