#!/bin/sh
# A GRPO reward command (docs/grpo.md): one JSON object per line on stdin, keys sorted
# ({"answer", "completion", "prompt", "truncated"}); prints 1 when the first number in the
# completion is the answer, else 0. POSIX sh, sed and awk only.
sed -e 's/.*"answer":"\{0,1\}\([0-9-]*\)"\{0,1\},"completion":"\(\([^"\\]\|\\.\)*\)".*/\1 \2/' |
awk '{ want = $1; got = ""; for (i = 2; i <= NF; i++) if (match($i, /^[0-9-]+/)) { got = substr($i, RSTART, RLENGTH); break }
       print (got != "" && got == want) ? 1 : 0 }'
