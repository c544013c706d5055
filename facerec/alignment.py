"""Face crops: the tutorial's box crop and a 5-point similarity alignment, both 160x160 RGB. Pure numpy.

Shared: the detector cuts crops with it, and the gallery too when it re-embeds a kept picture where its face
was found (gallery/reembed.py).
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

CROP_SIZE = 160

# The ArcFace 112x112 five-point template (left eye, right eye, nose, mouth left, mouth right),
# scaled to 160: the face keeps the margin ArcFace crops have around it.
ARCFACE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)
TEMPLATE_160 = ARCFACE_112 * (CROP_SIZE / 112.0)


def tutorial_box(x1: float, y1: float, x2: float, y2: float) -> tuple[int, int, int, int]:
    """(x, y, width, height) in whole pixels, rounded as mtcnn's detect_faces reports a box.

    mtcnn rounds x1, y1 and the width x2 - x1, not x2 itself; the tutorial crops from that box.
    """
    return (
        int(np.round(x1)),
        int(np.round(y1)),
        int(np.round(x2 - x1)),
        int(np.round(y2 - y1)),
    )


def box_crop(pixels: NDArray[np.uint8], box: tuple[int, int, int, int]) -> NDArray[np.uint8]:
    """The tutorial's crop: pixels[y:y+h, x:x+w] resized to 160x160 by PIL's default resampling.

    pixels: (h, w, 3) uint8 RGB; box: (x, y, width, height) whole pixels. Returns (160, 160, 3) uint8.
    """
    # mtcnn boxes can start at negative coordinates; the tutorial takes abs() so the slice does not wrap.
    x, y, w, h = box
    x, y = abs(x), abs(y)
    face = pixels[y : y + max(h, 1), x : x + max(w, 1)]
    if face.size == 0:
        face = pixels[min(y, pixels.shape[0] - 1) :, min(x, pixels.shape[1] - 1) :][:1, :1]
    return np.asarray(Image.fromarray(face).resize((CROP_SIZE, CROP_SIZE)), dtype=np.uint8)


def similarity_transform(src: NDArray[np.float64], dst: NDArray[np.float64]) -> NDArray[np.float64]:
    """The least-squares similarity (rotation, uniform scale, translation) taking src points to dst.

    src, dst: (n, 2). Returns the (2, 3) affine matrix. Umeyama (1991), without reflection.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rotation = u @ np.diag(d) @ vt
    var_src = (src_c**2).sum() / len(src)
    scale = (s * d).sum() / var_src if var_src > 0 else 1.0
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


def similarity_crop(pixels: NDArray[np.uint8], landmarks: NDArray[np.float64]) -> NDArray[np.uint8]:
    """The face warped so its five landmarks land on the 160-px template. landmarks: (5, 2) x, y.

    Returns (160, 160, 3) uint8; parts of the template outside the picture are black.
    """
    matrix = similarity_transform(landmarks, TEMPLATE_160)
    warped = cv2.warpAffine(
        pixels, matrix, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )
    return np.ascontiguousarray(warped, dtype=np.uint8)
