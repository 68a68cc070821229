import json
import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest

from common.data import DataError, clean_text, export, load_imdb, make_splits
from tests.conftest import ROOT
from fixtures.synthetic import make_imdb


def texts(df):
    return set(df["text"])


def positive_share(df):
    return df["label"].mean()


def test_clean_text():
    assert clean_text("Good.<br /><br />Very  good.<BR/>  End \t here ") == "Good.\n\nVery good.\nEnd here"
    assert clean_text("a<br><br><br><br>b") == "a\n\nb"


def test_random_split_sizes_stratified_disjoint(imdb_dir):
    splits, manifest = make_splits("random_70_10_20", seed=1, data_dir=imdb_dir)
    raw = load_imdb(imdb_dir)
    pool = pd.concat([raw["train"], raw["test"]])
    n_unique = pool["text"].nunique()
    assert n_unique < len(pool)  # the synthetic data has duplicates, and they were dropped
    sizes = {k: len(v) for k, v in splits.items()}
    assert sum(sizes.values()) == n_unique
    assert sizes["train"] == pytest.approx(0.7 * n_unique, abs=2)
    assert sizes["validation"] == pytest.approx(0.1 * n_unique, abs=2)
    assert sizes["test"] == pytest.approx(0.2 * n_unique, abs=2)
    names = list(splits)
    for i, a in enumerate(names):
        assert splits[a]["text"].is_unique
        for b in names[i + 1:]:
            assert not texts(splits[a]) & texts(splits[b]), f"{a} and {b} share texts"
    pool_share = pool.drop_duplicates("text")["label"].mean()
    for df in splits.values():
        assert abs(positive_share(df) - pool_share) < 0.005 + 1 / len(df)
    assert manifest["splits"]["train"]["size"] == sizes["train"]
    assert set(manifest["splits"]["test"]["label_counts"]) == {"0", "1"}


def test_splits_deterministic_and_independent_of_row_order(imdb_dir):
    _, m1 = make_splits("random_70_10_20", seed=7, data_dir=imdb_dir)
    _, m2 = make_splits("random_70_10_20", seed=7, data_dir=imdb_dir)
    _, m3 = make_splits("random_70_10_20", seed=8, data_dir=imdb_dir)
    raw = load_imdb(imdb_dir)
    shuffled = {k: v.sample(frac=1.0, random_state=3).reset_index(drop=True) for k, v in raw.items()}
    _, m4 = make_splits("random_70_10_20", seed=7, raw=shuffled)
    hashes = lambda m: {k: v["sha256"] for k, v in m["splits"].items()}  # noqa: E731
    assert hashes(m1) == hashes(m2) == hashes(m4)
    assert hashes(m1) != hashes(m3)


def test_duplicates_with_conflicting_labels_are_dropped():
    raw = make_imdb(n_train=40, n_test=40, n_dup=0)
    raw["train"].loc[0, "text"] = raw["train"].loc[1, "text"]  # same text, labels 0 and 1
    splits, _ = make_splits("random_70_10_20", seed=0, raw=raw)
    everything = pd.concat(splits.values())
    assert raw["train"].loc[1, "text"] not in set(everything["text"])
    assert len(everything) == 78


@pytest.mark.parametrize("protocol", ["random_70_10_20", "official", "balanced"])
def test_texts_differing_only_in_whitespace_are_one_review(protocol):
    raw = make_imdb(n_train=40, n_test=40, n_dup=0)
    words = raw["train"].loc[2, "text"].split()
    raw["train"].loc[4, ["text", "label"]] = ["\n".join(words), raw["train"].loc[2, "label"]]  # line breaks only
    raw["test"].loc[0, ["text", "label"]] = ["  ".join(words), raw["train"].loc[2, "label"]]  # doubled spaces
    kw = {"n_train": 10, "n_eval": 4, "n_test": 20} if protocol == "balanced" else {}
    splits, _ = make_splits(protocol, seed=0, raw=raw, **kw)
    seen = [name for name, df in splits.items() for text in df["text"] if text.split() == words]
    assert len(seen) <= 1  # at most one copy survives, in one split
    if protocol == "random_70_10_20":
        assert len(seen) == 1 and sum(len(df) for df in splits.values()) == 78


