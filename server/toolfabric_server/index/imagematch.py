"""Content keys for reverse image search: a perceptual hash plus ORB features.

The perceptual hash (DCT pHash, 64 bits) finds the same picture after rescaling and
recompression in one popcount per indexed image. It does not survive crops, so every image
also keeps up to `MAX_FEATURES` ORB keypoints; a query's descriptors are matched against all
indexed descriptors at once (Hamming brute force, Lowe's ratio test), images are ranked by
votes, and the best few are verified geometrically (RANSAC similarity transform) so only a
consistent region match counts. ORB's scale pyramid covers the 2-4x zoom of a crop.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import imagehash
import numpy as np
from PIL import Image

from toolfabric_server.common.images import PIXELS_PER_BYTE, decode_bgr

# Images are normalised to this longest side before hashing and feature extraction, so
# descriptors of the same content at different resolutions land on similar scales.
WORK_SIDE = 512
MAX_FEATURES = 500
QUERY_FEATURES = 1000
PHASH_MAX_DISTANCE = 10  # of 64 bits: same picture after rescale/recompress
RATIO = 0.8
MIN_INLIERS = 12
VERIFY_TOP = 8


@dataclass(frozen=True)
class Fingerprint:
    content_hash: str  # sha256 of the bytes: the identity of the exact file
    phash: int  # 64-bit perceptual hash, as a signed int64 (fits SQLite and ES longs)
    width: int
    height: int
    keypoints: np.ndarray  # float32 (n, 2) in work coordinates
    descriptors: np.ndarray  # uint8 (n, 32)

    def features_blob(self) -> bytes:
        n = np.int32(len(self.keypoints)).tobytes()
        return n + self.keypoints.astype(np.float32).tobytes() + self.descriptors.astype(np.uint8).tobytes()

    @staticmethod
    def features_from_blob(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
        n = int(np.frombuffer(blob[:4], dtype=np.int32)[0])
        kp = np.frombuffer(blob[4 : 4 + 8 * n], dtype=np.float32).reshape(n, 2)
        desc = np.frombuffer(blob[4 + 8 * n : 4 + 8 * n + 32 * n], dtype=np.uint8).reshape(n, 32)
        return kp, desc


def _to_signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


ORB_MIN_SIDE = 64


def _work_gray(bgr: np.ndarray) -> np.ndarray:
    h, w = bgr.shape[:2]
    scale = WORK_SIDE / max(h, w)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = cv2.resize(bgr, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=interp)
    return cv2.cvtColor(resized, cv2.COLOR_BGR2GRAY)


def fingerprint(data: bytes, max_pixels: int, n_features: int = MAX_FEATURES, *,
                max_pixels_per_byte: int = PIXELS_PER_BYTE) -> Fingerprint:
    """Hash and features of encoded image bytes (raises InvalidImage for non-images); the limits are the
    deployment's (CommonSettings.max_image_pixels, max_image_pixels_per_byte)."""
    bgr = decode_bgr(data, max_pixels, max_pixels_per_byte)
    gray = _work_gray(bgr)
    ph = imagehash.phash(Image.fromarray(gray))
    phash = _to_signed64(int(str(ph), 16))
    kps: Sequence[cv2.KeyPoint] = ()
    desc = None
    # ORB's image pyramid needs room for its 31-pixel patches: a 20000x3 strip shrinks to 512x1, where
    # OpenCV asserts instead of finding nothing. Such images are matched by their hash alone.
    if min(gray.shape) >= ORB_MIN_SIDE:
        orb = cv2.ORB.create(nfeatures=n_features)
        kps, desc = orb.detectAndCompute(gray, np.full(gray.shape, 255, np.uint8))
    if desc is None or not kps:
        points = np.zeros((0, 2), np.float32)
        desc = np.zeros((0, 32), np.uint8)
    else:
        points = np.array([k.pt for k in kps], dtype=np.float32)
    h, w = bgr.shape[:2]
    return Fingerprint(hashlib.sha256(data).hexdigest(), phash, w, h, points, desc)


def hamming64(a: np.ndarray, b: int) -> np.ndarray:
    """Bit distance between each int64 in `a` and `b`."""
    x = np.bitwise_xor(a.view(np.uint64), np.uint64(b & ((1 << 64) - 1)))
    return np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)


@dataclass(frozen=True)
class Match:
    content_hash: str
    score: float  # 1.0 = same picture; lower = a region of it
    how: str  # "phash" or "features"


class FeatureIndex:
    """All indexed fingerprints of one index generation, in memory, for matching queries."""

    def __init__(self, entries: list[tuple[str, int, bytes]]) -> None:
        self.hashes = [h for h, _, _ in entries]
        self.phashes = np.array([p for _, p, _ in entries], dtype=np.int64)
        kps, descs, owners = [], [], []
        for i, (_, _, blob) in enumerate(entries):
            kp, desc = Fingerprint.features_from_blob(blob)
            kps.append(kp)
            descs.append(desc)
            owners.append(np.full(len(kp), i, dtype=np.int32))
        self.keypoints = np.concatenate(kps) if kps else np.zeros((0, 2), np.float32)
        self.descriptors = np.concatenate(descs) if descs else np.zeros((0, 32), np.uint8)
        self.owners = np.concatenate(owners) if owners else np.zeros(0, np.int32)
        self._matcher = cv2.BFMatcher(cv2.NORM_HAMMING)

    def __len__(self) -> int:
        return len(self.hashes)

    def search(self, query: Fingerprint, k: int) -> list[Match]:
        found: dict[str, Match] = {}
        if len(self.hashes):
            dist = hamming64(self.phashes, query.phash)
            for i in np.argsort(dist, kind="stable"):
                if dist[i] > PHASH_MAX_DISTANCE:
                    break
                found[self.hashes[i]] = Match(self.hashes[i], 1.0 - float(dist[i]) / 64.0, "phash")
        for i, inliers in self._feature_candidates(query):
            h = self.hashes[i]
            if h not in found:
                found[h] = Match(h, min(0.85, 0.3 + inliers / 200.0), "features")
        return sorted(found.values(), key=lambda m: -m.score)[:k]

    def _feature_candidates(self, query: Fingerprint) -> list[tuple[int, int]]:
        if len(query.descriptors) < 2 or len(self.descriptors) < 2:
            return []
        pairs = self._matcher.knnMatch(query.descriptors, self.descriptors, k=2)
        good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < RATIO * p[1].distance]
        if not good:
            return []
        by_owner: dict[int, list[cv2.DMatch]] = {}
        for m in good:
            by_owner.setdefault(int(self.owners[m.trainIdx]), []).append(m)
        ranked = sorted(by_owner.items(), key=lambda kv: -len(kv[1]))[:VERIFY_TOP]
        verified = []
        for owner, matches in ranked:
            if len(matches) < MIN_INLIERS:
                continue
            src = query.keypoints[[m.queryIdx for m in matches]]
            dst = self.keypoints[[m.trainIdx for m in matches]]
            # A similarity transform (scale, rotation, shift) is what crops and rescales produce.
            _, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=6.0)
            inliers = int(mask.sum()) if mask is not None else 0
            if inliers >= MIN_INLIERS:
                verified.append((owner, inliers))
        return sorted(verified, key=lambda t: -t[1])
