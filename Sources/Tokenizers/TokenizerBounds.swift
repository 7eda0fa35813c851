/// Sizes a tokenizer.json may have. The file is downloaded input: each bound is checked before
/// the tables it sizes are built, and a file past one is a `TokenizerError` naming the key.
/// Published files are far below (Llama 3: 9 MB, 128,256 tokens, 280,147 merges, 256 added
/// tokens; Qwen2: 7 MB, 151,643 tokens; DeepSeek-V3: 8 MB, 128,000 tokens, 818 added tokens;
/// Gemma 3: 262,144 tokens): each standard bound is 20 to 60 times the largest.
package struct TokenizerBounds: Sendable {
    /// Bytes of tokenizer.json.
    package var fileBytes = 512 << 20
    /// Entries of `model.vocab`.
    package var vocabulary = 1 << 23
    /// Entries of `model.merges`.
    package var merges = 1 << 23
    /// Entries of `added_tokens`.
    package var addedTokens = 1 << 18
    /// Characters of one added token's `content`: finding added tokens in a text walks at
    /// most this far from each position (published ones are under 40).
    package var addedTokenLength = 1_024
    /// Characters of all added tokens together: the size of the matcher's trie.
    package var addedTokenCharacters = 1 << 22
    /// Token ids lie in 0..<idLimit: ids size embedding tables and index the model's arrays.
    package var idLimit = 1 << 24
    /// Characters of a `pattern` (`{"Regex": ...}` or `{"String": ...}`); the regex parser's
    /// own limit (RegexLimits.patternLength) is the largest this can be.
    package var patternLength = RegexLimits.patternLength

    package init() {}

    package static let standard = TokenizerBounds()
}
