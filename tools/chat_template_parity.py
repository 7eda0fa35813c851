#!/usr/bin/env python3
"""Renders every chat template that trl, axolotl and llama-cpp-python ship with transformers'
apply_chat_template and with `deeptrain tokenize --chat --render`, and checks that the texts are
equal (or that both fail), conversation by conversation.

Run by hand, not in CI (needs PyPI and a release build):
    python3 -m venv tools/.venv && tools/.venv/bin/pip install transformers jinja2
    swift build -c release
    tools/.venv/bin/python tools/chat_template_parity.py --deeptrain .build/release/deeptrain [--verbose]

Options: --only REGEX (templates whose "package/name" matches), --cache DIR, --json FILE (the
summary also to a file), --verbose (a diff per mismatch, the messages of both-failed renders).

The packages are fetched without their dependencies into tools/.cache/chat-templates/ (git
ignores it; the templates are not committed, for their licences) and nothing is built:
  trl 1.16.0              wheel   trl/chat_templates/*.jinja
  axolotl 0.19.0          wheel   axolotl/utils/chat_templates/templates/*.jinja
  llama-cpp-python 0.3.36 sdist   vendor/llama.cpp/models/templates/*.jinja
The sdist is fetched with `--only-binary=:all: --no-binary=llama-cpp-python`: pip still prepares
its metadata (scikit-build-core's hook, with its build requirements as wheels) but compiles
nothing. A template directory could also hold JSON (`chat_template` as a string or a list of
named templates: each one is rendered); other files are listed as skipped. All three packages
ship plain .jinja files.

Per template a temporary directory holds a tokenizer.json (Tests/Fixtures/chat_templates/chatml),
a tokenizer_config.json with the special tokens of the template's model family (SPECIAL_TOKENS),
and chat_template.jinja as transformers 5 saves it. transformers loads it with AutoTokenizer and
renders apply_chat_template(messages, tools=..., tokenize=False, add_generation_prompt=...);
deeptrain reads the same directory, so both see the same template, bos_token, eos_token, ...

Each template gets every conversation of CONVERSATIONS, with and without add_generation_prompt.
A render matches when the texts are equal, or when transformers raises and deeptrain exits
non-zero. Dates: both run with TZ=UTC, and for a template that calls strftime_now('FMT') the texts
that differ are compared again with FMT's rendering of yesterday, today and tomorrow (UTC)
replaced by a placeholder in both, so a run across midnight gives no false mismatch (date_string
is not passed: deeptrain's command has no way to set it).

The summary (JSON on stdout) gives per package the templates, renders (template x conversation x
add_generation_prompt), exact matches, matches after the date placeholder, both-failed renders,
and lists the mismatches (template, conversation index, offset, ~80 characters of each side from
the first difference), deeptrain-only failures (its message) and transformers-only failures.
Exit code 1 when any of those three lists is not empty.
"""
import argparse
import datetime
import difflib
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE_TOKENIZER = os.path.join(ROOT, "Tests", "Fixtures", "chat_templates", "chatml", "tokenizer.json")

# name, pip requirement, pip format options, archive glob, folder of the templates inside the archive
PACKAGES = [
    ("trl", "trl==1.16.0", ["--only-binary=:all:"], "trl-1.16.0-*.whl", "trl/chat_templates/"),
    ("axolotl", "axolotl==0.19.0", ["--only-binary=:all:"], "axolotl-0.19.0-*.whl",
     "axolotl/utils/chat_templates/templates/"),
    ("llama-cpp-python", "llama-cpp-python==0.3.36", ["--only-binary=:all:", "--no-binary=llama-cpp-python"],
     "llama_cpp_python-0.3.36.tar.gz", "llama_cpp_python-0.3.36/vendor/llama.cpp/models/templates/"),
]

