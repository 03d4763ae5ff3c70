"""Merkle trees of event leaves (RFC 9162 §2.1): the root a checkpoint signs, the inclusion path
of one leaf, and the check a third party runs with nothing but ``hashlib``."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

MAX_LEAVES = 1 << 20


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1)."""
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def root(leaves: Sequence[bytes]) -> bytes:
    """The Merkle tree hash of ``leaves`` (at least one), level by level: pairing neighbours
    and carrying an odd last node up unchanged builds the same tree as RFC 9162's split at the
    largest power of two, without the recursion."""
    assert 0 < len(leaves) <= MAX_LEAVES
    sha256 = hashlib.sha256  # _node, inlined: verify computes a root for every checkpoint
    level = list(leaves)
    while len(level) > 1:
        paired = [
            sha256(b"\x01" + a + b).digest() for a, b in zip(level[::2], level[1::2], strict=False)
        ]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def _split_root(leaves: Sequence[bytes]) -> bytes:
    """RFC 9162's definition, for ``path`` (and the tests that compare the two)."""
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return _node(_split_root(leaves[:k]), _split_root(leaves[k:]))


def path(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The inclusion path of ``leaves[index]``, from the leaf's sibling up to the root's child."""
    assert 0 <= index < len(leaves) <= MAX_LEAVES
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return [*path(leaves[:k], index), _split_root(leaves[k:])]
    return [*path(leaves[k:], index - k), _split_root(leaves[:k])]


def root_from_path(leaf_hash: bytes, index: int, size: int, audit_path: Sequence[bytes]) -> bytes:
    """The root that ``leaf_hash`` at ``index`` of ``size`` leaves and ``audit_path`` imply
    (RFC 9162 §2.1.3.2); raises ValueError for a path of the wrong shape."""
    if not 0 <= index < size:
        raise ValueError("leaf index outside the tree")
    fn, sn = index, size - 1
    r = leaf_hash
    for p in audit_path:
        if sn == 0:
            raise ValueError("path longer than the tree")
        if fn & 1 or fn == sn:
            r = _node(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("path shorter than the tree")
    return r
