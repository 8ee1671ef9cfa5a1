#!/bin/sh
# Prints a one-entry Debian changelog for a build of VERSION at EPOCH
# (the package is native, so lintian wants /usr/share/doc/tokend/changelog.gz).
# Usage: scripts/debchangelog.sh VERSION EPOCH
set -eu
version=$1
epoch=${2:-$(date +%s)}
cd "$(dirname "$0")/.."

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
date=$(LC_ALL=C date -u -R -d "@$epoch")

printf 'tokend (%s) unstable; urgency=medium\n\n' "$version"
printf '  * Build of tokend %s from commit %s.\n' "$version" "$commit"
printf '    The project history is the git log of the tokend repository.\n\n'
printf ' -- tokend maintainers <tokend@example.org>  %s\n' "$date"
