"""The LFW frame's geometry: where its faces' landmarks sit, its size, the crop DFI works
on and the edit's feathering. Plain values (NumPy and the synthetic LFW's layout only), so
that settings and the command line can name them without loading an image library."""
from __future__ import annotations

import numpy as np

from data_tools.synth import FACE_CENTRE, LEFT_EYE, MOUTH, RIGHT_EYE, SIZE

#: where the faces of the 250×250 frame have their left eye, right eye and mouth centre
#: (x, y), taken from the synthetic LFW's geometry (placed like deep-funneled LFW).
LFW_TEMPLATE = np.array([[FACE_CENTRE[0] + x, FACE_CENTRE[1] + y] for x, y in (LEFT_EYE, RIGHT_EYE, MOUTH)])
FRAME = (SIZE, SIZE)
#: the part of the frame DFI works on (l, t, r, b): the LFW crop, as chainer-dfi uses it
LFW_CROP = (40, 20, 210, 190)
#: share of each side of the crop over which an edit fades out
FEATHER = 0.12
