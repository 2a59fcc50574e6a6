import json

import numpy as np
import pytest

from data_tools.attributes import attribute_columns
from data_tools.index import load_index
from data_tools.neighbors import Term, binarize_paper, find_neighbors, parse_spec


@pytest.fixture(scope="module")
def table(synth_lfw):
    return load_index(synth_lfw[1]).table


def test_parse_spec(table):
    cols = attribute_columns(table)
    assert parse_spec("~mouth_closed, Smiling", cols) == (Term("Mouth Closed", False), Term("Smiling", True))
    with pytest.raises(ValueError, match="empty term"):
        parse_spec("smiling,", cols)
    with pytest.raises(KeyError, match="did you mean 'Senior'"):
        parse_spec("senor", cols)


def test_chainer_rule_matches_bruteforce(table):
    row = int(np.flatnonzero(table["Smiling"] < -0.5)[0])
    found = find_neighbors(table, row, "smiling", k=5, rule="chainer")
    scores = table[attribute_columns(table)].to_numpy()
    dist = np.linalg.norm(scores - scores[row], axis=1)
    for side, mask in (("sources", table["Smiling"] < -0.5), ("targets", table["Smiling"] >= 0.5)):
        mask = mask.to_numpy().copy()
        mask[row] = False
        expect = np.sort(dist[mask])[:5]
        got = getattr(found, side)
        np.testing.assert_allclose(got["distance"], expect, rtol=1e-10)
        assert table["path"].iloc[row] not in set(got["path"])
    assert (table.set_index("path").loc[found.targets["path"], "Smiling"] >= 0.5).all()


def test_negation_and_combination(table):
    row = 0
    found = find_neighbors(table, row, "senior,~youth", k=3)
    t = table.set_index("path")
    assert (t.loc[found.targets["path"], "Senior"] >= 0.5).all()
    assert (t.loc[found.targets["path"], "Youth"] < -0.5).all()
    assert (t.loc[found.sources["path"], "Senior"] < -0.5).all()
    assert (t.loc[found.sources["path"], "Youth"] >= 0.5).all()


def test_paper_rule_gender_and_hamming(table):
    row = int(np.flatnonzero(table["Male"] > 0)[0])
    found = find_neighbors(table, row, "smiling", k=4, rule="paper", exclude_person=True)
    binary = binarize_paper(table[attribute_columns(table)])
    t = table.reset_index().set_index("path")
    for side in (found.sources, found.targets):
        rows = t.loc[side["path"], "index"].to_numpy()
        assert binary["Male"].to_numpy()[rows].all()
        assert not (table["person"].iloc[rows] == table["person"].iloc[row]).any()
        expect = (binary.to_numpy()[rows] != binary.to_numpy()[row]).mean(axis=1)
        np.testing.assert_allclose(side["distance"], expect)
    assert "Female" in binary and (binary["Female"] == ~binary["Male"]).all()


def test_binarize_keeps_confident_two_thirds():
    import pandas as pd
    scores = pd.DataFrame({"Male": [-1.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]})
    on = binarize_paper(scores)["Male"].tolist()
    assert on == [False, False, False, True, True, True, True]


def test_few_candidates_warn(table):
    with pytest.warns(UserWarning, match="only .* target faces"):
        find_neighbors(table, 0, "sunglasses", k=500)


def test_neighbors_cli_json(synth_lfw, cli):
    result, index_file = synth_lfw
    table = load_index(index_file).table
    person, num = table["person"].iloc[2], int(table["imagenum"].iloc[2])
    code, out, err = cli("data", "neighbors", "--index", index_file, "--input", f"{person}/{num}",
                         "--attribute", "Smiling", "-k", "3", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert len(data["sources"]) == 3 and len(data["targets"]) == 3
    assert set(data["targets"][0]) >= {"person", "imagenum", "path"}
    code, out, err = cli("data", "neighbors", "--index", index_file, "--input", f"{person}/{num}",
                         "--attribute", "smiling", "-k", "2")
    assert code == 0 and "targets (2, attribute on)" in out
    code, _, err = cli("data", "neighbors", "--index", index_file, "--input", f"{person}/999",
                       "--attribute", "smiling")
    assert code == 2 and "has images" in err  # a value the data does not have: a usage error
    code, _, err = cli("data", "neighbors", "--index", index_file, "--input", f"{person[:-1]}/{num}",
                       "--attribute", "smiling")
    assert code == 2 and err.strip().endswith(f"no person {person[:-1]!r} in the index; did you mean {person!r}?")
    code, _, err = cli("data", "neighbors", "--index", index_file, "--input", f"{person}/{num}",
                       "--attribute", "smilng")
    assert code == 2 and err.strip() == "dfi: error: unknown attribute 'smilng'; did you mean 'Smiling'?"
    code, _, err = cli("data", "neighbors", "--index", index_file, "--input", "x/1",
                       "--attribute", "smiling", "--rule", "knn")
    assert code == 2 and "invalid choice" in err
