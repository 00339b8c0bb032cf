"""Cut a hash-locked requirements file into layer groups. No I/O here.

The lock is pip-compile's: one `name==version` block per package, its
`--hash` lines, and `# via` comments naming the packages that require it. A
group is its roots and everything they pull in (followed through the `# via`
comments), less what an earlier group holds; whatever is left forms the last
group. Each group becomes a file of its own, so a package added to the last
group leaves the earlier groups' files, and so their image layers, unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ConfigError

REST = "rest"
_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")
_PINNED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[^\]]*\])?==[^\s;\\]+")


def normalize(name: str) -> str:
    """PEP 503's normalized name: the lock's `# via` lines and the configuration may spell it either way."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Package:
    name: str  # normalized
    lines: tuple[str, ...]  # the requirement and its hashes, as the lock has them (continuations included)
    via: tuple[str, ...]  # normalized names of the packages that require it (not -c/-r sources)


@dataclass(frozen=True)
class Group:
    index: int  # 1, 2, ...: the order of the layers
    name: str  # its first root, or "rest"
    roots: tuple[str, ...]
    packages: tuple[Package, ...]

    @property
    def file(self) -> str:
        return f"layers/{self.index}-{self.name}.txt"


def parse_lock(text: str, where: str) -> tuple[Package, ...]:
    """The packages of a pip-compile lock; ConfigError for a requirement that is not pinned and hashed."""
    packages: list[Package] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.lstrip().startswith("#") or line.startswith(("-", " ", "\t")):
            i += 1
            continue
        start = i
        block = [line]
        while block[-1].rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            block.append(lines[i])
        i += 1
        name = _NAME.match(line)
        if name is None or not _PINNED.match(line) or not any("--hash=" in part for part in block):
            raise ConfigError(
                f"{where}:{start + 1}: {line.strip()[:80]!r} is not pinned with == and hashed; "
                "regenerate the lock with pip-compile --generate-hashes"
            )
        via: list[str] = []
        while i < len(lines) and lines[i].startswith((" ", "\t")) and lines[i].strip().startswith("#"):
            comment = lines[i].strip().lstrip("#").strip()
            if comment.startswith("via"):
                comment = comment[3:].strip()
            if comment and not comment.startswith("-"):
                via.append(normalize(comment.split()[0]))
            i += 1
        packages.append(Package(normalize(name[1]), tuple(part.rstrip() for part in block), tuple(via)))
    return tuple(packages)


def groups(
    packages: tuple[Package, ...], roots: tuple[tuple[str, ...], ...], where: str, key: str
) -> tuple[Group, ...]:
    """Layer groups: each configured one in order (its roots and what they pull in), then the rest."""
    by_name = {p.name: p for p in packages}
    required_by: dict[str, set[str]] = {p.name: set() for p in packages}
    for package in packages:
        for parent in package.via:
            if parent in required_by:
                required_by[parent].add(package.name)
    placed: set[str] = set()
    result: list[Group] = []
    for index, group_roots in enumerate(roots):
        wanted = [normalize(root) for root in group_roots]
        for root in wanted:
            if root not in by_name:
                raise ConfigError(
                    f"{where}: {key}[{index}] names {root!r}, which the lock does not hold; "
                    "add it to the requirements or remove it from the group"
                )
        members: set[str] = set()
        todo = [root for root in wanted if root not in placed]
        while todo:
            name = todo.pop()
            if name in members or name in placed:
                continue
            members.add(name)
            todo.extend(sorted(required_by[name]))
        placed |= members
        chosen = tuple(p for p in packages if p.name in members)
        result.append(Group(index + 1, wanted[0], tuple(wanted), chosen))
    rest = tuple(p for p in packages if p.name not in placed)
    result.append(Group(len(roots) + 1, REST, (), rest))
    return tuple(result)


def group_file(group: Group, lock: str, image: str) -> str:
    """The text of a group's lock: a header, then the requirements with their hashes (no `# via` comments,
    which change when an unrelated package is added)."""
    what = f"{', '.join(group.roots)} and what they pull in" if group.roots else "every package no earlier layer holds"
    header = [
        f"# Layer {group.index} of {lock}: {what}.",
        f"# Generated from it by `buildtool render {image}`; edit {lock}, not this file.",
    ]
    body = [line for package in group.packages for line in package.lines]
    return "\n".join(header + body) + "\n"