# The special tokens of a template's model family: the first pattern that matches the lower-cased
# template name wins. None leaves the token out (the template sees it undefined).
_DEFAULT = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
_DEEPSEEK = {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"}
_LLAMA3 = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}
_QWEN = {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
_MISTRAL = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
SPECIAL_TOKENS = [
    (r"deepseek", _DEEPSEEK),
    (r"hermes", {"bos_token": "<|begin_of_text|>", "eos_token": "<|im_end|>"}),
    (r"llama4|llama-4", {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot|>"}),
    (r"llama3|llama-3|firefunction|functionary|llava_next", _LLAMA3),
    (r"qwen|qwq|mimo|smollm|smolvlm|hunyuan|hy3", _QWEN),
    (r"gemma", {"bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>", "pad_token": "<pad>"}),
    (r"mistral|ministral|devstral|pixtral|magistral", _MISTRAL),
    (r"phi_4|phi-4", {"bos_token": "<|endoftext|>", "eos_token": "<|im_end|>"}),
    (r"phi", {"bos_token": "<s>", "eos_token": "<|endoftext|>", "unk_token": "<unk>"}),
    (r"cohere|command|aya|c4ai", {"bos_token": "<BOS_TOKEN>", "eos_token": "<|END_OF_TURN_TOKEN|>",
                                  "pad_token": "<PAD>", "unk_token": "<UNK>"}),
    (r"gptoss|gpt-oss", {"bos_token": "<|startoftext|>", "eos_token": "<|return|>"}),
    (r"granite", {"bos_token": "<|end_of_text|>", "eos_token": "<|end_of_text|>"}),
    (r"lfm", {"bos_token": "<|startoftext|>", "eos_token": "<|im_end|>", "pad_token": "<|pad|>"}),
    (r"glm", {"bos_token": None, "eos_token": "<|endoftext|>"}),
    (r"kimi|moonshot", {"bos_token": "[BOS]", "eos_token": "[EOS]"}),
    (r"minimax", {"bos_token": "]~!b[", "eos_token": "[e~["}),
    (r"exaone", {"bos_token": "[BOS]", "eos_token": "[|endofturn|]"}),
    (r"nemotron", {"bos_token": "<s>", "eos_token": "<|im_end|>"}),
    (r"falcon", {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}),
    (r"chatml|jamba|metharme|alpaca|nemotron_h", _DEFAULT),
]


def special_tokens_for(name):
    for pattern, tokens in SPECIAL_TOKENS:
        if re.search(pattern, name.lower()):
            return {k: v for k, v in tokens.items()}
    return dict(_DEFAULT)


WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city, now.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "e.g. 東京"},
        "unit": {"type": "string", "enum": ["c", "f"], "description": "Degrees Celsius or Fahrenheit."}},
        "required": ["city"]}}}
SEARCH_TOOL = {"type": "function", "function": {
    "name": "search", "description": "Search the web.",
    "parameters": {"type": "object", "properties": {
        "query": {"type": "string"}, "limit": {"type": "integer", "description": "At most this many results."}},
        "required": ["query"]}}}
TOOLS = [WEATHER_TOOL, SEARCH_TOOL]

# (description, messages, tools or None)
CONVERSATIONS = [
    ("system + user",
     [{"role": "system", "content": "You are a helpful assistant."},
      {"role": "user", "content": "Hello! What's 2+2?"}], None),
    ("several turns with a system prompt, ends with user",
     [{"role": "system", "content": "  You are terse.  "}, {"role": "user", "content": "Name a prime."},
      {"role": "assistant", "content": "7"}, {"role": "user", "content": "Another one?"},
      {"role": "assistant", "content": "11.\n"}, {"role": "user", "content": "Thanks!  "}], None),
    ("one user message, non-ASCII and newlines",
     [{"role": "user", "content": "Écris un haïku sur 東京 🚀\nDeux lignes suffisent."}], None),
    ("no system prompt, ends with assistant",
     [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}], None),
    ("tools, a call with dict arguments, its result, the answer",
     [{"role": "system", "content": "You can call tools."}, {"role": "user", "content": "Weather in Paris?"},
      {"role": "assistant", "content": "", "tool_calls": [
          {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}}]},
      {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "{\"temp\": 18}"},
      {"role": "assistant", "content": "It is 18°C in Paris."}], TOOLS),
    ("tools, content None with two calls (string arguments), two results",
     [{"role": "user", "content": "Weather in Paris and Tokyo?"},
      {"role": "assistant", "content": None, "tool_calls": [
          {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
          {"id": "call_b", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"東京\", \"unit\": \"c\"}"}}]},
      {"role": "tool", "tool_call_id": "call_a", "name": "get_weather", "content": "18°C, cloudy"},
      {"role": "tool", "tool_call_id": "call_b", "name": "get_weather", "content": "22°C, clear"}], TOOLS),
    ("tools given, no call",
     [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}], TOOLS),
    ("empty strings as content",
     [{"role": "system", "content": ""}, {"role": "user", "content": ""}, {"role": "assistant", "content": ""},
      {"role": "user", "content": ""}], None),
    ("assistant content None without tool calls",
     [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": None},
      {"role": "user", "content": "Still there?"}], None),
    ("assistant with reasoning_content",
     [{"role": "user", "content": "Is 91 prime?"},
      {"role": "assistant", "content": "No: 91 = 7 × 13.", "reasoning_content": "91 = 7 × 13."},
      {"role": "user", "content": "And 97?"}], None),
    ("<think> inside the assistant content",
     [{"role": "user", "content": "Is 91 prime?"},
      {"role": "assistant", "content": "<think>\n91 = 7 × 13.\n</think>\n\nNo: 91 = 7 × 13."},
      {"role": "user", "content": "And 97?"}], None),
    ("content as a list of blocks (text, image)",
     [{"role": "system", "content": [{"type": "text", "text": "You describe pictures."}]},
      {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]},
      {"role": "assistant", "content": [{"type": "text", "text": "A cat."}]},
      {"role": "user", "content": [{"type": "text", "text": "Thanks"}]}], None),
]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# MARK: fetching the templates

