#!/usr/bin/env bash
# Makes a headless browser available for the report.html test
# (tests/test_report_browser.py): Debian's chromium package when apt-get is
# usable (as root or with password-less sudo), else nothing. Prints the
# browser's path on stdout when there is one; says why not on stderr.
set -uo pipefail
find_browser() {
  for b in "${TFIGKD_CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
    [ -n "$b" ] && [ -x "$b" ] && { echo "$b"; return 0; }
  done
  return 1
}
if ! find_browser >/dev/null && command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi
  fi
  if [ "$SUDO" != none ]; then
    echo "Installing Debian's chromium ..." >&2
    $SUDO apt-get install -y -q chromium >&2 \
      || { $SUDO apt-get update -q >&2 && $SUDO apt-get install -y -q chromium >&2; } \
      || echo "apt-get could not install chromium (no network or no package list)." >&2
  else
    echo "chromium is not installed and apt-get needs root (no password-less sudo)." >&2
  fi
elif ! find_browser >/dev/null; then
  echo "chromium is not installed and there is no apt-get to install it." >&2
fi
find_browser || exit 1
