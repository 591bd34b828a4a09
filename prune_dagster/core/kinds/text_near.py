"""Near-duplicate texts: MinHash of each text's shingle set, LSH bands, every candidate confirmed by exact Jaccard.

Signatures are datasketch's "affine32" MinHash (its permutations for `seed`, the same arithmetic), computed
for a block of texts at once in numpy; the bands and rows per band are the ones `datasketch.MinHashLSH`
picks for the threshold. The buckets are sorted numpy arrays instead of MinHashLSH's dicts of sets, with
the same candidates (tests check both against datasketch): for 200,000 signatures MinHashLSH took 11.5 s
to insert, 6.4 s to query and 1.2 GB (threshold 0.7, 14 bands); sorted keys find the candidates in 1.0 s
(16 bands). LSH only proposes pairs: a pair is kept only if the exact Jaccard similarity of the two
shingle sets (64-bit shingle hashes) reaches the threshold. 200,000 texts of ~150 characters: 12 s on
one core, 190 MB at the peak (benchmarks/results/text_near_dup_check.json).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from prune_dagster.core.errors import ConfigError, DatasetError
from prune_dagster.core.infra.parallel import Mapper, row_blocks, serial_map
from prune_dagster.core.kinds.text_tokens import normalize, tokens

SHINGLES = ("words", "word_bigrams", "char5")
# Measured on Rotten Tomatoes with 2% planted near copies and 2% case/whitespace copies
# (benchmarks/text_near_dup_check.py): word sets at 0.8 give F1 0.988 on the planted pairs, and the 7 pairs
# of real texts they link are all real near copies (a word added or dropped, quotes, punctuation); at 0.75
# they start linking distinct reviews ("The acting / soundtrack alone is worth the price of admission").
# Word bigrams lose swapped words (F1 0.844 at 0.8), character 5-grams lose replaced words in short texts
# (0.921) and take 4x the time.
DEFAULT_SHINGLE = "words"
DEFAULT_THRESHOLD = 0.8
BLOCK_ROWS = 8192  # texts per mapper item
CHUNK_SHINGLES = 1 << 18  # shingles per signature sub-block: a (2^18, 32) uint32 product is 32 MiB
CHUNK_ELEMENTS = 1 << 21  # set elements per exact-Jaccard chunk
PERM_GROUP = 32
# MinHashLSH's (false positive, false negative) weights when it picks bands and rows: every candidate is
# confirmed exactly, so an extra candidate costs a set comparison while a missed pair is a wrong answer.
# At 0.8 with 128 permutations, equal weights (its default: 9 bands x 13 rows) find a pair at exactly the
# threshold 40% of the time, these (16 x 8) 95%: on Rotten Tomatoes (seeds 0-2) LSH then misses 0-3
# instead of 26-30 of the 556 planted pairs above the threshold, for ~670 instead of ~600 candidates.
LSH_WEIGHTS = (0.05, 0.95)
MAX32 = np.uint32(0xFFFFFFFF)
U64 = np.uint64


@dataclass(frozen=True)
class ShingleSets:
    """Each text's set of shingles as sorted, unique 64-bit hashes: row k is values[offsets[k]:offsets[k + 1]]."""

    values: np.ndarray  # uint64
    offsets: np.ndarray  # int64, (N + 1,)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)


def fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, as datasketch applies it before its affine permutations."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def fmix64(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> U64(33))
    h = h * U64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> U64(33))
    h = h * U64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> U64(33))


def fold32(values: np.ndarray) -> np.ndarray:
    """The 32-bit input hash MinHash permutes: the two halves of each 64-bit shingle hash xor-ed."""
    return (values ^ (values >> U64(32))).astype(np.uint32)


