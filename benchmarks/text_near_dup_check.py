"""Benchmark: near-duplicate texts (MinHash LSH + exact Jaccard) on real Rotten Tomatoes with planted copies.

    python benchmarks/text_near_dup_check.py [--thresholds 0.6 0.7 0.75 0.8 0.85 0.9] [--seed 0]
                                             [--out benchmarks/results/text_near_dup_check.json]

Data: data/real/rotten_tomatoes.csv (benchmarks/real_data.py): 13,891 non-missing review snippets and plot
lines. Planted, from a seeded RNG:
- near copies (2% of the corpus), each of a distinct source with at least MIN_WORDS words, one edit each
  (a quarter each): `replace` (1-3 words, about one in twelve, replaced by random corpus words), `swap` (two
  random words exchanged), `drop` (one word removed), `add` (one random corpus word inserted);
- exact copies (2%): the source with its case changed (upper / lower / title / swapcase) and its
  whitespace changed (doubled spaces, a tab or newline, padding): equal after `normalize`.
Truth: a planted copy pairs with its source, with every corpus text whose normalised form equals the
source's, and with the other copies of those. Precision / recall / F1 count planted pairs; pairs of two
original texts are counted apart: `real_exact_pairs` (equal after normalize: real duplicates) and
`real_distinct_links` (distinct real texts linked: false positives unless they really are near copies;
examples are printed and kept in the JSON). A planted copy of a source that has a real near copy also
pairs with that copy: counted as a planted false pair by this strict truth. `lsh_missed`: truth pairs
whose exact Jaccard reaches the threshold but that LSH did not propose (the approximation's cost,
separate from the shingle choice).

Scale (`--scale N`, default 200,000; 0 skips): N texts made of the first half of one real text and the second
half of another (seeded), run through `near_duplicate_pairs` with the defaults in a child process, one
BLAS thread; seconds, and the peak memory a second (traced) run of the call allocates.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_data import rotten_tomatoes  # noqa: E402

from prune_dagster.core.kinds.text import DEFAULT_SHINGLE, DEFAULT_THRESHOLD, normalize  # noqa: E402
from prune_dagster.core.kinds.text_near import SHINGLES, exact_jaccard, near_duplicate_pairs, shingle_sets  # noqa: E402

MIN_WORDS = 8
EDITS = ("replace", "swap", "drop", "add")


def edit(words: list[str], kind: str, vocab: np.ndarray, rng: np.random.Generator) -> list[str]:
    words = list(words)
    if kind == "replace":
        k = int(np.clip(round(len(words) / 12), 1, 3))
        for pos in rng.choice(len(words), size=k, replace=False):
            words[pos] = str(rng.choice(vocab))
    elif kind == "swap":
        a, b = rng.choice(len(words), size=2, replace=False)
        words[a], words[b] = words[b], words[a]
    elif kind == "drop":
        del words[int(rng.integers(len(words)))]
    else:
        words.insert(int(rng.integers(len(words) + 1)), str(rng.choice(vocab)))
    return words


def recase(text: str, rng: np.random.Generator) -> str:
    text = (str.upper, str.lower, str.title, str.swapcase)[int(rng.integers(4))](text)
    words = text.split(" ")
    pos = int(rng.integers(len(words)))
    words[pos] = words[pos] + ("  ", "\t", "\n ")[int(rng.integers(3))]
    return "  " + " ".join(words) + " \n"


def plant(texts: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(all texts, source row of each (-1 = original), edit kind of each ('' = original))."""
    rng = np.random.default_rng(seed)
    n = len(texts)
    split = [t.split() for t in texts]
    vocab = np.array(sorted({w for ws in split for w in ws}), dtype=object)
    long_enough = np.flatnonzero([len(ws) >= MIN_WORDS for ws in split])
    n_plant = int(round(0.02 * n))
    near_src = rng.choice(long_enough, size=n_plant, replace=False)
    kinds = np.array([EDITS[k % len(EDITS)] for k in range(n_plant)], dtype=object)
    near = [" ".join(edit(split[s], k, vocab, rng)) for s, k in zip(near_src, kinds, strict=True)]
    exact_src = rng.choice(n, size=n_plant, replace=False)
    exact = [recase(texts[s], rng) for s in exact_src]
    all_texts = np.concatenate([texts, np.array(near + exact, dtype=object)])
    source = np.concatenate([np.full(n, -1), near_src, exact_src])
    kind = np.concatenate([np.full(n, "", dtype=object), kinds, np.full(n_plant, "exact", dtype=object)])
    return all_texts, source, kind


