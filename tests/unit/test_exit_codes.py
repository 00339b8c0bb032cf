"""The exit codes: buildtool/errors.py is their one source; README.md's table lists exactly those."""

from __future__ import annotations

import re

from buildtool.errors import BuildtoolError

from ..conftest import REPO
from ..helpers import failure_exit_codes


def readme_exit_codes() -> list[int]:
    """The codes of README.md's `### Exit codes` table, in its order (repeats kept, so a twice-listed code shows)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert "### Exit codes" in text, "README.md has no '### Exit codes' section"
    table = text.split("### Exit codes", 1)[1].split("\n\n", 2)[1]
    return [int(code) for code in re.findall(r"^\| (\d+) \|", table, re.M)]


def test_the_readme_table_lists_exactly_the_codes_of_errors_py() -> None:
    listed = readme_exit_codes()
    assert len(listed) == len(set(listed)), f"a code is listed twice in README.md: {sorted(listed)}"
    assert set(listed) == failure_exit_codes(), (
        f"README.md's exit-code table lists {sorted(listed)}; buildtool/errors.py has {sorted(failure_exit_codes())}"
    )


def test_each_kind_of_error_has_its_own_code() -> None:
    seen: dict[int, str] = {}
    kinds = list(BuildtoolError.__subclasses__())
    while kinds:
        kind = kinds.pop()
        kinds += kind.__subclasses__()
        code = vars(kind).get("exit_code")
        assert code is not None or kind.__name__ == "Interrupted", f"{kind.__name__} has no exit_code of its own"
        if code is not None:
            assert code not in seen, f"{kind.__name__} and {seen[code]} share exit code {code}"
            seen[code] = kind.__name__
    assert set(seen) | {130, 143} == failure_exit_codes()
