"""Plain facts about dfi's networks, with no Chainer (the command line checks its flags
against them before any network loads): VGG-19's layer names and block layout, the
size multiple of the feed-forward stylizer and the feature decoders' kinds of layer."""
from __future__ import annotations

#: (block, convolutions per block, output channels) of VGG-19.
VGG19_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 4, 256), (4, 4, 512), (5, 4, 512))


def vgg19_layer_names() -> tuple[str, ...]:
    names = []
    for block, convs, _ in VGG19_BLOCKS:
        names += [f"conv{block}_{i}" for i in range(1, convs + 1)] + [f"pool{block}"]
    return tuple(names)


#: the stylizer's output is a multiple of this in both sides (two stride-2 layers); inputs
#: are padded to it
MULTIPLE = 4


#: a feature decoder's padding, upsampling and normalisation (its record's ``padding``,
#: ``upsample``, ``norm``; the first of each is the default, see dfi.nets.decoder)
PADDINGS = ("reflect", "zero")
UPSAMPLINGS = ("nearest", "bilinear")
NORMS = ("none", "instance")