def test_official_protocol(imdb_dir):
    raw = load_imdb(imdb_dir)
    splits, _ = make_splits("official", seed=0, data_dir=imdb_dir)
    assert len(splits["test"]) == len(raw["test"])  # the official test set stays whole
    assert not texts(splits["train"]) & texts(splits["test"])
    assert not texts(splits["validation"]) & texts(splits["test"])
    assert not texts(splits["train"]) & texts(splits["validation"])
    n_train_pool = len(splits["train"]) + len(splits["validation"])
    assert n_train_pool < len(raw["train"])  # duplicates and test texts removed
    assert len(splits["validation"]) == pytest.approx(0.1 * n_train_pool, abs=2)


def test_balanced_subsets(imdb_dir):
    splits, manifest = make_splits("balanced", seed=3, data_dir=imdb_dir, n_train=90, n_eval=10, n_test=250)
    assert {k: len(v) for k, v in splits.items()} == {"train": 90, "validation": 10, "test": 250}
    for df in splits.values():
        assert df["label"].sum() * 2 == len(df)
    assert not texts(splits["train"]) & texts(splits["validation"])
    assert not (texts(splits["train"]) | texts(splits["validation"])) & texts(splits["test"])
    assert manifest["protocol"] == "balanced"
    again, _ = make_splits("balanced", seed=3, data_dir=imdb_dir, n_train=90, n_eval=10, n_test=250)
    assert all(again[k].equals(splits[k]) for k in splits)


def test_balanced_sizes_checked(imdb_dir):
    with pytest.raises(DataError, match="even"):
        make_splits("balanced", data_dir=imdb_dir, n_train=91)
    with pytest.raises(DataError, match="only"):
        make_splits("balanced", data_dir=imdb_dir, n_test=1000)


@pytest.mark.parametrize("key", ["n_train", "n_eval", "n_test"])
def test_an_odd_balanced_size_setting_is_refused_with_its_key_and_value(key):
    from common.config import ConfigError
    from common.data import BalancedArguments

    with pytest.raises(ConfigError, match=rf"^{key}: expected an even number \(half positive, half negative\), "
                                          r"got 901$"):
        BalancedArguments(**{key: 901})
    assert getattr(BalancedArguments(**{key: 902}), key) == 902


def write_split(folder, train=None, test=None):
    folder.mkdir(parents=True, exist_ok=True)
    raw = make_imdb(n_train=20, n_test=20, n_dup=0)
    (train if train is not None else raw["train"]).to_parquet(folder / "train.parquet")
    (test if test is not None else raw["test"]).to_parquet(folder / "test.parquet")
    return folder


@pytest.mark.parametrize("problem, match", [
    ("missing_folder", "data folder not found"),
    ("missing_file", "test.parquet: file not found"),
    ("not_parquet", r"train.parquet: cannot read as parquet \(.*magic bytes not found"),  # pyarrow's reason
    ("missing_column", "train.parquet: missing column.*label"),
    ("bad_label", r"train.parquet: label 2 at row 3 is outside \{0, 1\}"),
    ("empty_text", "test.parquet: empty text at row 5"),
])
def test_bad_input_errors_name_file_and_problem(tmp_path, problem, match):
    raw = make_imdb(n_train=20, n_test=20, n_dup=0)
    folder = tmp_path / "data"
    if problem == "missing_folder":
        folder = tmp_path / "nowhere"
    elif problem == "missing_file":
        folder.mkdir()
        raw["train"].to_parquet(folder / "train.parquet")
    elif problem == "not_parquet":
        write_split(folder)
        (folder / "train.parquet").write_text("text,label\nhello,1\n")
    elif problem == "missing_column":
        write_split(folder, train=raw["train"].rename(columns={"label": "sentiment"}))
    elif problem == "bad_label":
        raw["train"].loc[3, "label"] = 2
        write_split(folder, train=raw["train"])
    elif problem == "empty_text":
        raw["test"].loc[5, "text"] = " <br /> "
        write_split(folder, test=raw["test"])
    with pytest.raises(DataError, match=match):
        make_splits("random_70_10_20", data_dir=folder)


def test_data_dir_from_environment(imdb_dir, monkeypatch):
    monkeypatch.setenv("IMDB_DATA_DIR", str(imdb_dir))
    _, manifest = make_splits("random_70_10_20")
    assert manifest["source"] == str(imdb_dir.resolve())


