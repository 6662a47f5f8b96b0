"""The query -> bidword stand-in task (jaxrec.data.bidwords): strings by hand, seeded draws, the split by
query, the MovieLens build, and the user-file reader's errors."""

from __future__ import annotations

import numpy as np
import pytest

from jaxrec.data.bidwords import (clean_title, make_queries, movielens_rewriting, noisy_query, phrase_bidwords,
                                  read_rewrite_file, split_by_query, user_recent_sources, word_overlap, words,
                                  zipf_values)
from jaxrec.errors import DataError


@pytest.mark.parametrize("raw, clean", [
    ("Usual Suspects, The (1995)", "the usual suspects"),
    ("Seven (Se7en) (1995)", "seven"),
    ("Postino, Il (1994)", "il postino"),
    ("City of Lost Children, The (Cité des enfants perdus, La) (1995)", "the city of lost children"),
    ("Jason's Lyric (1994)", "jasons lyric"),
    ("Mrs. Brown (Her Majesty, Mrs. Brown) (1997)", "mrs brown"),
    ("Toy Story (1995)", "toy story"),
    ("Hurricane Streets (1998)", "hurricane streets"),
])
def test_clean_title(raw, clean):
    assert clean_title(raw) == clean


def test_words_fold_accents_and_apostrophes():
    assert words("Cité  d'Or, L'Été!") == ["cite", "dor", "lete"]


def test_phrases_need_min_items():
    genres = [["Comedy"], ["Comedy", "Sci-Fi"], ["Comedy"], ["Children's"], ["unknown"]]
    years = [1995, 1995, 1987, None, 1995]
    assert phrase_bidwords(genres, years, min_items=2) == ["90s comedy movies", "comedy 1995", "comedy movies"]
    got = phrase_bidwords(genres, years, min_items=1)
    assert {"sci fi 1995", "80s comedy movies", "childrens movies"} <= set(got)
    assert not any("unknown" in p for p in got)


def test_word_overlap_by_hand():
    assert word_overlap("comedy 1995", "comedy 1995") == 1.0
    assert word_overlap("comedy movies", "comedy 1995") == 0.5      # 'movies' is a stopword: {comedy} vs {comedy, 1995}
    assert word_overlap("90s drama movies", "comedy 1995") == 0.0
    assert word_overlap("the usual suspects", "usual suspects") == 1.0
    assert word_overlap("star wars", "star trek first contact") == 0.25


def test_zipf_values_are_zipf_without_drift_and_seeded():
    v = zipf_values(50, 4, seed=3, exponent=1.2, trend=0.0, noise=0.0)
    assert v.shape == (50, 4) and v.dtype == np.float32
    np.testing.assert_allclose(np.sort(v[:, 0])[::-1], np.arange(1, 51) ** -1.2, rtol=1e-6)
    assert (v == v[:, :1]).all()                                       # no drift: every window equal
    w = zipf_values(50, 4, seed=3)
    np.testing.assert_array_equal(w, zipf_values(50, 4, seed=3))
    assert not np.array_equal(w, zipf_values(50, 4, seed=4))
    assert not (w == w[:, :1]).all() and (w > 0).all()
    with pytest.raises(ValueError, match="windows"):
        zipf_values(5, 0)


def test_noisy_query():
    rng = np.random.default_rng(0)
    assert noisy_query(["the", "usual", "suspects"], rng, dropout=0.0, permute=0.0, templates=("{}",)) == "the usual suspects"
    for _ in range(200):
        q = noisy_query(["a", "b", "c"], rng, dropout=0.9, permute=1.0, templates=("watch {}",))
        kept = q.split()
        assert kept[0] == "watch" and 1 <= len(kept) - 1 <= 3 and set(kept[1:]) <= {"a", "b", "c"}
    orders = {noisy_query(["a", "b", "c"], rng, dropout=0.0, permute=1.0, templates=("{}",)) for _ in range(100)}
    assert len(orders) > 1 and all(sorted(o.split()) == ["a", "b", "c"] for o in orders)
    assert noisy_query(["heat"], rng, dropout=1.0).count("heat") == 1  # a one-word bidword keeps its word


def test_make_queries_keeps_the_first_source_of_a_repeated_query():
    bidwords, sources = ["heat", "heat wave"], np.array([1, 0] * 40)
    queries, kept = make_queries(bidwords, sources, seed=0, dropout=0.5, permute=0.0)
    rng, first = np.random.default_rng(0), {}   # the same draws, in order, by hand
    for s in sources:
        first.setdefault(noisy_query(bidwords[s].split(), rng, 0.5, 0.0), int(s))
    assert queries == list(first) and kept.tolist() == list(first.values())
    assert len(set(queries)) == len(queries) < len(sources)
    assert all(s == 1 for q, s in first.items() if "wave" in q)


def test_split_by_query_never_shares_a_query():
    queries = [f"q{i % 97}" for i in range(500)]
    split = split_by_query(queries, (0.8, 0.1, 0.1), seed=1)
    by_query = {}
    for q, s in zip(queries, split):
        assert by_query.setdefault(q, s) == s
    counts = np.bincount(list(by_query.values()), minlength=3)
    assert counts.tolist() == [78, 9, 10]
    np.testing.assert_array_equal(split, split_by_query(queries, (0.8, 0.1, 0.1), seed=1))
    with pytest.raises(ValueError, match="fractions"):
        split_by_query(queries, (0.5, 0.5, 0.5))


