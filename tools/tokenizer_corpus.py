"""The mixed-language corpus DeepTrain's tokenizer fixtures are measured on (imported by
tools/golden_tokenizers.py). Fragments are written for this project; lines are assembled from
them with a fixed seed so the file is reproducible."""
import random

FRAGMENTS = [
    "The tokenizer reads the text once and hands the model integers.",
    "Mixture-of-Experts layers route every token to a few experts out of many.",
    "We'll test it; they're sure it's fine, but I'd check what you've done.",
    "HELLO World! Don't SHOUT, it's rude... isn't it?",
    "Prices: $19.99, €5,00, £3 — and 100% of 2,718 equals 2718.",
    "1234567890 12 345 6789 3.14159 2026-12-01 13:45:07 +01:00",
    "深度求索发布了新的混合专家模型，激活参数只有总参数的一小部分。",
    "训练数据包括中文、英文和代码；分词器必须在所有语言上保持一致。",
    "東京と大阪の間を新幹線で移動します。カタカナのテキストも含みます。",
    "ひらがなとカタカナ、そして漢字が混ざった文章です。",
    "서울특별시는 대한민국의 수도입니다. 한국어 문장도 들어 있습니다.",
    "Москва — столица России. Привет, мир! Ёлка и ёж.",
    "Αθήνα είναι η πρωτεύουσα της Ελλάδας. Καλημέρα!",
    "مرحبا بالعالم، هذه جملة باللغة العربية. ١٢٣٤٥",
    "नमस्ते दुनिया, यह हिंदी का एक वाक्य है। १२३",
    "Größe, Straße, Übermaß — naïve café façade, coöperate, élève.",
    "Combining marks: e\u0301 a\u0300 o\u0308 n\u0303 and precomposed é à ö ñ.",
    "Ligatures ﬁ ﬂ, fullwidth ＡＢＣ１２３, circled ① ② ③, superscript x² y³.",
    "Emoji 🚀🔥👍🏽 family 👨\u200d👩\u200d👧\u200d👦 flags 🇫🇷🇯🇵 and ❤️ hearts.",
    "Tabs\tseparate\tcolumns\tand  double  spaces   appear   too.",
    "Windows line ends\r\nlook like this\r\nand old Macs used\rcarriage returns.",
    "Non\u00a0breaking\u00a0spaces and thin\u2009spaces and ideographic\u3000spaces.",
    "def encode(self, text: str) -> list[int]:\n    return [self.vocab[t] for t in text.split()]",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }  // dot product",
    "SELECT name, COUNT(*) FROM users WHERE age >= 18 GROUP BY name;",
    "{\"role\": \"user\", \"content\": \"What is 2+2?\"} [1, 2, 3] <tag attr='x'/>",
    "https://example.com/path?query=value&x=1#anchor and user@example.org",
    "    indented code\n        more indent\n\n\nthree newlines above",
    "Zero\u200bwidth\u200bspace, soft\u00adhyphen, and the BOM \ufeff mark.",
    "Mathematical ∑ ∫ √ ∞ ≠ ≤ ≥ ± × ÷ and arrows → ← ↑ ↓ ⇒.",
    "Quotes “double” ‘single’ «guillemets» „German“ and 「Japanese」『brackets』.",
    "Ellipsis… dash – em—dash, bullet • and section § paragraph ¶.",
    "THE QUICK BROWN FOX jumps over the lazy dog 42 times; 42x faster.",
    "Vietnamese: Tiếng Việt có nhiều dấu thanh như ắ ằ ẳ ẵ ặ.",
    "Thai: ภาษาไทยไม่มีช่องว่างระหว่างคำ และมีวรรณยุกต์",
    "Hebrew: שלום עולם, זה משפט בעברית.",
    "Mixed中文English混合text和123数字。",
    "a\u0308\u0301 stacked marks, Z\u0351\u0352\u0353algo text, and ǅ titlecase.",
    "Roman numerals Ⅻ Ⅷ, fractions ½ ¾, and Arabic-Indic ٣ digits.",
    "   leading spaces and trailing spaces   ",
]


def corpus(min_bytes=24000, seed=20261201):
    rng = random.Random(seed)
    lines = list(FRAGMENTS)
    while sum(len(l.encode()) + 1 for l in lines) < min_bytes:
        k = rng.randint(1, 3)
        parts = rng.sample(FRAGMENTS, k)
        sep = rng.choice([" ", "  ", "\t", " — ", "", "\u00a0"])
        lines.append(sep.join(parts))
    return lines