def truth_pairs(texts: np.ndarray, source: np.ndarray) -> set[tuple[int, int]]:
    """Planted pairs: same family (normalised text of the source), at least one member planted."""
    n_orig = int((source < 0).sum())
    _, family = np.unique([normalize(t) for t in texts[:n_orig]], return_inverse=True)
    fam = np.concatenate([family, family[source[n_orig:]]])
    pairs = set()
    for f in np.unique(fam[n_orig:]):
        members = np.flatnonzero(fam == f)
        pairs |= {(int(a), int(b)) for a in members for b in members if a < b and max(a, b) >= n_orig}
    return pairs


def score(texts: np.ndarray, source: np.ndarray, kind: np.ndarray, truth: set[tuple[int, int]], shingle: str,
          threshold: float) -> tuple[dict, list[dict]]:
    n_orig = int((source < 0).sum())
    start = time.perf_counter()
    i, j, jac, meta = near_duplicate_pairs(texts, threshold, shingle=shingle)
    seconds = time.perf_counter() - start
    found = {(int(a), int(b)) for a, b in zip(i, j, strict=True)}
    planted = {p for p in found if p[1] >= n_orig}
    tp = len(planted & truth)
    fp = len(planted - truth)
    originals = [(a, b, float(s)) for a, b, s in zip(i, j, jac, strict=True) if b < n_orig]
    same = [p for p in originals if normalize(texts[p[0]]) == normalize(texts[p[1]])]
    distinct = [p for p in originals if normalize(texts[p[0]]) != normalize(texts[p[1]])]
    precision, recall = tp / max(tp + fp, 1), tp / max(len(truth), 1)
    sets = shingle_sets(texts, shingle)
    t_arr = np.array(sorted(truth))
    t_jac = exact_jaccard(sets, t_arr[:, 0], sets, t_arr[:, 1])
    lsh_missed = sum(1 for p, s in zip(map(tuple, t_arr.tolist()), t_jac, strict=True)
                     if s >= threshold and p not in found)
    by_kind = {}
    for k in (*EDITS, "exact"):
        rows = [p for p in truth if kind[p[1]] == k]
        by_kind[k] = round(sum(p in found for p in rows) / max(len(rows), 1), 4)
    row = {"shingle": shingle, "threshold": threshold, "precision": round(precision, 4), "recall": round(recall, 4),
           "f1": round(2 * precision * recall / max(precision + recall, 1e-12), 4), "recall_by_edit": by_kind,
           "planted_false_pairs": fp, "lsh_missed": lsh_missed, "real_exact_pairs": len(same),
           "real_distinct_links": len(distinct), "candidate_pairs": meta["candidate_pairs"],
           "rejected_by_exact_jaccard": meta["pairs_rejected_by_exact_jaccard"], "bands": meta["bands"],
           "rows_per_band": meta["rows_per_band"], "seconds": round(seconds, 2)}
    examples = [{"jaccard": round(s, 3), "a": texts[a], "b": texts[b]}
                for a, b, s in sorted(distinct, key=lambda p: p[2])]
    return row, examples