def _word_hashes(texts: Sequence[str], bigrams: bool) -> tuple[np.ndarray, np.ndarray]:
    """(shingle hashes, text row of each): token hashes, or hashes of adjacent token pairs; a one-token
    text's shingle is its token."""
    toks = [tokens(t) for t in texts]
    counts = np.fromiter((len(t) for t in toks), dtype=np.int64, count=len(toks))
    flat = np.fromiter((w for t in toks for w in t), dtype=object, count=int(counts.sum()))
    codes, uniques = pd.factorize(flat)
    # blake2b of each distinct token: stable across processes and library versions (a kept index relies on it)
    digests = b"".join(hashlib.blake2b(u.encode("utf-8", "surrogatepass"), digest_size=8).digest() for u in uniques)
    h = np.frombuffer(digests, dtype="<u8").astype(U64)[codes]
    row = np.repeat(np.arange(len(toks)), counts)
    if not bigrams or len(h) == 0:
        return h, row
    same = row[1:] == row[:-1]
    pair = fmix64(h[:-1] * U64(0x9E3779B97F4A7C15) + h[1:])[same]
    single = counts[row] == 1
    return np.concatenate([pair, h[single]]), np.concatenate([row[1:][same], row[single]])


def _char_hashes(texts: Sequence[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """(hashes of the character n-grams of each normalised text, text row of each); a non-empty text
    shorter than n is one shingle (padded with NUL)."""
    norm = [normalize(t) for t in texts]
    lengths = np.fromiter((len(t) for t in norm), dtype=np.int64, count=len(norm))
    padded = np.where(lengths > 0, np.maximum(lengths, n), 0)
    cps = np.frombuffer("".join(t.ljust(p, "\0") for t, p in zip(norm, padded, strict=True)).encode("utf-32-le"),
                        dtype=np.uint32).astype(U64)
    windows = np.maximum(padded - n + 1, 0)
    starts = np.repeat(np.cumsum(padded) - padded - (np.cumsum(windows) - windows), windows) + np.arange(windows.sum())
    h = np.zeros(len(starts), dtype=U64)
    for k in range(n):
        h = h * U64(0x100000001B3) + cps[starts + k]
    return fmix64(h), np.repeat(np.arange(len(norm)), windows)


def shingle_sets(texts: Sequence[str], shingle: str = DEFAULT_SHINGLE) -> ShingleSets:
    """Each text's shingle set: 'words' (its set of tokens), 'word_bigrams' (adjacent token pairs) or
    'char5' (character 5-grams of the normalised text). A text with no token has no shingle."""
    if shingle == "words":
        h, row = _word_hashes(texts, bigrams=False)
    elif shingle == "word_bigrams":
        h, row = _word_hashes(texts, bigrams=True)
    elif shingle == "char5":
        h, row = _char_hashes(texts, 5)
    else:
        raise ConfigError(f"shingle={shingle!r}; expected one of {SHINGLES}")
    order = np.lexsort((h, row))
    h, row = h[order], row[order]
    first = np.ones(len(h), dtype=bool)
    first[1:] = (h[1:] != h[:-1]) | (row[1:] != row[:-1])
    counts = np.bincount(row[first], minlength=len(texts))
    return ShingleSets(values=h[first], offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))


@functools.lru_cache(maxsize=64)
def permutations(num_perm: int, seed: int) -> np.ndarray:
    """(2, num_perm) uint32: datasketch's affine32 permutation parameters (a odd, b) for `seed`."""
    from datasketch import MinHash

    return np.asarray(MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations, dtype=np.uint32)


def minhash_signatures(sets: ShingleSets, num_perm: int, seed: int) -> np.ndarray:
    """(N, num_perm) uint32 MinHash of each set (all 0xFFFFFFFF for an empty set, as datasketch)."""
    a, b = permutations(num_perm, seed)
    sig = np.full((len(sets), num_perm), MAX32, dtype=np.uint32)
    h = fmix32(fold32(sets.values))
    rows = np.flatnonzero(sets.sizes() > 0)
    if len(rows) == 0:
        return sig
    starts = sets.offsets[rows]
    group = starts // CHUNK_SHINGLES  # rows cut into groups of about CHUNK_SHINGLES shingles (bounded memory)
    cuts = np.concatenate([[0], np.flatnonzero(np.diff(group)) + 1, [len(rows)]])
    for s, e in zip(cuts[:-1], cuts[1:], strict=True):
        lo, hi = starts[s], sets.offsets[rows[e - 1] + 1]
        hv = h[lo:hi, None]
        for p in range(0, num_perm, PERM_GROUP):
            phv = hv * a[None, p:p + PERM_GROUP] + b[None, p:p + PERM_GROUP]  # uint32: wraps mod 2^32
            sig[rows[s:e], p:p + PERM_GROUP] = np.minimum.reduceat(phv, starts[s:e] - lo, axis=0)
    return sig


def sketch_block(texts: np.ndarray, shingle: str, num_perm: int, seed: int, bands: int,
                 rows: int) -> tuple[np.ndarray, ShingleSets]:
    """One mapper item: (LSH band keys (bands, n), shingle sets) of a block of texts. Only the band keys
    leave the block: 8 bytes per band instead of 4 per permutation."""
    sets = shingle_sets(texts, shingle)
    return band_keys(minhash_signatures(sets, num_perm, seed), bands, rows), sets


def sketch(texts: np.ndarray, shingle: str, num_perm: int, seed: int, bands: int, rows: int,
           mapper: Mapper = serial_map, block_rows: int = BLOCK_ROWS) -> tuple[np.ndarray, ShingleSets]:
    """Band keys and shingle sets of all texts, computed in row blocks through `mapper`."""
    items = [texts[s:e] for s, e in row_blocks(len(texts), block_rows)]
    shared = {"shingle": shingle, "num_perm": num_perm, "seed": seed, "bands": bands, "rows": rows}
    parts = mapper(sketch_block, items, shared)
    if not parts:
        return np.empty((bands, 0), dtype=U64), ShingleSets(np.empty(0, U64), np.zeros(1, np.int64))
    sizes = np.concatenate([p[1].sizes() for p in parts])
    sets = ShingleSets(values=np.concatenate([p[1].values for p in parts]),
                       offsets=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64))
    return np.concatenate([p[0] for p in parts], axis=1), sets


