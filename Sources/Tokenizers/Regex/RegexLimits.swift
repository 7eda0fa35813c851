/// What a pattern may ask of the parser and compiler, so a hostile tokenizer.json fails with a
/// `RegexError` instead of overflowing the stack or allocating without bound. Each limit is far
/// above what published tokenizers use (patterns of a few hundred characters, groups nested
/// two deep, counts such as `{1,3}`).
enum RegexLimits {
    /// Characters in a pattern.
    static let patternLength = 32_768
    /// Groups and bracket classes nested in one another: parsing, compiling and freeing the
    /// tree recurse once per level.
    static let nesting = 64
    /// Quantifiers stacked on one atom (`a{2}{3}`): each is another level of the tree.
    static let stackedQuantifiers = 2
    /// The largest count in `{n,m}`, Oniguruma's own limit (ONIG_MAX_REPEAT_NUM).
    static let repeatCount = 100_000
    /// Instructions in a compiled program (published patterns compile to a few hundred):
    /// counted repetitions copy their body, and copies of copies multiply.
    static let programLength = 1 << 16
}
