"""The text kind's algorithms: normalisation, content keys, near duplicates (MinHash LSH + exact Jaccard),
the incremental index, TF-IDF, vocabulary pruning and the text CNN. Small synthetic data only."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from datasketch import MinHash, MinHashLSH

from prune_dagster.core.errors import ConfigError, DatasetError
from prune_dagster.core.kinds.text import (
    TextNearIndex,
    content_keys,
    near_duplicate_pairs,
    normalize,
    prune_vocabulary,
    tfidf_features,
    tokens,
)
from prune_dagster.core.kinds.text_near import (
    LSH_WEIGHTS,
    candidate_pairs,
    fold32,
    lsh_bands,
    minhash_signatures,
    shingle_sets,
    sketch,
)
from prune_dagster.core.kinds.text_tokens import unknown_words
from prune_dagster.core.training.text_model import TextCNN, TextEncoder, Vocabulary

VOCAB = [f"w{k}" for k in range(400)]


def sentences(n: int, seed: int, length: int = 20) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    return [list(rng.choice(VOCAB, size=length, replace=False)) for _ in range(n)]


def planted_corpus(seed: int = 0) -> tuple[np.ndarray, set[tuple[int, int]]]:
    """40 distinct random sentences, then near copies: a word replaced, two words swapped, a word dropped,
    a word added, and a case / whitespace change. Returns (texts, the planted pairs)."""
    base = sentences(40, seed)
    texts = [" ".join(s) for s in base]
    pairs = set()
    for src, kind in enumerate(["replace", "swap", "drop", "add", "case"] * 2):
        words = list(base[src])
        if kind == "replace":
            words[3] = "novelword"
        elif kind == "swap":
            words[2], words[9] = words[9], words[2]
        elif kind == "drop":
            del words[5]
        elif kind == "add":
            words.insert(7, "extraword")
        text = " ".join(words)
        pairs.add((src, len(texts)))
        texts.append(text.upper().replace(" ", "  \t") if kind == "case" else text)
    texts += ["", "!!! ...", "   "]  # no token: never paired, even with each other
    return np.array(texts, dtype=object), pairs


def python_jaccard(a: str, b: str) -> float:
    sa, sb = set(tokens(a)), set(tokens(b))
    return len(sa & sb) / len(sa | sb)


def reverse_mapper(fn, items, shared=None):
    """Runs the items in reverse order and returns the results in item order (what an engine may do)."""
    out = [fn(item, **(shared or {})) for item in reversed(items)]
    return out[::-1]


def test_normalize_folds_unicode_case_and_whitespace():
    assert normalize("  ﬁne\tＨＥＬＬＯ\u00a0World\n\n") == "fine hello world"
    assert normalize("Straße") == normalize("STRASSE") == "strasse"
    assert normalize("Ａｂｃ１２３") == "abc123"
    once = normalize(" Ǆ  x ")
    assert normalize(once) == once


def test_tokens_are_words_without_punctuation():
    assert tokens("Don’t STOP, it's 2 good!!") == ["don't", "stop", "it's", "2", "good"]
    assert tokens("... !!! ") == []


def test_content_keys_equal_exactly_when_normalised_texts_are_equal():
    texts = ["Hello  World", "hello world", "ＨＥＬＬＯ\tworld ", "hello world!", "hello", ""]
    keys = content_keys(texts)
    assert keys.shape == (6, 2) and keys.dtype == np.uint64
    same = [[bool((keys[a] == keys[b]).all()) for b in range(6)] for a in range(6)]
    expected = [[normalize(texts[a]) == normalize(texts[b]) for b in range(6)] for a in range(6)]
    assert same == expected
    assert np.array_equal(keys, content_keys(np.array(texts, dtype=object)))


def test_near_duplicate_pairs_find_the_planted_copies_and_nothing_else():
    texts, planted = planted_corpus()
    i, j, jac, meta = near_duplicate_pairs(texts, threshold=0.8)
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == planted
    assert (i < j).all() and (jac >= 0.8).all()
    for a, b, s in zip(i, j, jac, strict=True):
        assert s == pytest.approx(python_jaccard(texts[a], texts[b]))
    assert meta["texts_without_shingles"] == 3
    assert meta["candidate_pairs"] == len(i) + meta["pairs_rejected_by_exact_jaccard"]


def test_near_duplicate_pairs_do_not_depend_on_the_mapper_or_blocks():
    texts, _ = planted_corpus(seed=1)
    one = near_duplicate_pairs(texts, 0.6, seed=3)
    blocked = near_duplicate_pairs(texts, 0.6, seed=3, mapper=reverse_mapper, block_rows=7)
    for a, b in zip(one[:3], blocked[:3], strict=True):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("shingle", ["words", "word_bigrams", "char5"])
def test_every_shingle_kind_confirms_pairs_above_the_threshold(shingle):
    texts, planted = planted_corpus(seed=2)
    i, j, jac, _ = near_duplicate_pairs(texts, 0.5, shingle=shingle)
    found = set(zip(i.tolist(), j.tolist(), strict=True))
    assert found <= planted and len(found) >= len(planted) - 2  # bigrams lose a swap, char5 may too
    sets = shingle_sets(texts, shingle)
    for a, b, s in zip(i, j, jac, strict=True):
        x = set(sets.values[sets.offsets[a]:sets.offsets[a + 1]].tolist())
        y = set(sets.values[sets.offsets[b]:sets.offsets[b + 1]].tolist())
        assert s == pytest.approx(len(x & y) / len(x | y)) and s >= 0.5


def test_signatures_and_candidates_are_datasketchs():
    texts, _ = planted_corpus(seed=3)
    sets = shingle_sets(texts, "words")
    sig = minhash_signatures(sets, 64, seed=5)
    bands, rows = lsh_bands(0.5, 64)
    lsh = MinHashLSH(threshold=0.5, num_perm=64, weights=LSH_WEIGHTS)
    assert (lsh.b, lsh.r) == (bands, rows)
    hashes = []
    for k in range(len(texts)):
        m = MinHash(num_perm=64, seed=5, hashfunc=int)
        m.update_batch(fold32(sets.values[sets.offsets[k]:sets.offsets[k + 1]]).tolist())
        assert np.array_equal(m.hashvalues, sig[k]), k
        hashes.append(m)
        if sets.sizes()[k]:
            lsh.insert(k, m)
    theirs = {(min(k, q), max(k, q)) for k in range(len(texts)) if sets.sizes()[k]
              for q in lsh.query(hashes[k]) if q != k}
    keys, _ = sketch(texts, "words", 64, 5, bands, rows)
    codes = candidate_pairs(keys, sets.sizes())
    assert set(zip((codes >> 32).tolist(), (codes & 0xFFFFFFFF).tolist(), strict=True)) == theirs


def test_index_decides_new_texts_against_the_old_ones():
    old = [" ".join(s) for s in sentences(30, seed=4)]
    copy = old[3].replace(old[3].split()[0], "changed", 1)
    fresh = " ".join(sentences(1, seed=99)[0])
    index = pickle.loads(pickle.dumps(TextNearIndex.build(old, threshold=0.8)))
    new, prev, jac = index.query([fresh, copy, ""])
    assert new.tolist() == [1] and prev.tolist() == [3]
    assert jac[0] == pytest.approx(python_jaccard(copy, old[3])) and jac[0] >= 0.8
    # The same pairs as a full search over old + new, across the two.
    i, j, s, _ = near_duplicate_pairs([*old, fresh, copy, ""], 0.8)
    cross = [(b - len(old), a, x) for a, b, x in zip(i, j, s, strict=True) if a < len(old) <= b]
    assert cross == list(zip(new.tolist(), prev.tolist(), jac.tolist(), strict=True))


def test_settings_and_texts_are_checked():
    with pytest.raises(ConfigError, match="threshold=1.5"):
        near_duplicate_pairs(["a b"], 1.5)
    with pytest.raises(ConfigError, match="shingle='letters'"):
        near_duplicate_pairs(["a b"], 0.8, shingle="letters")
    with pytest.raises(DatasetError, match=r"texts\[1\] is NoneType"):
        near_duplicate_pairs(["a b", None], 0.8)


def test_tfidf_features_fit_on_train_and_apply_to_texts():
    train = ["good film", "good acting", "bad film", "bad plot twist"]
    feats = tfidf_features(train, ["good bad film", "unseen words", "twist"])
    assert feats.shape == (3, 3)  # bad, film, good: the tokens in >= 2 training texts
    norms = np.sqrt(np.asarray(feats.multiply(feats).sum(axis=1)).ravel())
    assert norms == pytest.approx([1.0, 0.0, 0.0], abs=1e-6)
    assert tfidf_features(train, ["twist"], vocabulary=("twist", "good")).shape == (1, 2)


def test_prune_vocabulary_methods():
    texts = ["great fun movie", "great movie rare1", "awful movie", "awful boring movie rare2", "great fun",
             "awful boring"]
    labels = np.array([1, 1, 0, 0, 1, 0])
    kept, meta = prune_vocabulary(texts, labels, min_df=2)
    assert kept == ("awful", "boring", "fun", "great", "movie") and meta["dropped_rare"] == 2
    kept, _ = prune_vocabulary(texts, labels, min_df=2, max_df=0.6)
    assert "movie" not in kept  # in 4 of 6 texts
    kept, meta = prune_vocabulary(texts, labels, method="chi2", keep_fraction=0.4)
    assert len(kept) == 2 and set(kept) <= {"awful", "great", "boring", "fun"} and meta["dropped_chi2"] == 3
    assert "movie" not in kept  # in both classes alike: no evidence
    assert len(prune_vocabulary(texts, labels, method="none")[0]) == 7
    with pytest.raises(ConfigError, match="min_df=10"):
        prune_vocabulary(texts, labels, min_df=10)
    with pytest.raises(ConfigError, match="method='tfidf'"):
        prune_vocabulary(texts, labels, method="tfidf")


def test_vocabulary_encodes_with_padding_unknown_and_truncation():
    vocab = Vocabulary.fit(["a b c", "a b", "a d"], min_count=2)
    assert vocab.tokens == ("a", "b") and len(vocab) == 4
    x = vocab.encode(["b a zzz", "a a a a a a", ""], max_len=4)
    assert x.dtype == torch.int64 and x.shape == (3, 4)
    assert x.tolist() == [[3, 2, 1, 0], [2, 2, 2, 2], [0, 0, 0, 0]]
    assert Vocabulary.fit(["a b c", "a b"], min_count=1, keep=("b", "c")).tokens == ("b", "c")
    again = pickle.loads(pickle.dumps(vocab))
    assert again.tokens == vocab.tokens and torch.equal(again.encode(["b a"], 2), vocab.encode(["b a"], 2))
    with pytest.raises(DatasetError, match="no token occurs 5 or more times"):
        Vocabulary.fit(["a b"], min_count=5)


def test_text_encoder_length_and_model_shapes():
    texts = ["one two three"] * 30 + [" ".join(["w"] * 300)]
    enc = TextEncoder.fit(texts)
    assert enc.max_len == 8  # the 95th percentile (3 tokens) raised to the floor
    assert TextEncoder.fit([" ".join(["w"] * 400)] * 3).max_len == 256
    x = enc.tensor(["one two", "three"])
    assert x.shape == (2, 8)
    model = enc.model(3)
    assert isinstance(model, TextCNN) and model.embedding.num_embeddings == len(enc.vocabulary)
    assert model(x).shape == (2, 3) and model.features(x).shape == (2, 128)
    assert model.fc1.out_features == 128 and model.fc2.out_features == 3
    assert model(x[:, :2]).shape == (2, 3)  # shorter than the widest filter: padded


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: more threads only contend with the rest of the machine
    yield
    torch.set_num_threads(threads)


def test_text_cnn_learns_a_keyword_task(one_thread):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    texts, labels = [], []
    for k in range(160):
        words = list(rng.choice(VOCAB[:50], size=12))
        if k % 2:
            words[int(rng.integers(12))] = "excellent"
        texts.append(" ".join(words))
        labels.append(k % 2)
    enc = TextEncoder.fit(texts)
    x, y = enc.tensor(texts), torch.tensor(labels)
    model = enc.model(2)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(15):
        for idx in torch.randperm(len(x)).split(32):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean() > 0.9


def test_edge_cases_no_texts_no_tokens_and_threshold_one():
    assert all(len(a) == 0 for a in near_duplicate_pairs([], 0.8)[:3])
    assert all(len(a) == 0 for a in near_duplicate_pairs(["", "", "..."], 0.8)[:3])
    i, j, jac, _ = near_duplicate_pairs(["a b", "B  A", "a b c"], 1.0)
    assert (i.tolist(), j.tolist(), jac.tolist()) == ([0], [1], [1.0])
    empty = TextNearIndex.build(["", ""], 0.8)
    assert all(len(a) == 0 for a in empty.query(["", "x"]))


def test_candidates_below_the_threshold_are_rejected_by_exact_jaccard():
    base = sentences(20, seed=7)
    texts = [" ".join(s) for s in base]
    for s in base:  # 3 of 20 words replaced: Jaccard 17 / 23 = 0.74, often an LSH candidate at 0.8
        texts.append(" ".join(["new1", "new2", "new3", *s[3:]]))
    i, _, _, meta = near_duplicate_pairs(texts, 0.8)
    assert len(i) == 0 and meta["pairs_rejected_by_exact_jaccard"] > 0
    i, j, jac, _ = near_duplicate_pairs(texts, 0.7)
    assert set(zip(i.tolist(), j.tolist(), strict=True)) <= {(k, k + 20) for k in range(20)}
    assert len(i) >= 18 and jac == pytest.approx(17 / 23)


def test_unknown_words_counts_words_found_in_no_other_text():
    texts = ["the film is good", "the film is bad", "qzx vbnw plkj", "touché", "the plot is good qzx"]
    share, count, vocabulary = unknown_words(texts)
    # "qzx" is in two texts, so only vbnw and plkj are unknown in the third; "touché" is alone in the fourth
    assert count.tolist() == [0, 1, 2, 1, 1] and share[2] == pytest.approx(2 / 3) and share[3] == 1.0
    assert "qzx" in vocabulary and "good" in vocabulary
    share, count, _ = unknown_words(["the qzx mmm", "good film"], known=vocabulary)
    assert count.tolist() == [1, 0] and share[0] == pytest.approx(1 / 3)


def test_outliers_remove_random_strings_among_texts_and_decide_new_ones(tmp_path):
    from prune_dagster.core.data.sources import load_source
    from prune_dagster.core.ledger import Selection
    from prune_dagster.core.steps import outliers
    from prune_dagster.core.steps.base import StepInputs
    from prune_dagster.core.steps.frozen import NewBatch

    rng = np.random.default_rng(3)
    texts = [" ".join(s) for s in sentences(200, seed=5, length=12)]
    junk = [" ".join("".join(rng.choice(list("bcdfghjklmnpqrstvwxz"), 7)) for _ in range(10)) for _ in range(5)]
    rows = [{"id": f"s{i}", "text": t, "label": "ab"[i % 2]} for i, t in enumerate([*texts, *junk[:4], "Touché!"])]
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = load_source(str(path))
    sel = Selection(kept_ids=ds.ids.copy(), test_ids=np.array([], dtype=object), n_train_split=len(ds))
    junk_ids = {"s200", "s201", "s202", "s203"}
    knn = outliers.OutlierParams(embedding="raw", method="knn").for_kind("text")
    result = outliers.run(knn, StepInputs(ds, sel))
    unknown = result.removed[result.removed["reason"] == "unknown_words"]
    # kNN on TF-IDF misses them (no word in 2 texts: an empty vector); their words find them all
    assert set(unknown["id"]) == junk_ids  # the one-word "Touché!" stays (1 word)
    assert (unknown["score"] >= 0.8).all()
    off = outliers.run(knn.model_copy(update={"text_unknown_share": 0.0}), StepInputs(ds, sel))
    assert "unknown_words" not in set(off.removed["reason"])
    default = outliers.OutlierParams().for_kind("text")  # texts: the words alone, no kNN
    result = outliers.run(default, StepInputs(ds, sel))
    assert default.method == "none" and set(result.removed["id"]) == junk_ids
    batch = NewBatch(ids=["n0", "n1"], content=np.array([junk[4], texts[0].upper()], dtype=object), labels=[0, 1])
    outliers.decide(outliers.freeze(result.state, None), default, batch)
    assert set(batch.removed()["id"]) == {"n0"}