@functools.lru_cache(maxsize=64)
def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) that datasketch's MinHashLSH picks for `threshold`, weighted towards recall
    (LSH_WEIGHTS)."""
    from datasketch import MinHashLSH

    try:  # above 0.99 MinHashLSH wants a single band; the 0.99 bands still catch every identical pair
        lsh = MinHashLSH(threshold=min(threshold, 0.99), num_perm=num_perm, weights=LSH_WEIGHTS)
    except ValueError as exc:
        raise ConfigError(f"threshold={threshold}, num_perm={num_perm}: no LSH banding ({exc}); use a lower "
                          "threshold or more permutations") from exc
    return int(lsh.b), int(lsh.r)


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(bands, N) uint64: one hash per band of each signature (a collision only adds a candidate)."""
    keys = np.empty((bands, len(sig)), dtype=U64)
    for k in range(bands):
        key = np.full(len(sig), U64(k + 1))
        for col in sig[:, k * rows:(k + 1) * rows].T:
            key = fmix64((key ^ col.astype(U64)) * U64(0x100000001B3))
        keys[k] = key
    return keys


def expand_ranges(starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(owner, position): for each k, counts[k] positions starts[k], starts[k] + 1, ...; owner = k."""
    owner = np.repeat(np.arange(len(counts)), counts)
    offset = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    return owner, np.repeat(starts, counts) + offset


def same_key_pairs(keys: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Codes i * 2^32 + j of the pairs i < j of `rows` whose keys are equal."""
    order = np.argsort(keys, kind="stable")
    k, rw = keys[order], rows[order]
    new = np.ones(len(k), dtype=bool)
    new[1:] = k[1:] != k[:-1]
    gstart = np.flatnonzero(new)
    gid = np.cumsum(new) - 1
    gend = np.append(gstart[1:], len(k))[gid]
    left, right = expand_ranges(np.arange(len(k)) + 1, gend - np.arange(len(k)) - 1)
    i, j = rw[left], rw[right]
    return np.unique(np.minimum(i, j).astype(np.int64) << 32 | np.maximum(i, j))


def exact_jaccard(sa: ShingleSets, ia: np.ndarray, sb: ShingleSets, ib: np.ndarray) -> np.ndarray:
    """Exact Jaccard similarity of set ia[k] of `sa` and set ib[k] of `sb`, in chunks (bounded memory)."""
    na, nb = sa.sizes()[ia], sb.sizes()[ib]
    out = np.zeros(len(ia), dtype=np.float64)
    group = np.cumsum(na + nb) // CHUNK_ELEMENTS
    cuts = np.concatenate([[0], np.flatnonzero(np.diff(group)) + 1, [len(ia)]])
    for s, e in zip(cuts[:-1], cuts[1:], strict=True):
        pa, posa = expand_ranges(sa.offsets[ia[s:e]], na[s:e])
        pb, posb = expand_ranges(sb.offsets[ib[s:e]], nb[s:e])
        values = np.concatenate([sa.values[posa], sb.values[posb]])
        pair = np.concatenate([pa, pb])
        order = np.lexsort((values, pair))
        values, pair = values[order], pair[order]
        both = (values[1:] == values[:-1]) & (pair[1:] == pair[:-1])  # sets are unique: a repeat is in both
        inter = np.bincount(pair[1:][both], minlength=e - s)
        union = na[s:e] + nb[s:e] - inter
        out[s:e] = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    return out


def check_texts(texts: Any) -> np.ndarray:
    """`texts` as a 1-D object array of str; raises naming the first row that is not a str."""
    arr = np.asarray(texts, dtype=object)
    if arr.ndim != 1:
        raise DatasetError(f"texts must be 1-D, got shape {arr.shape}")
    bad = next((k for k, t in enumerate(arr) if not isinstance(t, str)), None)
    if bad is not None:
        raise DatasetError(f"texts[{bad}] is {type(arr[bad]).__name__}, expected str (use '' for a missing text)")
    return arr


def check_settings(threshold: float, num_perm: int, shingle: str) -> None:
    if not 0.0 < threshold <= 1.0:
        raise ConfigError(f"threshold={threshold}; expected a Jaccard similarity in (0, 1]")
    if not isinstance(num_perm, int) or not 2 <= num_perm <= 1024:
        raise ConfigError(f"num_perm={num_perm!r}; expected an integer in [2, 1024]")
    if shingle not in SHINGLES:
        raise ConfigError(f"shingle={shingle!r}; expected one of {SHINGLES}")


def candidate_pairs(keys: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Codes i * 2^32 + j (i < j) of the texts that share a band bucket; texts without shingles never pair."""
    live = np.flatnonzero(sizes > 0)
    codes = np.empty(0, dtype=np.int64)
    for band in keys[:, live]:  # the union grows band by band: memory follows the candidates, not bands x pairs
        codes = np.union1d(codes, same_key_pairs(band, live))
    return codes


def near_duplicate_pairs(texts: Any, threshold: float, num_perm: int = 128, seed: int = 0,
                         mapper: Mapper = serial_map, shingle: str = DEFAULT_SHINGLE,
                         block_rows: int = BLOCK_ROWS) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """(i, j, jaccard, meta): the unordered pairs i < j whose shingle sets have exact Jaccard >= threshold,
    sorted by (i, j). Candidates come from LSH over MinHash signatures (computed in row blocks through
    `mapper`; the result does not depend on it); each is confirmed by its exact Jaccard. `texts` whose
    shingle sets are identical all pair with each other: remove exact duplicates first on large data."""
    check_settings(threshold, num_perm, shingle)
    texts = check_texts(texts)
    bands, rows = lsh_bands(threshold, num_perm)
    keys, sets = sketch(texts, shingle, num_perm, seed, bands, rows, mapper, block_rows)
    codes = candidate_pairs(keys, sets.sizes())
    i, j = codes >> 32, codes & 0xFFFFFFFF
    jac = exact_jaccard(sets, i, sets, j)
    keep = jac >= threshold
    meta = {"shingle": shingle, "num_perm": num_perm, "bands": bands, "rows_per_band": rows,
            "candidate_pairs": len(codes), "pairs_rejected_by_exact_jaccard": int((~keep).sum()),
            "texts_without_shingles": int((sets.sizes() == 0).sum())}
    return i[keep], j[keep], jac[keep], meta


@dataclass
class TextNearIndex:
    """What incremental pruning keeps of the old texts: their LSH band keys (sorted per band) and shingle
    sets, so new texts are decided against them without recomputing them. Plain arrays: picklable."""

    threshold: float
    num_perm: int
    seed: int
    shingle: str
    bands: int
    rows_per_band: int
    keys: np.ndarray  # (bands, M) uint64, each band's keys sorted
    key_rows: np.ndarray  # (bands, M) int64: the old row of each key
    sets: ShingleSets

    @classmethod
    def build(cls, texts: Any, threshold: float, num_perm: int = 128, seed: int = 0,
              shingle: str = DEFAULT_SHINGLE, mapper: Mapper = serial_map) -> TextNearIndex:
        check_settings(threshold, num_perm, shingle)
        texts = check_texts(texts)
        bands, rows = lsh_bands(threshold, num_perm)
        keys, sets = sketch(texts, shingle, num_perm, seed, bands, rows, mapper)
        return cls.from_sketch(keys, sets, threshold, num_perm, seed, shingle, bands, rows)

    @classmethod
    def from_sketch(cls, keys: np.ndarray, sets: ShingleSets, threshold: float, num_perm: int, seed: int,
                    shingle: str, bands: int, rows: int) -> TextNearIndex:
        """The index of texts whose band keys and shingle sets `sketch` already computed (the full step's)."""
        live = np.flatnonzero(sets.sizes() > 0)
        keys = keys[:, live]
        order = np.argsort(keys, axis=1, kind="stable")
        return cls(threshold=threshold, num_perm=num_perm, seed=seed, shingle=shingle, bands=bands,
                   rows_per_band=rows, keys=np.take_along_axis(keys, order, axis=1), key_rows=live[order], sets=sets)

    def __len__(self) -> int:
        return len(self.sets)

    def query(self, new_texts: Any, mapper: Mapper = serial_map) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(new_row, old_row, jaccard) of every new text and old text at exact Jaccard >= threshold,
        sorted by (new_row, old_row): the pairs `near_duplicate_pairs` finds across old and new."""
        keys, sets = sketch(check_texts(new_texts), self.shingle, self.num_perm, self.seed, self.bands,
                            self.rows_per_band, mapper)
        live = np.flatnonzero(sets.sizes() > 0)
        keys = keys[:, live]
        codes = np.empty(0, dtype=np.int64)
        for k in range(self.bands):
            lo = np.searchsorted(self.keys[k], keys[k], side="left")
            hi = np.searchsorted(self.keys[k], keys[k], side="right")
            owner, pos = expand_ranges(lo, hi - lo)
            codes = np.union1d(codes, live[owner].astype(np.int64) << 32 | self.key_rows[k][pos])
        new, old = codes >> 32, codes & 0xFFFFFFFF
        jac = exact_jaccard(sets, new, self.sets, old)
        keep = jac >= self.threshold
        return new[keep], old[keep], jac[keep]
