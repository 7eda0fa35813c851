import Foundation

extension Tokenizer {
    /// DeepSeek-style pre-tokenizer splits: newlines, letter runs with an optional leading
    /// space, punctuation runs, trailing spaces, CJK runs, groups of up to 3 digits.
    package static let defaultPatterns = [
        #"[\r\n]"#, #"\s?\p{L}+"#, #"\s?[!-/:-~！-／：-～‘-‟　-。]+"#, #"\s+$"#, #"[一-龥ࠀ-一가-퟿]+"#, #"\p{N}{1,3}"#,
    ]

    /// A byte-level BPE tokenizer.json in the DeepSeek layout: a Sequence of regex Splits, then
    /// ByteLevel without its own regex; special tokens as added tokens.
    static func byteLevelJSON(vocab: [String: Int], merges: [(String, String)], special: [AddedToken], patterns: [String]) -> [String: Any] {
        let pre: [[String: Any]] = patterns.map { ["type": "Split", "pattern": ["Regex": $0], "behavior": "Isolated", "invert": false] }
            + [["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false]]
        return [
            "version": "1.0",
            "truncation": NSNull(), "padding": NSNull(), "normalizer": NSNull(),
            "post_processor": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true],
            "added_tokens": special.sorted { $0.id < $1.id }.map {
                ["id": $0.id, "content": $0.content, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": $0.special]
            },
            "pre_tokenizer": ["type": "Sequence", "pretokenizers": pre],
            "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
            "model": ["type": "BPE", "dropout": NSNull(), "unk_token": NSNull(), "continuing_subword_prefix": NSNull(),
                      "end_of_word_suffix": NSNull(), "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": vocab, "merges": merges.map { [$0.0, $0.1] }],
        ]
    }

    static func make(_ json: [String: Any], source: String) throws -> Tokenizer {
        let data = try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
        return try Tokenizer(json: data, source: source)
    }

    /// Learns byte-level BPE merges from `texts` until the vocabulary (special tokens, the 256
    /// byte symbols, merges) reaches `vocabSize`. Pair counts are weighted by word frequency;
    /// ties go to the lexicographically smallest pair, so training is deterministic.
    package static func train(texts: [String], vocabSize: Int, specialTokens: [String] = [],
                             patterns: [String] = defaultPatterns) throws -> Tokenizer {
        let added = specialTokens.enumerated().map { AddedToken(content: $1, id: $0, special: true) }
        var vocab: [String: Int] = [:]
        for a in added { vocab[a.content] = a.id }
        for ch in ByteLevel.byteToScalar.map({ [$0].string }).sorted() { vocab[ch] = vocab.count }
        let probe = try make(byteLevelJSON(vocab: vocab, merges: [], special: added, patterns: patterns), source: "train")
        var counts: [[UInt32]: Int] = [:]
        for t in texts { for piece in try probe.modelPieces(t) { counts[piece, default: 0] += 1 } }
        var words: [[String]] = [], freq: [Int] = []
        for (w, c) in counts.map({ ($0.key.string, $0.value) }).sorted(by: { $0.0 < $1.0 }) {
            words.append(w.unicodeScalars.map { String(Character($0)) })
            freq.append(c)
        }
        var merges: [(String, String)] = []
        while vocab.count < vocabSize {
            var pairs: [String: (Int, String, String)] = [:]
            for (wi, w) in words.enumerated() where w.count > 1 {
                for i in 0..<(w.count - 1) {
                    let k = "\(w[i]) \(w[i + 1])"
                    pairs[k, default: (0, w[i], w[i + 1])].0 += freq[wi]
                }
            }
            guard let best = pairs.max(by: { a, b in a.value.0 != b.value.0 ? a.value.0 < b.value.0 : a.key > b.key }) else { break }
            let (l, r) = (best.value.1, best.value.2)
            merges.append((l, r))
            if vocab[l + r] == nil { vocab[l + r] = vocab.count }
            for wi in words.indices where words[wi].count > 1 {
                let w = words[wi]
                var out: [String] = []
                var i = 0
                while i < w.count {
                    if i < w.count - 1 && w[i] == l && w[i + 1] == r { out.append(l + r); i += 2 } else { out.append(w[i]); i += 1 }
                }
                words[wi] = out
            }
        }
        return try make(byteLevelJSON(vocab: vocab, merges: merges, special: added, patterns: patterns), source: "train")
    }
}
