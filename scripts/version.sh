#!/bin/sh
# Prints the version of this checkout as a valid Debian version, used both for
# `tokend version` (-X main.version) and for the package.
#   tag v1.2.3                 -> 1.2.3
#   tag v1.2.3-rc1             -> 1.2.3~rc1 (sorts before 1.2.3)
#   3 commits after v1.2.3     -> 1.2.3+3.gabcdef1
#   uncommitted changes        -> 1.2.3+dirty, 1.2.3+3.gabcdef1.dirty
#   no tag                     -> 0.0.0~gabcdef1 (sorts below any tagged release)
#   no commit / no git         -> 0.0.0~unknown
# Debian versions must start with a digit and use only [A-Za-z0-9.+~].
set -eu
cd "$(dirname "$0")/.."

if desc=$(git describe --tags --dirty 2>/dev/null); then
    # v1.2.3[-rc1][-N-gHASH][-dirty]: a pre-release suffix becomes '~rc1',
    # then the first '-' becomes '+' and the others '.'.
    v=$(printf '%s' "${desc#v}" |
        sed -e 's/-\(alpha\|beta\|rc\|pre\)/~\1/' -e 's/-/+/' -e 's/-/./g')
    case "$v" in
        [0-9]*) ;;
        *) v="0.0.0~$v" ;; # a tag that is not a version number
    esac
elif desc=$(git describe --always --dirty 2>/dev/null); then
    v="0.0.0~g$(printf '%s' "$desc" | sed -e 's/-/./g')"
else
    v=0.0.0~unknown
fi
# Anything else a tag might contain is not allowed in a Debian version.
printf '%s\n' "$v" | sed -e 's/[^A-Za-z0-9.+~]/./g'
