import numpy as np
import pytest

from data_tools.attributes import (LFW_ATTRIBUTE_NAMES, FormatError, canonical_name,
                                   parse_person_image, read_attributes, read_celeba_attributes,
                                   read_lfw_attributes, resolve_attribute)


def _lfw_text(rows, names=LFW_ATTRIBUTE_NAMES):
    lines = ["# Attributes for LFW, from the PubFig project", "\t".join(["#", "person", "imagenum", *names])]
    lines += ["\t".join([p, str(n), *(f"{v:.3f}" for v in vals)]) for p, n, vals in rows]
    return "\n".join(lines) + "\n"


def test_lfw_header_quirk_and_names(tmp_path):
    rng = np.random.default_rng(0)
    rows = [("Zed Last", 3, rng.normal(size=73)), ("Aaron Eckhart", 1, rng.normal(size=73)),
            ("Zed Last", 1, rng.normal(size=73))]  # grouped, not sorted
    path = tmp_path / "lfw_attributes.txt"
    path.write_text(_lfw_text(rows))
    table = read_lfw_attributes(path)
    assert list(table.columns[:3]) == ["person", "imagenum", "path"]
    assert list(table.columns[3:]) == list(LFW_ATTRIBUTE_NAMES)  # '#' did not shift columns
    assert table["path"].tolist() == ["Zed_Last/Zed_Last_0003.jpg",
                                      "Aaron_Eckhart/Aaron_Eckhart_0001.jpg",
                                      "Zed_Last/Zed_Last_0001.jpg"]
    np.testing.assert_allclose(table["5 o' Clock Shadow"], [np.round(r[2][64], 3) for r in rows])
    np.testing.assert_allclose(table["Strong Nose-Mouth Lines"], [np.round(r[2][65], 3) for r in rows])


@pytest.mark.parametrize("line, match", [
    ("Bad Row\t1\t" + "\t".join(["0.1"] * 72), r"lfw_attributes.txt:3: expected 75 tab-separated fields, found 74"),
    ("Bad Row\tone\t" + "\t".join(["0.1"] * 73), r"lfw_attributes.txt:3: invalid literal"),
    ("Bad Row\t1\t" + "\t".join(["x"] * 73), r"lfw_attributes.txt:3: could not convert"),
])
def test_lfw_malformed_rows_name_file_and_line(tmp_path, line, match):
    path = tmp_path / "lfw_attributes.txt"
    path.write_text(_lfw_text([]) + line + "\n")
    with pytest.raises(FormatError, match=match):
        read_lfw_attributes(path)


def test_lfw_bad_header(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("# comment\nperson\timagenum\tMale\n")
    with pytest.raises(FormatError, match=r"a.txt:2: expected header"):
        read_lfw_attributes(path)


def test_celeba_format(tmp_path):
    names = "5_o_Clock_Shadow Arched_Eyebrows Smiling Young "  # trailing space, as in the real file
    path = tmp_path / "list_attr_celeba.txt"
    path.write_text(f"2\n{names}\n000001.jpg -1  1  1 -1\n000002.jpg  1 -1 -1  1\n")
    table = read_celeba_attributes(path)
    assert list(table.columns[3:]) == names.split()
    assert table["imagenum"].tolist() == [1, 2]
    assert table["Smiling"].tolist() == [1.0, -1.0]
    assert read_attributes(path).shape == table.shape
    path.write_text(f"3\n{names}\n000001.jpg -1  1  1 -1\n")
    with pytest.raises(FormatError, match="announces 3 images, found 1"):
        read_celeba_attributes(path)
    path.write_text(f"1\n{names}\n000001.jpg -1  1  1 0\n")
    with pytest.raises(FormatError, match=r"list_attr_celeba.txt:3: .* -1 or 1"):
        read_celeba_attributes(path)


def test_names_match_case_and_separator_insensitively():
    assert canonical_name("5 o' Clock Shadow") == canonical_name("5_o_Clock_Shadow")
    assert resolve_attribute("middle_aged", LFW_ATTRIBUTE_NAMES) == "Middle Aged"
    assert resolve_attribute("STRONG nose mouth-lines", LFW_ATTRIBUTE_NAMES) == "Strong Nose-Mouth Lines"
    with pytest.raises(KeyError, match="unknown attribute 'smilling'; did you mean 'Smiling'"):
        resolve_attribute("smilling", LFW_ATTRIBUTE_NAMES)


def test_parse_person_image():
    assert parse_person_image("Aaron Eckhart/1") == ("Aaron Eckhart", 1)
    assert parse_person_image("Aaron_Eckhart/12") == ("Aaron Eckhart", 12)
    with pytest.raises(ValueError, match="not of the form 'Person Name/N'"):
        parse_person_image("Aaron Eckhart")
