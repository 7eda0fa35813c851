import Foundation
import FileSafety

/// A tokenizer error: names the file (or "text") and what was expected.
package struct TokenizerError: Error, CustomStringConvertible {
    package let source: String
    package let message: String
    package init(source: String, message: String) {
        self.source = source
        self.message = message
    }
    package var description: String { "\(source): \(message)" }
}

/// A Hugging Face `tokenizers` pipeline for BPE models, read from tokenizer.json:
/// added tokens → normalizer → pre-tokenizer → BPE model → post-processor, and for decoding
/// ids → tokens → decoder. Each step is its own type (Normalizer, PreTokenizer, BPEModel,
/// PostProcessor, Decoder, AddedTokenMatcher) with the meaning tokenizers gives it.
package final class Tokenizer: Sendable {
    let model: BPEModel
    let normalizer: Normalizer?
    let preTokenizer: PreTokenizer?
    let postProcessor: PostProcessor?
    let decoder: Decoder?
    package let added: [AddedToken]
    let rawMatcher: AddedTokenMatcher
    let normalizedMatcher: AddedTokenMatcher
    let addedById: [Int: AddedToken]
    let addedByContent: [String: AddedToken]
    /// What decoding shows for an added token: its content, normalized when the token is
    /// matched normalized (so a byte-level decoder can undo the normalizer's mapping).
    let addedDecoding: [Int: String]
    /// The tokenizer.json this was read from, written back unchanged by `save`.
    let json: Data
    /// Where it was read from, for errors found while encoding.
    let source: String

    /// - Throws: a `TokenizerError` when the normalizer's regex runs out of budget on an added token.
    init(model: BPEModel, normalizer: Normalizer?, preTokenizer: PreTokenizer?, postProcessor: PostProcessor?,
         decoder: Decoder?, added: [AddedToken], json: Data, source: String) throws(TokenizerError) {
        self.model = model
        self.normalizer = normalizer
        self.preTokenizer = preTokenizer
        self.postProcessor = postProcessor
        self.decoder = decoder
        self.added = added
        self.source = source
        do {
            rawMatcher = try AddedTokenMatcher(added.filter { !$0.normalized }, normalizer: nil)
            normalizedMatcher = try AddedTokenMatcher(added.filter(\.normalized), normalizer: normalizer)
            var shown: [Int: String] = [:]
            for a in added {
                shown[a.id] = a.normalized && normalizer != nil ? try normalizer!.apply([UInt32](scalarsOf: a.content)).string : a.content
            }
            addedDecoding = shown
        } catch {
            throw TokenizerError(source: source, message: error.description)
        }
        var byId: [Int: AddedToken] = [:], byContent: [String: AddedToken] = [:]
        for a in added {
            byId[a.id] = a
            byContent[a.content] = a
        }
        addedById = byId
        addedByContent = byContent
        self.json = json
    }

    /// Ids up to the largest one the vocabulary or the added tokens use.
    package var vocabularySize: Int { max(model.maxId, added.map(\.id).max() ?? -1) + 1 }

    package func id(of token: String) -> Int? { addedByContent[token]?.id ?? model.vocab[token] }
    package func token(of id: Int) -> String? { addedById[id]?.content ?? model.idToToken[id] }

    // MARK: encoding

    /// The ids `tokenizers` gives for `text` (`add_special_tokens` adds the post-processor's tokens).
    /// - Throws: a `TokenizerError` naming this file and the pattern's JSON path when a regex
    ///   of the file runs past its step budget (`RegexBudget`) on this text.
    package func encode(_ text: String, addSpecialTokens: Bool = false) throws(TokenizerError) -> [Int] {
        var ids: [Int] = []
        var steps = RegexSteps()
        try walk(text, steps: &steps) { piece, added in
            if let added { ids.append(added) } else { for id in model.tokenize(piece.text) { ids.append(Int(id)) } }
        }
        if addSpecialTokens, let postProcessor { ids = postProcessor.apply(ids) }
        return ids
    }

    /// The pieces the model sees for `text` (added tokens left out): what BPE training counts.
    func modelPieces(_ text: String) throws(TokenizerError) -> [[UInt32]] {
        var out: [[UInt32]] = []
        var steps = RegexSteps()
        try walk(text, steps: &steps) { piece, added in if added == nil { out.append(piece.text) } }
        return out
    }

    /// Runs the steps before the model: `visit` gets each pre-tokenized piece, or an added
    /// token's id; `steps` gets the regex machine's steps.
    func walk(_ text: String, steps: inout RegexSteps, _ visit: (Piece, Int?) -> Void) throws(TokenizerError) {
        do {
            try walkPieces([UInt32](scalarsOf: text), steps: &steps, visit)
        } catch {
            throw TokenizerError(source: source, message: error.description)
        }
    }

    private func walkPieces(_ scalars: [UInt32], steps: inout RegexSteps, _ visit: (Piece, Int?) -> Void) throws(RegexBudgetError) {
        let none = Piece(text: [], atStart: false)
        for seg in rawMatcher.split(scalars) {
            switch seg {
            case .token(let id): visit(none, id)
            case .text(let r):
                var n = NormalizedText(text: Array(scalars[r]), startsAtOrigin: true)
                if let normalizer { n = try normalizer.normalize(n.text) }
                let t = n.text
                for inner in normalizedMatcher.split(t) {
                    switch inner {
                    case .token(let id): visit(none, id)
                    case .text(let r2):
                        guard !r2.isEmpty else { continue }
                        // Offset 0 of the original: the first raw segment, from its first normalized character.
                        let atStart = r.lowerBound == 0 && r2.lowerBound == 0 && n.startsAtOrigin
                        let piece = Piece(text: Array(t[r2]), atStart: atStart)
                        for p in try preTokenizer?.apply([piece], steps: &steps) ?? [piece] { visit(p, nil) }
                    }
                }
            }
        }
    }

    // MARK: decoding

    /// Text for `ids` as `tokenizers`' `decode` gives it; unknown ids are skipped.
    /// - Throws: a `TokenizerError` when a decoder's `Replace` regex runs past its step budget.
    package func decode(_ ids: [Int], skipSpecial: Bool = false) throws(TokenizerError) -> String {
        var tokens: [String] = []
        tokens.reserveCapacity(ids.count)
        for id in ids {
            if let a = addedById[id] {
                if skipSpecial && a.special { continue }
                tokens.append(addedDecoding[id] ?? a.content)
            } else if let t = model.idToToken[id] {
                if skipSpecial, let a = addedByContent[t], a.special { continue }
                tokens.append(t)
            }
        }
        guard let decoder else { return tokens.joined(separator: " ") }
        do {
            return try decoder.apply(tokens).joined()
        } catch {
            throw TokenizerError(source: source, message: error.description)
        }
    }
}

extension TokenizerError: InputError {}
// A pattern the engine cannot take, or a text that exhausts a pattern's budget, comes from a
// file or a text the user gave: reported as bad input, like the file errors.
extension RegexError: InputError {}
extension RegexBudgetError: InputError {}