def test_user_recent_sources_by_hand():
    users = np.array([2, 1, 1, 2, 1, 1])
    items = np.array([10, 11, 12, 13, 14, 99])
    times = np.array([5, 1, 3, 2, 2, 0])
    got = user_recent_sources(users, items, times, {10: 0, 11: 1, 12: 2, 13: 3, 14: 4}, recent=2)
    # user 1 by time: 99 (t0, not a bidword), 11, 14, 12 -> last two 14, 12; user 2: 13, 10
    assert got.tolist() == [4, 2, 3, 0]


def test_movielens_rewriting(ml100k_dir):
    d = movielens_rewriting(str(ml100k_dir), seed=0)
    m = len(d.bidwords)
    assert len(set(d.bidwords)) == m and {"the usual suspects", "comedy 1995", "90s thriller movies"} <= set(d.bidwords)
    assert d.values.shape == (m, 6) and (d.values > 0).all()
    assert len(d.queries) == len(d.sources) == len(d.split) > 5000 and len(set(d.queries)) == len(d.queries)
    train = {d.queries[i] for i in d.rows("train")}
    assert not train & {d.queries[i] for i in np.concatenate([d.rows("valid"), d.rows("test")])}
    assert abs(len(d.rows("valid")) / len(d.queries) - 0.1) < 0.01
    # every query is made of its source's words plus template words
    template_words = {"movie", "watch", "film", "movies", "like", "online", "best", "dvd", "streaming"}
    for q, s in zip(d.queries[:500], d.sources[:500]):
        assert set(q.split()) <= set(d.bidwords[s].split()) | template_words
    again = movielens_rewriting(str(ml100k_dir), seed=0)
    assert again.queries == d.queries and np.array_equal(again.values, d.values)


# ---- the reader ---------------------------------------------------------------------------------

def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_read_rewrite_file_tsv_with_windows(tmp_path):
    p = _write(tmp_path, "log.tsv", "query\tbidword\tvalue\twindow\n"
               "cheap flights\tflights to rome\t2.5\t0\n"
               "cheap flights\tflights to rome\t3.0\t1\n"
               "rome hotel\thotels rome\t1\t1\n"
               "\n"
               "cheap flights\thotels rome\t1\t1\n")
    d = read_rewrite_file(p)
    assert d.bidwords == ["flights to rome", "hotels rome"]
    np.testing.assert_allclose(d.values, [[2.5, 3.0], [0.0, 1.0]])
    assert d.queries == ["cheap flights", "rome hotel", "cheap flights"] and d.sources.tolist() == [0, 1, 1]
    assert d.split[0] == d.split[2]


def test_read_rewrite_file_csv_without_windows(tmp_path):
    p = _write(tmp_path, "log.csv", 'Bidword,Query,Value\n"rome, italy",trip to rome,4\n')
    d = read_rewrite_file(p)
    assert d.bidwords == ["rome, italy"] and d.queries == ["trip to rome"] and d.values.shape == (1, 1)


@pytest.mark.parametrize("name, text, match", [
    ("a.tsv", "query\tbidword\n", r"a.tsv:1: header .*missing \['value'\]"),
    ("a.tsv", "query\tbidword\tvalue\tvlaue\n", r"a.tsv:1: .*unknown \['vlaue'\]"),
    ("a.tsv", "query\tbidword\tvalue\nq\tb\tabc\n", r"a.tsv:2: field 'value' = 'abc' is not a number"),
    ("a.tsv", "query\tbidword\tvalue\nq\tb\t-1\n", r"a.tsv:2: field 'value' = -1.0 must be finite and >= 0"),
    ("a.tsv", "query\tbidword\tvalue\nq\tb\tnan\n", r"a.tsv:2: field 'value'"),
    ("a.tsv", "query\tbidword\tvalue\twindow\nq\tb\t1\t-2\n", r"a.tsv:2: field 'window' = '-2' is not an integer"),
    ("a.tsv", "query\tbidword\tvalue\n\tb\t1\n", r"a.tsv:2: field 'query' is empty"),
    ("a.tsv", "query\tbidword\tvalue\nq\tb\n", r"a.tsv:2: expected 3 fields"),
    ("a.tsv", "query\tbidword\tvalue\nq\tb\t1\nr\tb\t2\n", (r"a.tsv:3: field 'value' = 2.0 for bidword 'b' in window 0 "
                                                            r"disagrees with line 2")),
    ("a.tsv", "query\tbidword\tvalue\n", r"a.tsv: no data rows"),
    ("a.tsv", "", r"a.tsv: empty"),
    ("a.json", "{}", r"a.json: expected a .tsv or .csv file"),
])
def test_read_rewrite_file_errors(tmp_path, name, text, match):
    with pytest.raises(DataError, match=match):
        read_rewrite_file(_write(tmp_path, name, text))


def test_read_rewrite_file_missing(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_rewrite_file(tmp_path / "nope.tsv")
