#!/usr/bin/env bash
# Mutation testing of the guarantee modules: image_map, staleness, freshness, verify, digest, compiler,
# kfp_compile, plan.
#
# mutmut ([tool.mutmut] in pyproject.toml) changes those modules one small edit at a time (a
# comparison flipped, a string emptied, a value replaced by None...) and runs the fast unit tests
# that reach the edited function. A mutant no test fails on "survives": wrong code the suite would
# let through. Writes the score and every survivor's diff to bench/results/mutation.txt.
#
#   bench/mutation.sh            # about 5 minutes on 2 workers (736 mutants)
#   MUTATION_JOBS=1 bench/mutation.sh
#
# Needs the dev install (scripts/venv.sh: mutmut comes with the [test] extra). No engine, no registry.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=${BUILDTOOL_VENV:-.venv}
JOBS=${MUTATION_JOBS:-2}
OUT=bench/results/mutation.txt
LOG=bench/results/mutation.log
mkdir -p bench/results

# mutmut caches results in mutants/: start clean, so the figures describe this tree.
rm -rf mutants
started=$(date +%s)
status=0
"$VENV/bin/mutmut" run --max-children "$JOBS" > "$LOG" 2>&1 || status=$?
seconds=$(( $(date +%s) - started ))
if [ "$status" -ne 0 ] && ! grep -q "mutations/second" "$LOG"; then
  echo "mutation: error: mutmut failed (exit $status); see $LOG" >&2
  exit 1
fi

"$VENV/bin/mutmut" results --all true 2>/dev/null > mutants/results.txt
"$VENV/bin/python" - "$OUT" "$seconds" "$JOBS" "$VENV" <<'PY'
import subprocess
import sys
from collections import Counter
from pathlib import Path

out, seconds, jobs, venv = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
results = {}
for line in Path("mutants/results.txt").read_text().splitlines():
    name, _, status = line.strip().rpartition(": ")
    if name:
        results[name] = status
counts = Counter(results.values())
total = len(results)
survivors = sorted(n for n, s in results.items() if s not in ("killed", "timeout"))
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
lines = [
    f"mutation testing of buildtool's guarantee modules (commit {commit}, {seconds}s on {jobs} worker(s))",
    "modules: image_map, staleness, freshness, verify, digest, compiler, kfp_compile, plan ([tool.mutmut] in pyproject.toml)",
    f"mutants: {total}   " + "   ".join(f"{status}: {n}" for status, n in sorted(counts.items())),
    f"survivors: {len(survivors)} of {total} ({100 * len(survivors) / max(total, 1):.1f}%); "
    f"killed {100 * counts.get('killed', 0) / max(total, 1):.1f}%",
    "explanations of the survivors: bench/mutation.md",
    "",
]
for name in survivors:
    diff = subprocess.run([f"{venv}/bin/mutmut", "show", name], capture_output=True, text=True).stdout
    changed = [l for l in diff.splitlines() if l[:1] in "-+" and not l.startswith(("---", "+++"))]
    lines.append(f"{name}: {results[name]}")
    lines.extend(f"    {l.strip()[:1]} {l[1:].strip()}" for l in changed)
out.write_text("\n".join(lines) + "\n")
print("\n".join(lines[:4]))
PY
