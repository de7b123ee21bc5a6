#!/usr/bin/env bash
# Builds .venv-oldest after scripts/setup.sh: a venv holding only the oldest supported transformers,
# accelerate and lightning and what they need beyond requirements-lock.txt (requirements-oldest.txt),
# with a .pth that appends .venv's site-packages after its own. So torch, numpy and the compiled
# gradprobe come from .venv (nothing is rebuilt or reinstalled) and the old frameworks shadow the new.
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=.venv-oldest
if [ ! -x "$OLD/bin/python" ]; then
  .venv/bin/python -m venv --without-pip "$OLD"  # .venv's pip installs into it
fi
site=$("$OLD/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
main_site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
running=$(.venv/bin/python -c 'import sys, sysconfig; print(f"{sys.version_info[0]}.{sys.version_info[1]} {sysconfig.get_platform()}")')
locked=$(sed -n 's/^# resolved for: //p' requirements-oldest.txt 2>/dev/null || true)
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
export PIP_CONSTRAINT="$PWD/scripts/constraints.txt"
if [ "$running" != "$locked" ]; then
  # As setup.sh does: resolve now. Against what .venv holds, so only what must change is listed.
  echo "setup_oldest.sh: WARNING: requirements-oldest.txt was resolved for ${locked:-nothing}, this is $running:" \
    "resolving the oldest set now (not reproducible; bash scripts/lock.sh locks for this one)" >&2
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  .venv/bin/python scripts/lockfile.py pins pyproject.toml > "$tmp/pins.txt"
  "${PIP[@]}" install --dry-run --report "$tmp/report.json" -r requirements-dev.txt -c "$tmp/pins.txt"
  .venv/bin/python scripts/lockfile.py report "$tmp/report.json" > "$tmp/requirements.txt"
  overlay="$tmp/requirements.txt"
else
  overlay=requirements-oldest.txt
fi
# Skipped when the set installed last time is unchanged (a copy of it is kept in the venv).
if ! cmp -s "$overlay" "$OLD/.installed-from"; then
  rm -rf "$site" && mkdir -p "$site"
  # --no-deps: the list is complete (resolved together with the lock); --target: into this venv's
  # site-packages, from .venv's pip, without looking at what .venv holds.
  "${PIP[@]}" install --no-deps --target "$site" -r "$overlay"
  cp "$overlay" "$OLD/.installed-from"
fi
# Written every time: it holds .venv's absolute path.
echo "import site; site.addsitedir('$main_site')" > "$site/zz_gradprobe_main_venv.pth"
