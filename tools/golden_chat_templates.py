#!/usr/bin/env python3
"""Model directories with published chat templates, and what transformers' apply_chat_template
renders and tokenizes for several conversations, for DeepTrain's template tests
(Tests/Fixtures/chat_templates/).

Run by hand, not in CI:
    python3 -m venv tools/.venv && tools/.venv/bin/pip install tokenizers==0.23.3 transformers==5.23.0 jinja2
    tools/.venv/bin/python tools/golden_chat_templates.py Tests/Fixtures/chat_templates

The templates are in tools/chat_templates/, transcribed from the models' published
tokenizer_config.json files (DeepSeek-V2-Chat, DeepSeek-V3, DeepSeek-R1, ChatML, Llama 3,
Llama 3.1, Mistral-7B-Instruct, Qwen2.5 with its default system prompt) plus one that leans on
trim_blocks/lstrip_blocks. Each directory stores its template the way one generation of
transformers does: chat_template.jinja (transformers 5), a string in tokenizer_config.json, or
a list of named templates there.
"""
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(__file__))
from tokenizer_corpus import corpus  # noqa: E402
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402
from transformers import AutoTokenizer, PreTrainedTokenizerFast  # noqa: E402

HERE = os.path.join(os.path.dirname(__file__), "chat_templates")

WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city, now.",
                                                   "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "e.g. 東京"},
                                                                                                   "unit": {"type": "string", "enum": ["c", "f"]}},
                                                                  "required": ["city"]}}}

BASIC = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"},
     {"role": "user", "content": "  And 3+3?  "}, {"role": "assistant", "content": "6, of course.\n"}],
    [{"role": "user", "content": "Écris un haïku sur 東京.\nDeux lignes suffisent."},
     {"role": "assistant", "content": "Néons sous la pluie —\n東京 ne dort pas 🚀"}],
]
WITH_SYSTEM = [
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a prime."},
     {"role": "assistant", "content": "7"}, {"role": "user", "content": "Another?"}],
    [{"role": "system", "content": "  Answer in German.  "}, {"role": "user", "content": "Good morning"}],
]
TOOLS_STRING_ARGS = [
    [{"role": "user", "content": "Weather in Paris and Tokyo?"},
     {"role": "assistant", "content": None, "tool_calls": [
         {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
         {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"東京\"}"}}]},
     {"role": "tool", "content": "18°C, cloudy"}, {"role": "tool", "content": "22°C, clear"},
     {"role": "assistant", "content": "Paris 18°C, Tokyo 22°C."}],
]
TOOLS_DICT_ARGS = [
    [{"role": "user", "content": "Weather in Paris?"},
     {"role": "assistant", "content": "", "tool_calls": [
         {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}}]},
     {"role": "tool", "content": "{\"temp\": 18}"},
     {"role": "assistant", "content": "It is 18°C in Paris."}],
]
THINKING = [
    [{"role": "user", "content": "Is 91 prime?"},
     {"role": "assistant", "content": "<think>\n91 = 7 × 13.\n</think>\n\nNo: 91 = 7 × 13."},
     {"role": "user", "content": "And 97?"}],
]
NOT_ALTERNATING = [
    [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
    [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}],
]
ASSISTANT_FIRST = [[{"role": "assistant", "content": "I start."}]]