def test_export_command(imdb_dir, tmp_path, capsys):
    from common.data import main as export_command

    out = tmp_path / "out"
    export_command(["--protocol", "balanced", "--split_seed", "1", "--n_train", "20", "--n_eval", "10",
                    "--n_test", "30", "--data_dir", str(imdb_dir), "--out", str(out)])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines[:3]] == [["train", "20"], ["validation", "10"], ["test", "30"]]
    assert lines[3].endswith("(balanced, seed 1)")
    sizes = {"train": 20, "validation": 10, "test": 30}
    for name, size in sizes.items():
        df = pd.read_parquet(out / f"{name}.parquet")
        assert df.columns.tolist() == ["text", "label"]
        # what other tools read: the two columns and no stored index (a reader without pandas sees no extra column)
        assert pq.read_schema(out / f"{name}.parquet").names == ["text", "label"]
        assert len(df) == size and df["label"].sum() * 2 == size  # the balanced protocol: half positive
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["protocol"], manifest["seed"]) == ("balanced", 1)
    assert {k: v["size"] for k, v in manifest["splits"].items()} == sizes
    assert not list(tmp_path.glob("*.tmp")) and not list(out.glob("*.tmp"))


def test_export_command_bad_folder_is_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "common.data", "--data_dir", str(tmp_path / "nope"),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "data folder not found" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_export_same_as_direct(imdb_dir, tmp_path):
    manifest = export("official", 5, tmp_path / "o", imdb_dir)
    splits, direct = make_splits("official", 5, imdb_dir)
    assert manifest["splits"] == direct["splits"]
    assert pd.read_parquet(tmp_path / "o" / "validation.parquet").equals(splits["validation"])


@pytest.mark.real_data
def test_real_imdb_split_sizes(real_imdb):
    splits, manifest = make_splits("random_70_10_20", seed=42, raw=real_imdb)
    assert {k: len(v) for k, v in splits.items()} == {"train": 34704, "validation": 4959, "test": 9915}
    for df in splits.values():
        assert abs(positive_share(df) - 0.5) < 0.005
    official, _ = make_splits("official", seed=42, raw=real_imdb)
    assert len(official["test"]) == 25000
    assert not texts(official["train"]) & texts(official["test"])
    balanced, _ = make_splits("balanced", seed=42, raw=real_imdb)
    assert {k: len(v) for k, v in balanced.items()} == {"train": 900, "validation": 100, "test": 2500}
    assert all(df["label"].sum() * 2 == len(df) for df in balanced.values())


@pytest.mark.real_data
def test_committed_results_were_measured_on_the_splits_the_code_makes_today(real_imdb):
    """Each committed results.json records the sha256 of every split it used: today's code, on the real data, must
    make exactly those splits (a changed order of draws, say, would silently move the test set under the figures)."""
    import json

    from tests.conftest import ROOT

    checked = set()
    for path in sorted((ROOT / "results").rglob("results.json")):
        manifest = json.loads(path.read_text()).get("manifest")
        if not manifest:
            continue
        sizes = {k: manifest["splits"][s]["size"] for k, s in (("n_train", "train"), ("n_eval", "validation"),
                                                                ("n_test", "test"))}
        key = (manifest["protocol"], manifest["seed"], tuple(sizes.values()))
        if key in checked:
            continue
        _, today = make_splits(manifest["protocol"], manifest["seed"], raw=real_imdb,
                               **(sizes if manifest["protocol"] == "balanced" else {}))
        assert {k: v["sha256"] for k, v in today["splits"].items()} == \
               {k: v["sha256"] for k, v in manifest["splits"].items()}, path
        checked.add(key)
    assert {p for p, _, _ in checked} == {"random_70_10_20", "official", "balanced"}


def test_validate_messages_and_edges():
    """One-line errors worked out by hand, and the edges: a single row is a valid split; a label that is not a
    number is our error naming it, not pandas' own."""
    from common.data import check_and_clean

    with pytest.raises(DataError, match=r"^train\.parquet: missing column\(s\) text, label \(found: review, stars\)$"):
        check_and_clean(pd.DataFrame({"review": ["x"], "stars": [1]}), "train.parquet")
    with pytest.raises(DataError, match=r"^test\.parquet: no rows$"):
        empty = pd.DataFrame({"text": pd.Series([], dtype=str), "label": pd.Series([], dtype=int)})
        check_and_clean(empty, "test.parquet")
    with pytest.raises(DataError, match=r"^train\.parquet: label 'positive' at row 1 is outside \{0, 1\}$"):
        check_and_clean(pd.DataFrame({"text": ["good", "great"], "label": [1, "positive"]}), "train.parquet")
    with pytest.raises(DataError, match=r"^test\.parquet: text at row 2 is 5, expected a string$"):
        check_and_clean(pd.DataFrame({"text": ["good", "bad", 5], "label": [1, 0, 1]}), "test.parquet")
    one = check_and_clean(pd.DataFrame({"text": ["A fine film."], "label": [1]}), "train.parquet")
    assert one["text"].tolist() == ["A fine film."] and one["label"].tolist() == [1]