def fetch(cache, pip):
    """{package: [(template name, source)]}, {package: [skipped file]} from the cached or downloaded archives."""
    os.makedirs(cache, exist_ok=True)
    templates, skipped = {}, {}
    for name, req, fmt, pattern, folder in PACKAGES:
        found = glob.glob(os.path.join(cache, pattern))
        if not found:
            log(f"pip download {req} ...")
            subprocess.run([pip, "download", "--no-deps", *fmt, "--dest", cache, req], check=True,
                           stdout=subprocess.DEVNULL)
            found = glob.glob(os.path.join(cache, pattern))
            if not found:
                sys.exit(f"pip download {req} gave no {pattern} in {cache}")
        archive = found[0]
        files = {}
        if archive.endswith(".whl"):
            with zipfile.ZipFile(archive) as z:
                for n in z.namelist():
                    if n.startswith(folder) and not n.endswith("/"):
                        files[n[len(folder):]] = z.read(n)
        else:
            with tarfile.open(archive) as t:
                for m in t.getmembers():
                    if m.isfile() and m.name.startswith(folder):
                        files[m.name[len(folder):]] = t.extractfile(m).read()
        out = os.path.join(cache, name)
        shutil.rmtree(out, ignore_errors=True)
        found_templates, skip = [], []
        for rel, data in sorted(files.items()):
            path = os.path.join(out, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
            stem = rel[:-len(os.path.splitext(rel)[1])] if "." in rel else rel
            if rel.endswith(".jinja"):
                found_templates.append((stem, data.decode("utf-8")))
            elif rel.endswith(".json"):
                try:
                    ct = json.loads(data).get("chat_template")
                except (ValueError, AttributeError):
                    ct = None
                if isinstance(ct, str):
                    found_templates.append((stem, ct))
                elif isinstance(ct, list):
                    found_templates += [(f"{stem}:{t['name']}", t["template"]) for t in ct]
                else:
                    skip.append(rel)
            else:
                skip.append(rel)
        templates[name], skipped[name] = found_templates, skip
    return templates, skipped


# MARK: rendering

def make_dir(root, source, tokens):
    os.makedirs(root)
    shutil.copy(FIXTURE_TOKENIZER, os.path.join(root, "tokenizer.json"))
    config = {"backend": "tokenizers", "tokenizer_class": "TokenizersBackend", "model_max_length": 131072}
    config.update(tokens)
    with open(os.path.join(root, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=2)
    with open(os.path.join(root, "chat_template.jinja"), "w", encoding="utf-8") as f:
        f.write(source)


def render_transformers(tok, messages, tools, agp):
    """(text, None) or (None, error message)."""
    try:
        return tok.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=agp), None
    except Exception as e:  # noqa: BLE001 - any failure of the template counts as one
        return None, f"{type(e).__name__}: {e}"


def run_deeptrain(binary, directory, lines, agp, env):
    cmd = [binary, "tokenize", "--tokenizer", directory, "--chat", "--render"] + (["--add-generation-prompt"] if agp else [])
    try:
        p = subprocess.run(cmd, input="".join(l + "\n" for l in lines).encode("utf-8"), capture_output=True, timeout=120, env=env)
    except subprocess.TimeoutExpired:
        return None, "timed out after 120 s"
    if p.returncode != 0:
        return None, (p.stderr.decode("utf-8", "replace").strip() or f"exit code {p.returncode}")
    return [json.loads(l) for l in p.stdout.decode("utf-8").splitlines() if l.strip()], None


def render_deeptrain(binary, directory, convs, agp, env):
    """[(text, None) or (None, error)] for every conversation: one process for all, or one each if that fails."""
    lines = [json.dumps({"messages": m, **({"tools": t} if t is not None else {})}, ensure_ascii=False) for _, m, t in convs]
    texts, err = run_deeptrain(binary, directory, lines, agp, env)
    if texts is not None and len(texts) == len(lines):
        return [(t, None) for t in texts]
    results = []
    for line in lines:
        texts, err = run_deeptrain(binary, directory, [line], agp, env)
        if texts is not None and len(texts) != 1:
            texts, err = None, f"printed {len(texts)} lines for one conversation"
        results.append((texts[0], None) if texts is not None else (None, err))
    return results


def date_formats(source):
    return sorted(set(m.group(2) for m in re.finditer(r"strftime_now\(\s*(['\"])(.*?)\1\s*\)", source)))


def without_dates(text, formats):
    now = datetime.datetime.now(datetime.timezone.utc)
    for fmt in formats:
        for d in (-1, 0, 1):
            s = (now + datetime.timedelta(days=d)).strftime(fmt)
            if s:
                text = text.replace(s, f"<strftime_now({fmt})>")
    return text


def first_difference(a, b):
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    return i


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--deeptrain", default=os.path.join(ROOT, ".build", "release", "deeptrain"))
    ap.add_argument("--cache", default=os.path.join(ROOT, "tools", ".cache", "chat-templates"))
    ap.add_argument("--only", help="regex on package/template")
    ap.add_argument("--json", help="also write the summary here")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()

    os.environ["TZ"] = "UTC"
    time.tzset()
    env = dict(os.environ, TZ="UTC")
    binary = os.path.abspath(args.deeptrain)
    if not os.access(binary, os.X_OK):
        sys.exit(f"{binary}: no deeptrain binary (swift build -c release, or pass --deeptrain)")

    import transformers
    from transformers import AutoTokenizer
    transformers.logging.set_verbosity_error()

    pip = os.path.join(os.path.dirname(sys.executable), "pip")
    templates, skipped = fetch(args.cache, pip if os.path.exists(pip) else "pip")

    summary = {"transformers": transformers.__version__, "jinja2": __import__("jinja2").__version__,
               "deeptrain": binary, "conversations": [d for d, _, _ in CONVERSATIONS], "packages": {}}
    failed = False
    with tempfile.TemporaryDirectory(prefix="chat-template-parity-") as tmp:
        for pkg, items in templates.items():
            s = {"templates": 0, "renders": 0, "exact_matches": 0, "date_normalized_matches": 0, "both_failed": 0,
                 "mismatches": [], "deeptrain_only_failures": [], "transformers_only_failures": [],
                 "skipped_files": skipped[pkg]}
            if args.verbose:
                s["both_failed_messages"] = []
            for idx, (name, source) in enumerate(items):
                if args.only and not re.search(args.only, f"{pkg}/{name}"):
                    continue
                s["templates"] += 1
                tokens = special_tokens_for(name)
                d = os.path.join(tmp, f"{pkg}-{idx}")
                make_dir(d, source, tokens)
                tok = AutoTokenizer.from_pretrained(d)
                formats = date_formats(source)
                for agp in (False, True):
                    ours = render_deeptrain(binary, d, CONVERSATIONS, agp, env)
                    for ci, (_, messages, tools) in enumerate(CONVERSATIONS):
                        s["renders"] += 1
                        theirs, terr = render_transformers(tok, messages, tools, agp)
                        mine, derr = ours[ci]
                        where = {"template": name, "conversation": ci, "add_generation_prompt": agp}
                        if terr is not None and derr is not None:
                            s["both_failed"] += 1
                            if args.verbose:
                                s["both_failed_messages"].append({**where, "transformers": terr[:300], "deeptrain": derr[:300]})
                        elif derr is not None:
                            s["deeptrain_only_failures"].append({**where, "error": derr[:500]})
                        elif terr is not None:
                            s["transformers_only_failures"].append({**where, "error": terr[:500], "deeptrain": mine[:200]})
                        elif theirs == mine:
                            s["exact_matches"] += 1
                        elif formats and without_dates(theirs, formats) == without_dates(mine, formats):
                            s["date_normalized_matches"] += 1
                        else:
                            a, b = (without_dates(theirs, formats), without_dates(mine, formats)) if formats else (theirs, mine)
                            i = first_difference(a, b)
                            s["mismatches"].append({**where, "offset": i, "before": a[max(0, i - 40):i],
                                                    "transformers": a[i:i + 80], "deeptrain": b[i:i + 80]})
                            if args.verbose:
                                log(f"--- {pkg}/{name} conversation {ci} add_generation_prompt={agp}")
                                log("".join(difflib.unified_diff(a.splitlines(True), b.splitlines(True),
                                                                 "transformers", "deeptrain")))
                if args.verbose:
                    log(f"{pkg}/{name}: done")
            failed |= bool(s["mismatches"] or s["deeptrain_only_failures"] or s["transformers_only_failures"])
            summary["packages"][pkg] = s
    text = json.dumps(summary, ensure_ascii=False, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
