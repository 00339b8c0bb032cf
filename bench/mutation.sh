#!/usr/bin/env bash
# Mutation testing of the guarantee modules: image_map, staleness, freshness, verify, digest, compiler,
# kfp_compile, plan.
#
# mutmut ([tool.mutmut] in pyproject.toml) changes those modules one small edit at a time (a
# comparison flipped, a string emptied, a value replaced by None...) and runs the fast unit tests
# that reach the edited function. A mutant no test fails on "survives": wrong code the suite would
# let through. Writes the score and every survivor's diff to bench/results/mutation.txt.
#
#   bench/mutation.sh              # every mutant: 12 to 46 minutes on 2 shared workers (1916 mutants)
#   bench/mutation.sh --survivors  # only the last full run's survivors again, against the tests as they are now
#   bench/mutation.sh --survivors NAME...  # only those of its survivors (e.g. the ones new tests aim at)
#   MUTATION_JOBS=1 bench/mutation.sh
#
# --survivors keeps the full run's verdicts for the mutants it killed and reports both runs in the header;
# a change to the test selection in [tool.mutmut] makes mutmut forget those verdicts, so make one first.
# Needs the dev install (scripts/venv.sh: mutmut comes with the [test] extra). No engine, no registry.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=${BUILDTOOL_VENV:-.venv}
JOBS=${MUTATION_JOBS:-2}
OUT=bench/results/mutation.txt
LOG=bench/results/mutation.log
FULL=mutants/full-run.txt  # the full run's commit, seconds and workers, and its results (one per line)
mkdir -p bench/results

mode=full
if [ "${1:-}" = "--survivors" ]; then
  mode=survivors
  shift
  [ -f "$FULL" ] || { echo "mutation: error: no full run in mutants/; run bench/mutation.sh first" >&2; exit 1; }
elif [ -n "${1:-}" ]; then
  echo "mutation: error: unknown argument ${1}; use --survivors [NAME...] or nothing" >&2
  exit 2
fi

names=()
if [ "$mode" = full ]; then
  # mutmut caches results in mutants/: start clean, so the figures describe this tree.
  rm -rf mutants
else
  mapfile -t names < <(sed -n '4,$p' "$FULL" | awk -F': ' '$2 != "killed" && $2 != "timeout" {print $1}')
  if [ "$#" -gt 0 ]; then
    for name in "$@"; do
      grep -qxF "$name" < <(printf '%s\n' "${names[@]}") \
        || { echo "mutation: error: $name is not a survivor of the full run (see $FULL)" >&2; exit 2; }
    done
    names=("$@")
  fi
  [ "${#names[@]}" -gt 0 ] || { echo "mutation: the full run left no survivors" >&2; exit 0; }
fi
started=$(date +%s)
status=0
run_log=$(mktemp)
"$VENV/bin/mutmut" run --max-children "$JOBS" "${names[@]}" > "$run_log" 2>&1 || status=$?
seconds=$(( $(date +%s) - started ))
# The full run's log is replaced; a survivors run is added to it.
if [ "$mode" = full ]; then cat "$run_log" > "$LOG"; else cat "$run_log" >> "$LOG"; fi
if [ "$status" -ne 0 ] && ! grep -q "mutations/second" "$run_log"; then
  rm -f "$run_log"
  echo "mutation: error: mutmut failed (exit $status); see $LOG" >&2
  exit 1
fi
rm -f "$run_log"

"$VENV/bin/mutmut" results --all true 2>/dev/null > mutants/results.txt
"$VENV/bin/python" - "$OUT" "$seconds" "$JOBS" "$VENV" "$mode" "$FULL" "${#names[@]}" <<'PY'
import subprocess
import sys
from collections import Counter
from pathlib import Path

out, seconds, jobs, venv, mode = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
full, rerun = Path(sys.argv[6]), int(sys.argv[7])


def read(lines):
    results = {}
    for line in lines:
        name, _, status = line.strip().rpartition(": ")
        if name:
            results[name] = status
    return results


commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
now = read(Path("mutants/results.txt").read_text().splitlines())
if mode == "full":
    results = now
    full.write_text(f"{commit}\n{seconds}\n{jobs}\n" + "".join(f"{n}: {s}\n" for n, s in sorted(results.items())))
    run = f"commit {commit}, {seconds}s on {jobs} worker(s)"
else:
    first_commit, first_seconds, first_jobs, *lines = full.read_text().splitlines()
    results = read(lines)
    again = [n for n, s in results.items() if s not in ("killed", "timeout")]
    # mutmut keeps a verdict only for the mutants it ran this time; the full run's stand for the others.
    results.update({n: now[n] for n in again if now.get(n) in ("killed", "timeout", "survived")})
    which = "its survivors" if rerun == len(again) else f"{rerun} of its survivors"
    run = (
        f"full run at commit {first_commit}: {first_seconds}s on {first_jobs} worker(s), {len(again)} survivors; "
        f"then {which} run again (bench/mutation.sh --survivors, {seconds}s) at commit {commit}"
    )
counts = Counter(results.values())
total = len(results)
survivors = sorted(n for n, s in results.items() if s not in ("killed", "timeout"))
lines = [
    f"mutation testing of buildtool's guarantee modules ({run})",
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
