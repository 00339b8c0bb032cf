"""The strict reader of files buildtool is pointed at: what it accepts, and what it refuses before building anything."""

import pytest

from buildtool.util import yaml_io


def test_plain_yaml_and_json_are_read():
    assert yaml_io.parse("a: 1\nb: [x, 'y']\n") == {"a": 1, "b": ["x", "y"]}
    assert yaml_io.parse('{"containers": [{"image": "x"}]}') == {"containers": [{"image": "x"}]}
    assert yaml_io.parse("") is None


@pytest.mark.parametrize(
    "text, why",
    [
        ("a: 1\na: 2\n", "duplicate key a at line 2"),
        ("a: &x 1\nb: *x\n", "anchor &x at line 1"),
        ("<<: {a: 1}\n", "merge key '<<'"),
        ("a: !!python/object/apply:os.system [id]\n", "could not determine a constructor"),
        ("{[1]: 2}", "unhashable key"),
        ("a: [1\n", "not valid YAML"),
        ("- " * 150 + "x\n", "nested deeper than 100 levels"),
        ("a: 1\n---\nb: 2\n", "not valid YAML: expected a single document in the stream but found another"),
    ],
)
def test_refusals_name_the_problem_and_line(text, why):
    with pytest.raises(yaml_io.YamlProblem) as caught:
        yaml_io.parse(text)
    assert why in str(caught.value) and "\n" not in str(caught.value)


def test_node_cap_applies_before_construction():
    with pytest.raises(yaml_io.YamlProblem, match="more than 1000 nodes"):
        yaml_io.parse("- 1\n" * 2000, max_nodes=1000)


def test_files_are_capped_and_utf8(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_bytes(b"a: 1\n" + b"#" * 100)
    with pytest.raises(yaml_io.YamlProblem, match="105 bytes, more than the 100 accepted"):
        yaml_io.read_text(path, max_bytes=100)
    path.write_bytes(b"a: \xff\n")
    with pytest.raises(yaml_io.YamlProblem, match=r"not UTF-8 \(byte 0xff at offset 3\)"):
        yaml_io.load(path)
    with pytest.raises(FileNotFoundError):
        yaml_io.load(tmp_path / "missing.yaml")
    with pytest.raises(yaml_io.YamlProblem, match="not a regular file"):
        yaml_io.load(tmp_path)


def test_shown_keeps_messages_on_one_line():
    assert yaml_io.shown("plain") == "plain"
    assert yaml_io.shown("a\nb") == "a\\nb"
    assert yaml_io.shown("x" * 200, 10) == "x" * 10 + "..."
    assert yaml_io.shown(["a"]) == "['a']"