def test_manifest_and_summary_line_by_hand():
    from common.data import make_manifest, split_hash, summary_line

    df = pd.DataFrame({"text": ["a", "b", "c", "d"], "label": [1, 0, 1, 1]})
    manifest = make_manifest({"test": df, "none": df.iloc[:0]}, "random_70_10_20", 7, "/data")
    assert manifest["splits"]["test"] == {"size": 4, "label_counts": {"0": 1, "1": 3}, "positive_share": 0.75,
                                          "sha256": split_hash(df)}
    assert manifest["splits"]["none"]["positive_share"] is None
    info = {"size": 12345, "positive_share": 0.5, "sha256": "0123456789abcdef"}
    assert summary_line("validation", info) == "validation 12,345 reviews   50.0% positive  sha256 0123456789ab"


def test_balanced_sample_edges():
    """A class with exactly the reviews needed is enough; a size of 0 is refused; every part is disjoint from the
    others (three parts: the offsets of the third depend on both before it)."""
    from common.data import balanced_sample

    df = pd.DataFrame({"text": [f"review {i}" for i in range(20)], "label": [0] * 10 + [1] * 10})
    parts = balanced_sample(df, [6, 4, 10], seed=0, name="train.parquet")  # 3 + 2 + 5 = all 10 of each class
    assert [len(p) for p in parts] == [6, 4, 10] and all(p["label"].sum() * 2 == len(p) for p in parts)
    assert set(pd.concat(parts)["text"]) == set(df["text"])  # disjoint: together they are the 20 reviews
    with pytest.raises(DataError, match="positive and even, got 0"):
        balanced_sample(df, [0, 4], seed=0, name="train.parquet")


def test_make_splits_defaults_sources_and_messages(imdb_dir, monkeypatch):
    """The documented defaults (random_70_10_20, seed 42), where the manifest says the reviews came from, and the
    one-line errors, worked out by hand."""
    monkeypatch.delenv("IMDB_DATA_DIR", raising=False)
    _, manifest = make_splits(data_dir=imdb_dir)
    assert (manifest["protocol"], manifest["seed"], manifest["source"]) == ("random_70_10_20", 42,
                                                                           str(imdb_dir.resolve()))
    _, in_memory = make_splits("official", 1, raw=load_imdb(imdb_dir))
    assert in_memory["source"] == "in-memory"
    with pytest.raises(DataError, match=r"^unknown protocol 'kfold'; expected one of random_70_10_20, official, "
                                        r"balanced$"):
        make_splits("kfold", data_dir=imdb_dir)
    with pytest.raises(DataError, match=r"^official train set: 1000 negative reviews needed, only \d+ available$"):
        make_splits("balanced", data_dir=imdb_dir, n_train=1900, n_eval=100, n_test=10)
    with pytest.raises(DataError, match=r"^official test set: 1250 negative reviews needed, only \d+ available$"):
        make_splits("balanced", data_dir=imdb_dir, n_train=10, n_eval=10, n_test=2500)


def test_without_a_data_folder_the_hub_dataset_is_read_and_validated(monkeypatch):
    """No folder given and no IMDB_DATA_DIR: the Hub's stanfordnlp/imdb (a stand-in here: tests never touch the
    network), each split validated under its Hub name."""
    import datasets

    raw = make_imdb(n_train=20, n_test=20, n_dup=0)
    asked = []

    def fake_load_dataset(name):
        asked.append(name)
        bad_test = raw["test"].assign(label=[5] + raw["test"]["label"].tolist()[1:])
        return {"train": datasets.Dataset.from_pandas(raw["train"]), "test": datasets.Dataset.from_pandas(bad_test)}

    monkeypatch.delenv("IMDB_DATA_DIR", raising=False)
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    with pytest.raises(DataError, match=r"^stanfordnlp/imdb:test: label 5 at row 0 is outside \{0, 1\}$"):
        load_imdb()
    assert asked == ["stanfordnlp/imdb"]
    monkeypatch.setattr(datasets, "load_dataset", lambda name: {s: datasets.Dataset.from_pandas(raw[s])
                                                                for s in ("train", "test")})
    loaded = load_imdb()
    assert {s: len(df) for s, df in loaded.items()} == {"train": 20, "test": 20}
    _, manifest = make_splits("official", 0)
    assert manifest["source"] == "stanfordnlp/imdb"
