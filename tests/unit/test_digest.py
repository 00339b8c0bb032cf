import os
import time

from buildtool.inputs import context, digest

BASE = "sha256:" + "1" * 64


def inputs_of(root, args=None, platform="linux/amd64", base=BASE):
    return digest.compute(context.scan(root), args or {}, platform, base)


def make_context(root, files):
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


FILES = {"Dockerfile": "FROM x\n", "a/b.txt": "b", "c.txt": "c", ".dockerignore": "ignored/\n*.secret\n"}


def test_same_inputs_same_digest_regardless_of_creation_order_and_mtimes(tmp_path):
    one = make_context(tmp_path / "one", FILES)
    two = make_context(tmp_path / "two", dict(reversed(list(FILES.items()))))
    past = time.time() - 10_000
    os.utime(two / "c.txt", (past, past))
    assert inputs_of(one).digest == inputs_of(two).digest
    assert inputs_of(one).tag.startswith("in-") and len(inputs_of(one).tag) == 19


def test_each_input_changes_the_digest(tmp_path):
    root = make_context(tmp_path / "ctx", FILES)
    reference = inputs_of(root).digest
    assert inputs_of(root, args={"X": "1"}).digest != reference
    assert inputs_of(root, platform="linux/arm64").digest != reference
    assert inputs_of(root, base="sha256:" + "2" * 64).digest != reference
    (root / "c.txt").write_text("changed")
    assert inputs_of(root).digest != reference
    (root / "c.txt").write_text("c")
    assert inputs_of(root).digest == reference
    (root / "c.txt").chmod(0o755)
    assert inputs_of(root).digest != reference
    (root / "c.txt").chmod(0o644)
    (root / "new.txt").write_text("n")
    assert inputs_of(root).digest != reference


def test_ignored_files_do_not_count(tmp_path):
    root = make_context(tmp_path / "ctx", FILES)
    reference = inputs_of(root).digest
    make_context(root, {"ignored/data.bin": "x", "key.secret": "hunter2"})
    assert inputs_of(root).digest == reference
    assert not any("secret" in e.path or "ignored" in e.path for e in context.scan(root).entries)


def test_registry_name_is_not_an_input(project):
    from buildtool import config
    from buildtool.inputs import plan

    one = config.load(project)
    two = config.load(project, registry="registry.example.com")
    contexts = {i.name: context.scan(i.context) for i in one.images}
    externals = {"127.0.0.1:5000/lib/python:3.11": BASE}
    modules = {"training": ["numpy"]}
    first = plan.compute_inputs(one, contexts, externals, modules)
    assert first == plan.compute_inputs(two, contexts, externals, modules)


def test_explain_names_what_changed(tmp_path):
    root = make_context(tmp_path / "ctx", FILES)
    before = inputs_of(root, args={"A": "1"})
    (root / "c.txt").write_text("changed")
    (root / "d.txt").write_text("new")
    after = inputs_of(root, args={"A": "2"}, base="sha256:" + "2" * 64)
    reasons = digest.explain(before.items, after.items)
    assert "file c.txt changed" in reasons
    assert "file d.txt added" in reasons
    assert "build arg A changed" in reasons
    assert any(r.startswith("base image changed") for r in reasons)