def scale_child(n: int, seed: int) -> None:
    """Run in a child process: print one JSON line with the scale measurement."""
    texts = pd.read_csv(rotten_tomatoes())["text"].dropna().astype(str).to_numpy(dtype=object)
    rng = np.random.default_rng(seed)
    words = [t.split() for t in texts]
    a, b = rng.integers(len(texts), size=n), rng.integers(len(texts), size=n)
    mixed = np.array([" ".join(words[x][:len(words[x]) // 2] + words[y][len(words[y]) // 2:])
                      for x, y in zip(a, b, strict=True)], dtype=object)
    start = time.perf_counter()
    i, _, _, meta = near_duplicate_pairs(mixed, DEFAULT_THRESHOLD)
    seconds = time.perf_counter() - start
    tracemalloc.start()  # a second, traced run: the memory the call allocates at its peak (numpy included)
    near_duplicate_pairs(mixed, DEFAULT_THRESHOLD)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    row = {"n_texts": n, "mean_chars": round(float(np.mean([len(t) for t in mixed])), 1),
           "shingle": DEFAULT_SHINGLE, "threshold": DEFAULT_THRESHOLD, "pairs": len(i),
           "candidate_pairs": meta["candidate_pairs"], "seconds": round(seconds, 1),
           "peak_traced_mb": round(peak / 2**20, 1)}
    print(json.dumps(row), flush=True)


def scale(n: int, seed: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, __file__, "--scale-child", str(n), "--seed", str(seed)], env=env,
                          check=True, capture_output=True, text=True)
    row = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"scale: {row}")
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.6, 0.7, 0.75, 0.8, 0.85, 0.9])
    ap.add_argument("--shingles", nargs="+", default=list(SHINGLES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scale", type=int, default=200_000, help="texts in the scale run (0: skip)")
    ap.add_argument("--scale-child", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "text_near_dup_check.json"))
    args = ap.parse_args()
    if args.scale_child:
        scale_child(args.scale_child, args.seed)
        return
    frame = pd.read_csv(rotten_tomatoes())
    texts = frame["text"].dropna().astype(str).to_numpy(dtype=object)
    all_texts, source, kind = plant(texts, args.seed)
    truth = truth_pairs(all_texts, source)
    print(f"{len(texts)} real texts, {int((source >= 0).sum())} planted copies, {len(truth)} planted pairs")
    rows, examples = [], {}
    header = f"{'shingle':13} {'thr':>4} {'prec':>6} {'rec':>6} {'F1':>6} {'replace':>7} {'swap':>6} {'drop':>6} " \
             f"{'add':>6} {'exact':>6} {'lshmiss':>7} {'realdup':>7} {'reallink':>8} {'cand':>6} {'sec':>5}"
    print(header)
    for shingle in args.shingles:
        for t in args.thresholds:
            row, ex = score(all_texts, source, kind, truth, shingle, t)
            rows.append(row)
            examples[f"{shingle}@{t}"] = ex[:10] + ex[-10:] if len(ex) > 20 else ex
            r = row["recall_by_edit"]
            print(f"{shingle:13} {t:4.2f} {row['precision']:6.3f} {row['recall']:6.3f} {row['f1']:6.3f} "
                  f"{r['replace']:7.3f} {r['swap']:6.3f} {r['drop']:6.3f} {r['add']:6.3f} {r['exact']:6.3f} "
                  f"{row['lsh_missed']:7d} {row['real_exact_pairs']:7d} {row['real_distinct_links']:8d} "
                  f"{row['candidate_pairs']:6d} {row['seconds']:5.1f}", flush=True)
    out = {"data": "data/real/rotten_tomatoes.csv", "n_real": len(texts), "n_planted": int((source >= 0).sum()),
           "n_truth_pairs": len(truth), "seed": args.seed, "min_words": MIN_WORDS, "rows": rows,
           "distinct_real_links": examples, "scale": scale(args.scale, args.seed) if args.scale else None,
           "defaults": {"shingle": DEFAULT_SHINGLE, "threshold": DEFAULT_THRESHOLD},
           "machine": platform.processor() or platform.machine()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1, ensure_ascii=False))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
