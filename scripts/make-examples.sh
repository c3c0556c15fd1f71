#!/usr/bin/env bash
# The example reports in docs/examples/, made from real runs:
#   check-quick.html   `twinrun check --preset quick` (two replicas of 750 steps; 2-4 minutes)
#   study-small.html   a small variance study: init and all, 3 quick-preset runs each (--jobs 2)
# and a screenshot of the top of each page (check-quick.png, study-small.png), taken in
# headless Chromium with the network blocked, as tests/test_report_browser.py opens them.
#
# Usage: scripts/make-examples.sh [check|study ...]   (default: both)
# Needs `make setup` (twinrun, Fashion-MNIST, Playwright and Chromium). The runs go to a
# throwaway store; nothing is added to ./twinrun-runs.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
OUT=docs/examples
STORE=$(mktemp -d "${TMPDIR:-/tmp}/twinrun-examples.XXXXXX")
trap 'rm -rf "$STORE"' EXIT
mkdir -p "$OUT"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(check study)

for target in "${targets[@]}"; do
    case "$target" in
    check)
        # A check records itself; its exit status is 1 when the replicas diverge, which is
        # still a report worth showing.
        "$BIN/twinrun" check --preset quick --store "$STORE" || [ $? -eq 1 ]
        id=$("$BIN/twinrun" checks --store "$STORE" --json |
             "$BIN/python" -c 'import json, sys; print(json.load(sys.stdin)[0]["check_id"])')
        "$BIN/twinrun" report "$id" --store "$STORE" -o "$OUT/check-quick.html"
        ;;
    study)
        "$BIN/twinrun" variance --runs 3 --vary init,all --preset quick --jobs 2 \
            --store "$STORE" --report "$OUT/study-small.html"
        ;;
    *)
        echo "Unknown example '$target'; give check, study, or nothing for both." >&2
        exit 2
        ;;
    esac
done

# Screenshots of the pages' tops, at a laptop's width, with every http(s) request aborted.
"$BIN/python" - "$OUT" "${targets[@]}" <<'PYTHON'
import shutil
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

folder, targets = Path(sys.argv[1]), sys.argv[2:]
names = {"check": "check-quick", "study": "study-small"}
executable = shutil.which("chromium") or shutil.which("chromium-browser")
if executable is None:
    sys.exit("Chromium is not installed; scripts/get-chromium.sh installs it.")
with sync_playwright() as playwright:
    browser = playwright.chromium.launch(executable_path=executable,
                                         args=["--headless=new", "--no-sandbox"])
    for target in targets:
        page = browser.new_page(viewport={"width": 1100, "height": 1400})
        page.route("**/*", lambda route: route.abort()
                   if route.request.url.startswith(("http://", "https://"))
                   else route.continue_())
        html = folder / f"{names[target]}.html"
        page.goto(html.resolve().as_uri())
        page.wait_for_load_state("load")
        png = folder / f"{names[target]}.png"
        page.screenshot(path=str(png))
        print(f"Wrote {png} ({png.stat().st_size // 1024} KB) and {html} "
              f"({html.stat().st_size // 1024} KB).")
    browser.close()
PYTHON
