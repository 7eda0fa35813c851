#!/usr/bin/env python3
"""Tokenizers in the published styles, and the ids Hugging Face `tokenizers` gives for them,
for DeepTrain's tokenizer parity tests (Tests/Fixtures/tokenizers/).

Run by hand, not in CI:
    python3 -m venv tools/.venv && tools/.venv/bin/pip install tokenizers==0.23.3
    tools/.venv/bin/python tools/golden_tokenizers.py Tests/Fixtures/tokenizers

Styles (each trained here on the corpus of tools/tokenizer_corpus.py):
  gpt2        ByteLevel pre-tokenizer with its own regex, ByteLevel decoder/post-processor
  llama3      one Split (Llama 3's regex, digit groups, case-insensitive contractions) +
              ByteLevel(use_regex=false), ignore_merges, TemplateProcessing with a BOS
  deepseek    DeepSeek-V3's layout: an empty Sequence normalizer, three Splits + ByteLevel,
              BOS template, DeepSeek's special tokens, merges written as "a b" strings
  spm-bpe     SentencePiece BPE (Llama 2 style): Prepend + Replace normalizers, no
              pre-tokenizer, byte_fallback and fuse_unk, Replace/ByteFallback/Fuse/Strip decoder
  metaspace   Metaspace pre-tokenizer (prepend_scheme first) and decoder, byte fallback
metaspace_first.json (tools/golden_metaspace_first.py): Metaspace prepend_scheme "first" after
normalizers that remove the text's first characters, and after added tokens.
components.json: single components (each normalizer, pre-tokenizer behaviour, added-token
flag, post-processor, decoder) on top of a small byte-level model, with tricky texts.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from tokenizer_corpus import corpus  # noqa: E402
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402

LLAMA3 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
DEEPSEEK = [
    r"\p{N}{1,3}",
    "[一-龥぀-ゟ゠-ヿ]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
]

TRICKY = [
    "",
    " ",
    "Hello  world!  ",
    "  leading, trailing  ",
    "CRLF\r\nline\r\n\r\nend\n",
    "nbsp\u00a0here\u00a0\u00a0twice and\u3000ideographic",
    "e\u0301 vs é, A\u030a vs Å, ﬁ ligature, ＡＢＣ, x²",
    "深度求索 DeepSeek 東京タワー 서울 🚀🔥👍🏽",
    "12345 3.14 ١٢٣ ½ ①",
    "don't DON'T it's WE'LL",
    "a,b;c...d!?e--f",
    "tabs\tand\t\tmore",
    "<s>special</s> in text <|endoftext|> and <mask> here",
    "word<mask> <mask>word  <mask>  x",
    "the cat sat on the mat",
    "Über Größe ÆØÅ İstanbul ΣΑΣ",
]


def train(tok, vocab_size, specials, alphabet=None, limit=None, texts=None):
    kw = dict(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    if alphabet is not None:
        kw["initial_alphabet"] = alphabet
    if limit is not None:
        kw["limit_alphabet"] = limit
    tok.train_from_iterator(texts or corpus(), trainers.BpeTrainer(**kw))
    return tok


def gpt2():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return train(tok, 1200, ["<|endoftext|>"], alphabet=pre_tokenizers.ByteLevel.alphabet())


def llama3():
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False, trim_offsets=True)])
    tok.decoder = decoders.ByteLevel()
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    train(tok, 1200, specials, alphabet=pre_tokenizers.ByteLevel.alphabet())
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                      special_tokens=[("<|begin_of_text|>", bos)])])
    return tok


def deepseek():
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence([])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(p), behavior="isolated", invert=False) for p in DEEPSEEK]
        + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False, trim_offsets=True)])
    tok.decoder = decoders.ByteLevel()
    specials = ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"]
    train(tok, 1400, specials, alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.add_tokens([AddedToken("<｜User｜>", special=False, normalized=False),
                    AddedToken("<｜Assistant｜>", special=False, normalized=False),
                    AddedToken("<think>", special=False, normalized=False),
                    AddedToken("</think>", special=False, normalized=False)])
    tok.add_special_tokens([AddedToken("<｜tool▁calls▁begin｜>", special=True, normalized=False)])
    bos = tok.token_to_id("<｜begin▁of▁sentence｜>")
    tok.post_processor = processors.TemplateProcessing(single="<｜begin▁of▁sentence｜> $A", pair="<｜begin▁of▁sentence｜> $A $B",
                                                       special_tokens=[("<｜begin▁of▁sentence｜>", bos)])
    return tok


def byte_fallback_vocab(tok):
    """SentencePiece BPE vocabularies start with <unk>, <s>, </s> and the 256 <0xXX> byte tokens."""
    j = json.loads(tok.to_str())
    old = j["model"]["vocab"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for t, _ in sorted(old.items(), key=lambda kv: kv[1]):
        if t not in vocab:
            vocab[t] = len(vocab)
    j["model"]["vocab"] = vocab
    for a in j["added_tokens"]:
        a["id"] = vocab[a["content"]]
    return Tokenizer.from_str(json.dumps(j))


def spm_bpe():
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    train(tok, 900, ["<unk>", "<s>", "</s>"], limit=120)
    tok = byte_fallback_vocab(tok)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", 1)])
    return tok


def metaspace():
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace(replacement="▁", prepend_scheme="first")])
    train(tok, 900, ["<unk>", "<s>", "</s>"], limit=120)
    tok = byte_fallback_vocab(tok)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return tok


def write_style(out, name, tok, lines, string_merges=False):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    j = json.loads(tok.to_str())
    if string_merges:
        # The older file form: merges as "a b" strings. tokenizers reads both; check it still agrees.
        j["model"]["merges"] = [" ".join(m) for m in j["model"]["merges"]]
        tok = Tokenizer.from_str(json.dumps(j))
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False, indent=1)
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    texts = lines + TRICKY
    ids = [tok.encode(t, add_special_tokens=False).ids for t in texts]
    corpus_ids = tok.encode("\n".join(lines), add_special_tokens=False).ids
    with_special = [tok.encode(t, add_special_tokens=True).ids for t in texts[:10]]
    decoded = [tok.decode(i, skip_special_tokens=False) for i in ids]
    decoded_skip = [tok.decode(i, skip_special_tokens=True) for i in with_special]
    with open(os.path.join(d, "expected.json"), "w", encoding="utf-8") as f:
        json.dump({"texts": texts, "ids": ids, "corpus_ids": corpus_ids, "with_special": with_special, "decoded": decoded,
                   "decoded_skip_special": decoded_skip}, f, ensure_ascii=False)
    print(name, sum(map(len, ids)), "ids")


def components(out):
    base = gpt2()
    base.add_special_tokens([AddedToken("<s>", special=True, normalized=False), AddedToken("</s>", special=True, normalized=False)])
    bj = json.loads(base.to_str())
    bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}

    def pat(kind, v):
        return {kind: v}

    cases = []

    def case(name, normalizer=None, pre=None, added=None, post=None, decoder=None, model=None):
        j = json.loads(json.dumps(bj))
        j["normalizer"] = normalizer
        j["pre_tokenizer"] = pre if pre is not None else bl
        if added is not None:
            # tokenizers numbers added tokens that the vocabulary lacks after the largest id in use.
            nxt = max(list(j["model"]["vocab"].values()) + [a["id"] for a in j["added_tokens"]]) + 1
            for a in added:
                # A token the vocabulary has keeps its vocabulary id.
                if a["content"] in j["model"]["vocab"]:
                    a["id"] = j["model"]["vocab"][a["content"]]
                else:
                    a.setdefault("id", nxt)
                    nxt += 1
                for k, v in dict(single_word=False, lstrip=False, rstrip=False, normalized=False, special=False).items():
                    a.setdefault(k, v)
            j["added_tokens"] = j["added_tokens"] + added
        j["post_processor"] = post
        j["decoder"] = decoder if decoder is not None else {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
        if model:
            j["model"].update(model)
        tok = Tokenizer.from_str(json.dumps(j))
        ids = [tok.encode(t, add_special_tokens=False).ids for t in TRICKY]
        special = [tok.encode(t, add_special_tokens=True).ids for t in TRICKY]
        dec = [tok.decode(i, skip_special_tokens=False) for i in ids]
        dec_skip = [tok.decode(i, skip_special_tokens=True) for i in special]
        cases.append({"name": name, "normalizer": j["normalizer"], "pre_tokenizer": j["pre_tokenizer"],
                      "added_tokens": j["added_tokens"], "post_processor": j["post_processor"], "decoder": j["decoder"],
                      "model_options": model or {}, "ids": ids, "with_special": special, "decoded": dec,
                      "decoded_skip_special": dec_skip})

    seq = lambda *ps: {"type": "Sequence", "pretokenizers": list(ps) + [bl]}
    for n in ["NFC", "NFD", "NFKC", "NFKD", "Lowercase", "StripAccents"]:
        case("normalizer " + n, normalizer={"type": n})
    case("normalizer NFD+StripAccents+Lowercase", normalizer={"type": "Sequence", "normalizers": [{"type": "NFD"}, {"type": "StripAccents"}, {"type": "Lowercase"}]})
    case("normalizer Strip both", normalizer={"type": "Strip", "strip_left": True, "strip_right": True})
    case("normalizer Strip left", normalizer={"type": "Strip", "strip_left": True, "strip_right": False})
    case("normalizer Replace string", normalizer={"type": "Replace", "pattern": pat("String", "  "), "content": " _ "})
    case("normalizer Replace regex", normalizer={"type": "Replace", "pattern": pat("Regex", r"\s+"), "content": " "})
    case("normalizer Prepend", normalizer={"type": "Prepend", "prepend": "▁"})
    for behavior in ["Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"]:
        for invert in [False, True]:
            case(f"Split string {behavior} invert={invert}", pre=seq({"type": "Split", "pattern": pat("String", " "), "behavior": behavior, "invert": invert}))
            case(f"Split regex {behavior} invert={invert}", pre=seq({"type": "Split", "pattern": pat("Regex", r"\p{P}+|\s"), "behavior": behavior, "invert": invert}))
        case(f"Punctuation {behavior}", pre=seq({"type": "Punctuation", "behavior": behavior}))
    case("Split regex lookahead and anchors", pre=seq({"type": "Split", "pattern": pat("Regex", r"\s+(?!\S)|^\s|\s$|(?<=\p{Ll})(?=\p{Lu})"), "behavior": "Isolated", "invert": False}))
    case("Split regex lazy and counted", pre=seq({"type": "Split", "pattern": pat("Regex", r"\p{L}{2,3}?|\d{2}|[^\p{L}\d\s]{1,}"), "behavior": "Isolated", "invert": False}))
    case("Digits individual", pre=seq({"type": "Digits", "individual_digits": True}))
    case("Digits contiguous", pre=seq({"type": "Digits", "individual_digits": False}))
    case("Whitespace", pre=seq({"type": "Whitespace"}))
    case("WhitespaceSplit", pre=seq({"type": "WhitespaceSplit"}))
    case("BertPreTokenizer", pre=seq({"type": "BertPreTokenizer"}))
    for scheme in ["always", "first", "never"]:
        for split in [True, False]:
            case(f"Metaspace {scheme} split={split}", pre=seq({"type": "Metaspace", "replacement": "▁", "prepend_scheme": scheme, "split": split}),
                 decoder={"type": "Sequence", "decoders": [{"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
                                                          {"type": "Metaspace", "replacement": "▁", "prepend_scheme": scheme, "split": split}]})
    case("ByteLevel with prefix space and regex", pre={"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True})
    case("ByteLevel without regex", pre={"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False})
    case("added lstrip rstrip", added=[{"content": "<mask>", "lstrip": True, "rstrip": True, "special": True}])
    case("added lstrip", added=[{"content": "<mask>", "lstrip": True, "special": True}])
    case("added single_word", added=[{"content": "word", "single_word": True}, {"content": "cat", "single_word": True, "normalized": True}])
    case("added normalized with Lowercase", normalizer={"type": "Lowercase"},
         added=[{"content": "HELLO", "normalized": True}, {"content": "<mask>", "normalized": False, "special": True}, {"content": "ÜBER", "normalized": True}])
    case("added overlapping longest first", added=[{"content": "the"}, {"content": "the cat"}, {"content": "at"}])
    case("post TemplateProcessing", post={"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
                                          "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                                          "special_tokens": {"<s>": {"id": "<s>", "ids": [bj["model"]["vocab"].get("<s>", base.token_to_id("<s>"))], "tokens": ["<s>"]},
                                                             "</s>": {"id": "</s>", "ids": [base.token_to_id("</s>")], "tokens": ["</s>"]}}})
    case("post Sequence ByteLevel+Roberta", post={"type": "Sequence", "processors": [
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        {"type": "RobertaProcessing", "sep": ["</s>", base.token_to_id("</s>")], "cls": ["<s>", base.token_to_id("<s>")], "trim_offsets": False, "add_prefix_space": False}]})
    case("decoder Replace+Strip+Fuse", decoder={"type": "Sequence", "decoders": [
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        {"type": "Replace", "pattern": pat("String", "a"), "content": "A"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 2, "stop": 0}]})
    # Strip's stop on an empty token panics inside tokenizers 0.23, so this one runs on raw tokens.
    case("decoder Replace+Strip on tokens", decoder={"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": pat("String", "Ġ"), "content": " "}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]})
    case("decoder Replace regex", decoder={"type": "Sequence", "decoders": [
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        {"type": "Replace", "pattern": pat("Regex", r"\s+"), "content": "_"}]})
    case("model ignore_merges", model={"ignore_merges": True})
    with open(os.path.join(out, "components.json"), "w", encoding="utf-8") as f:
        json.dump({"texts": TRICKY, "model": bj["model"], "cases": cases}, f, ensure_ascii=False)
    print(len(cases), "component cases")


REGEX_CASES = [
    r"\s+$", r"^\s+", r"$", r"\s+(?!\S)|\s+", r"\p{L}+|\p{N}+|[^\s\p{L}\p{N}]+", r"(?i:'s|'t|'re)|\p{Lu}\p{Ll}*",
    r"\p{N}{1,3}", r"[^\r\n\p{L}\p{N}]?\p{L}+", r"\s*[\r\n]+", r" ?[^\s\p{L}\p{N}]+[\r\n]*", r"\w+|[^\w\s]+",
    r"\d+?\d", r"(?<=a)b|(?<!c)d", r"(?>a+)b|a+c", r"a++", r"\p{M}+|\p{P}|\p{S}|\p{Zs}", r"[\p{L}\p{M}]+",
    r".", r"\b\w", r"\S+", r"\h+", r"[[:alpha:]]+|[[:digit:]]+", r"x{0}|y", r"\x{1F680}|\u00e9",
    r"[^a-z\s]+", r"(?:ab|a)(?:bc|c)?", r"\A\p{L}|\p{L}\z",
]
REGEX_TEXTS = [
    "hello world  \r\nnext line\n  end  ",
    "it's THE Cat's 're 123456 ١٢٣ x²",
    "深度求索 東京タワー 서울 🚀🔥👍🏽 e\u0301 Å",
    "nbsp\u00a0x\u3000y\u2009z\ttab",
    "ab aab cd bd ad aaac abc 1122 deadbeef",
    "\r\n\r\n\n \n",
    "",
]


def regexes(out):
    cases = []
    for p in REGEX_CASES:
        split = pre_tokenizers.Split(Regex(p), behavior="isolated", invert=False)
        removed = pre_tokenizers.Split(Regex(p), behavior="removed", invert=True)
        for t in REGEX_TEXTS:
            # Isolated keeps gaps and matches; Removed+invert keeps exactly the matches.
            cases.append({"pattern": p, "text": t, "pieces": [s for s, _ in split.pre_tokenize_str(t)],
                          "matches": [s for s, _ in removed.pre_tokenize_str(t)]})
    with open(os.path.join(out, "regex.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=0)
    print(len(cases), "regex cases")


def main(out):
    os.makedirs(out, exist_ok=True)
    lines = corpus()
    with open(os.path.join(out, "corpus.txt"), "w", encoding="utf-8", newline="") as f:
        f.write("\n".join(lines))
    print("corpus", len("\n".join(lines).encode()), "bytes,", len(lines), "lines")
    write_style(out, "gpt2", gpt2(), lines)
    write_style(out, "llama3", llama3(), lines)
    write_style(out, "deepseek", deepseek(), lines, string_merges=True)
    write_style(out, "spm-bpe", spm_bpe(), lines)
    write_style(out, "metaspace", metaspace(), lines)
    components(out)
    regexes(out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "Tests/Fixtures/tokenizers")
