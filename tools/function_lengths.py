#!/usr/bin/env python3
"""Lists the longest Swift functions in Sources (lines from `func`/`init` to its closing brace).

    python3 tools/function_lengths.py [--top N] [--root DIR]

A review aid for CONTRIBUTING.md's "a function fits on one screen": it matches braces, skipping
string literals and comments, which is enough for this code base (no parser needed).
"""
import argparse
import os
import re

DECL = re.compile(r'^\s*(?:@\w+(?:\([^)]*\))?\s+)*(?:(?:public|package|private|fileprivate|internal|open|static|class|final|'
                  r'override|mutating|nonisolated(?:\(unsafe\))?|convenience|required|@discardableResult)\s+)*'
                  r'(func\s+[^\s(<]+|init[?!]?|deinit|subscript)\b')


def strip_line(line, in_block):
    """The line without comments and string contents; whether a block comment continues."""
    out, i, n = [], 0, len(line)
    in_string = False
    while i < n:
        c = line[i]
        if in_block:
            if line.startswith('*/', i):
                in_block, i = False, i + 2
            else:
                i += 1
            continue
        if in_string:
            if c == '\\':
                i += 2
                continue
            if c == '"':
                in_string = False
            i += 1
            continue
        if line.startswith('//', i):
            break
        if line.startswith('/*', i):
            in_block, i = True, i + 2
            continue
        if c == '"':
            in_string = True
        else:
            out.append(c)
        i += 1
    return ''.join(out), in_block


def functions(path):
    with open(path, encoding='utf-8') as f:
        lines = f.read().split('\n')
    stripped, in_block, in_multiline = [], False, False
    for line in lines:
        if line.count('"""') % 2 == 1:
            in_multiline = not in_multiline
            stripped.append('')
            continue
        if in_multiline:
            stripped.append('')
            continue
        s, in_block = strip_line(line, in_block)
        stripped.append(s)
    found = []
    for start, s in enumerate(stripped):
        m = DECL.match(lines[start])
        if not m or '{' not in ''.join(stripped[start:start + 8]):
            continue
        depth, opened = 0, False
        for end in range(start, len(stripped)):
            for c in stripped[end]:
                if c == '{':
                    depth, opened = depth + 1, True
                elif c == '}':
                    depth -= 1
            if opened and depth <= 0:
                found.append((end - start + 1, m.group(1), start + 1))
                break
    return found


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--top', type=int, default=15)
    p.add_argument('--root', default='Sources')
    a = p.parse_args()
    rows = []
    for d, _, files in os.walk(a.root):
        for f in files:
            if f.endswith('.swift'):
                path = os.path.join(d, f)
                rows += [(n, name, path, line) for n, name, line in functions(path)]
    rows.sort(key=lambda r: -r[0])
    for n, name, path, line in rows[:a.top]:
        print(f'{n:5d}  {path}:{line}  {name}')


if __name__ == '__main__':
    main()