# name: (template file, storage, special tokens, bos, eos, conversation sets, tools for the tool sets)
TEMPLATES = {
    "deepseek-v2": ("deepseek-v2.jinja", "config-string", ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"],
                    "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", BASIC + WITH_SYSTEM, None),
    "deepseek-v3": ("deepseek-v3.jinja", "jinja-file", ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>",
                    "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>",
                    "<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>", "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>"],
                    "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", BASIC + WITH_SYSTEM + TOOLS_STRING_ARGS, None),
    "deepseek-r1": ("deepseek-r1.jinja", "jinja-file", ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<think>", "</think>"],
                    "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", BASIC + WITH_SYSTEM + THINKING, None),
    "chatml": ("chatml.jinja", "config-list", ["<|im_start|>", "<|im_end|>"], None, "<|im_end|>", BASIC + WITH_SYSTEM, None),
    "llama3": ("llama3.jinja", "config-string", ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
               "<|begin_of_text|>", "<|eot_id|>", BASIC + WITH_SYSTEM, None),
    "llama3.1": ("llama3.1.jinja", "jinja-file", ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                 "<|eom_id|>", "<|python_tag|>"], "<|begin_of_text|>", "<|eot_id|>", BASIC + WITH_SYSTEM + TOOLS_DICT_ARGS, [WEATHER_TOOL]),
    "mistral": ("mistral.jinja", "config-string", ["<unk>", "<s>", "</s>"], "<s>", "</s>", BASIC + NOT_ALTERNATING, None),
    "qwen2.5": ("qwen2.5.jinja", "jinja-file", ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], None, "<|im_end|>",
                BASIC + WITH_SYSTEM + TOOLS_DICT_ARGS, [WEATHER_TOOL]),
    "whitespace": ("whitespace.jinja", "jinja-file", ["<s>", "</s>"], "<s>", "</s>", BASIC + WITH_SYSTEM + ASSISTANT_FIRST, None),
}


def base_tokenizer(specials):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus(), trainers.BpeTrainer(vocab_size=420, special_tokens=specials, show_progress=False,
                                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tok


def make_dir(out, name, spec):
    file, storage, specials, bos, eos, _, _ = spec
    d = os.path.join(out, name)
    shutil.rmtree(d, ignore_errors=True)
    template = open(os.path.join(HERE, file), encoding="utf-8").read()
    if storage != "jinja-file" and template.endswith("\n"):
        template = template[:-1]  # published config strings carry no trailing newline
    fast = PreTrainedTokenizerFast(tokenizer_object=base_tokenizer(specials), bos_token=bos, eos_token=eos)
    fast.chat_template = template
    fast.save_pretrained(d)
    cfg_path = os.path.join(d, "tokenizer_config.json")
    cfg = json.load(open(cfg_path, encoding="utf-8"))
    if storage != "jinja-file":
        os.remove(os.path.join(d, "chat_template.jinja"))
        if storage == "config-string":
            cfg["chat_template"] = template
        else:
            cfg["chat_template"] = [{"name": "default", "template": template},
                                    {"name": "rag", "template": "{{ raise_exception('not this one') }}"}]
        with open(cfg_path, "w", encoding="utf-8") as f:
            json.dump(cfg, f, ensure_ascii=False, indent=2)
    return AutoTokenizer.from_pretrained(d)


def ids_of(tok, messages, tools, agp):
    r = tok.apply_chat_template(messages, tools=tools, tokenize=True, add_generation_prompt=agp)
    if hasattr(r, "keys"):
        r = r["input_ids"]
    return list(r)


def main(out):
    os.makedirs(out, exist_ok=True)
    total = 0
    for name, spec in TEMPLATES.items():
        tok = make_dir(out, name, spec)
        cases = []
        for conv in spec[5]:
            uses_tools = any("tool_calls" in m for m in conv)
            tools = spec[6] if uses_tools else None
            for agp in (False, True):
                case = {"messages": conv, "add_generation_prompt": agp}
                if tools is not None:
                    case["tools"] = tools
                try:
                    case["rendered"] = tok.apply_chat_template(conv, tools=tools, tokenize=False, add_generation_prompt=agp)
                    case["ids"] = ids_of(tok, conv, tools, agp)
                except Exception as e:  # the template's raise_exception
                    case["error"] = str(e)
                cases.append(case)
        with open(os.path.join(out, name, "cases.json"), "w", encoding="utf-8") as f:
            json.dump(cases, f, ensure_ascii=False, indent=1)
        total += len(cases)
        print(name, len(cases), "cases,", sum("error" in c for c in cases), "raise")
    print(total, "cases")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "Tests/Fixtures/chat_templates")
