import Foundation

extension BPETokenizer {
    /// DeepSeek-style pre-tokenizer splits: newlines, letter runs with an optional leading
    /// space, punctuation runs, trailing spaces, CJK runs, groups of up to 3 digits.
    public static let defaultPatterns = [
        #"[\r\n]"#, #"\s?\p{L}+"#, #"\s?[!-/:-~！-／：-～‘-‟　-。]+"#, #"\s+$"#, #"[一-龥ࠀ-一가-퟿]+"#, #"\p{N}{1,3}"#,
    ]

    /// Learns byte-level BPE merges from `texts` until the vocabulary (special tokens, the 256
    /// byte symbols, merges) reaches `vocabSize`. Pair counts are weighted by word frequency;
    /// ties go to the lexicographically smallest pair, so training is deterministic.
    public static func train(texts: [String], vocabSize: Int, specialTokens: [String] = [],
                             patterns: [String] = defaultPatterns) throws -> BPETokenizer {
        let added = specialTokens.enumerated().map { AddedToken(content: $1, id: $0, special: true) }
        var vocab: [String: Int] = [:]
        for a in added { vocab[a.content] = a.id }
        for ch in byteToChar.map({ String($0) }).sorted() { vocab[ch] = vocab.count }
        let probe = try BPETokenizer(vocab: vocab, merges: [], added: added, splits: patterns.map { ($0, .isolated) },
                                     addPrefixSpace: false, source: "train")
        var counts: [String: Int] = [:]
        for t in texts {
            for (segment, special) in probe.splitAdded(t) where special == nil {
                for piece in probe.preTokenize(segment) { counts[piece, default: 0] += 1 }
            }
        }
        var words: [[String]] = [], freq: [Int] = []
        for (w, c) in counts.sorted(by: { $0.key < $1.key }) {
            words.append(w.utf8.map { String(byteToChar[Int($0)]) })
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
                var w = words[wi], out: [String] = []
                var i = 0
                while i < w.count {
                    if i < w.count - 1 && w[i] == l && w[i + 1] == r { out.append(l + r); i += 2 } else { out.append(w[i]); i += 1 }
                }
                w = out
                words[wi] = w
            }
        }
        return try BPETokenizer(vocab: vocab, merges: merges, added: added, splits: patterns.map { ($0, .isolated) },
                                addPrefixSpace: false, source: "train")
    }
}
