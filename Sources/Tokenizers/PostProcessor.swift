/// The last step of encoding, taken only when special tokens are asked for: adds the model's
/// BOS/EOS-style tokens around the ids (tokenizer.json `post_processor`).
indirect enum PostProcessor: Sendable {
    /// `single` of TemplateProcessing: each item is the sequence (nil) or a special token's ids.
    case template([[Int]?])
    case byteLevel
    case sequence([PostProcessor])

    func apply(_ ids: [Int]) -> [Int] {
        switch self {
        case .template(let items):
            var out: [Int] = []
            for item in items { out += item ?? ids }
            return out
        case .byteLevel: return ids
        case .sequence(let steps):
            var out = ids
            for s in steps { out = s.apply(out) }
            return out
        }
    }
}
