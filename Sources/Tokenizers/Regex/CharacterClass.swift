/// A set of Unicode scalars as Oniguruma's Unicode mode defines the classes that tokenizer
/// patterns use: `\s` is White_Space, `\d` is Nd, `\w` is letters, marks, Nd and Pc, and
/// `\p{..}` takes general categories (`L`, `Lu`, `N`, `P`, ...). ASCII is answered from a
/// bitmap: most text a tokenizer sees is ASCII, and this is the innermost loop of encoding.
struct CharacterClass: Sendable {
    enum Item: Sendable {
        case range(UInt32, UInt32)
        case categories(UInt32)            // bit i = GeneralCategoryBits index i
        case whitespace, digit, word, alphabetic
        /// `\w` as Rust's regex crate means it (Alphabetic, marks, Nd, Pc), for the patterns tokenizers compiles with it.
        case rustWord
        case inverted(CharacterClass)      // \S, \P{..}, [^..] nested in a class
        case nested(CharacterClass)
    }

    var items: [Item] = []
    var negated = false
    /// Case-insensitive: a scalar matches when its lower- or uppercase form does.
    var foldCase = false
    private(set) var ascii: (UInt64, UInt64) = (0, 0)

    init(items: [Item] = [], negated: Bool = false, foldCase: Bool = false) {
        self.items = items
        self.negated = negated
        self.foldCase = foldCase
        finish()
    }

    /// Fills the ASCII bitmap; call after changing `items`.
    mutating func finish() {
        var lo: UInt64 = 0, hi: UInt64 = 0
        for c in 0..<UInt32(128) where slowContains(c) {
            if c < 64 { lo |= 1 << UInt64(c) } else { hi |= 1 << UInt64(c - 64) }
        }
        ascii = (lo, hi)
    }

    @inline(__always) func contains(_ c: UInt32) -> Bool {
        if c < 64 { return ascii.0 & (1 << UInt64(c)) != 0 }
        if c < 128 { return ascii.1 & (1 << UInt64(c - 64)) != 0 }
        return slowContains(c)
    }

    func slowContains(_ c: UInt32) -> Bool {
        if matchesItems(c) { return !negated }
        if foldCase, let s = Unicode.Scalar(c) {
            for v in CharacterClass.caseVariants(s) where v != c && matchesItems(v) { return !negated }
        }
        return negated
    }

    private func matchesItems(_ c: UInt32) -> Bool {
        for item in items {
            switch item {
            case .range(let a, let b): if c >= a && c <= b { return true }
            case .categories(let mask): if mask & CharacterClass.categoryBit(c) != 0 { return true }
            case .whitespace: if CharacterClass.isWhitespace(c) { return true }
            case .digit: if CharacterClass.categoryBit(c) & GeneralCategoryBits.nd != 0 { return true }
            case .word: if CharacterClass.isWord(c) { return true }
            case .rustWord: if CharacterClass.isRustWord(c) { return true }
            case .alphabetic: if CharacterClass.isAlphabetic(c) { return true }
            case .inverted(let cls): if !cls.contains(c) { return true }
            case .nested(let cls): if cls.contains(c) { return true }
            }
        }
        return false
    }

    static func caseVariants(_ s: Unicode.Scalar) -> [UInt32] {
        var out: [UInt32] = []
        for m in [s.properties.lowercaseMapping, s.properties.uppercaseMapping] {
            let scalars = m.unicodeScalars
            if scalars.count == 1 { out.append(scalars.first!.value) }
        }
        return out
    }

    static func isWhitespace(_ c: UInt32) -> Bool {
        if c < 128 { return c == 32 || (c >= 9 && c <= 13) }
        return Unicode.Scalar(c)?.properties.isWhitespace ?? false
    }

    static func isWord(_ c: UInt32) -> Bool {
        if c < 128 {
            return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c == 95
        }
        return categoryBit(c) & (GeneralCategoryBits.letter | GeneralCategoryBits.mark | GeneralCategoryBits.number | GeneralCategoryBits.pc) != 0
    }

    /// Rust regex's `\w` (tokenizers' Whitespace pre-tokenizer and `single_word` checks use it).
    static func isRustWord(_ c: UInt32) -> Bool {
        if c < 128 { return isWord(c) }
        if isAlphabetic(c) { return true }
        return categoryBit(c) & (GeneralCategoryBits.mark | GeneralCategoryBits.nd | GeneralCategoryBits.pc) != 0 || c == 0x200C || c == 0x200D
    }

    static func isAlphabetic(_ c: UInt32) -> Bool {
        if c < 128 { return (c >= 65 && c <= 90) || (c >= 97 && c <= 122) }
        return Unicode.Scalar(c)?.properties.isAlphabetic ?? false
    }

    static func categoryBit(_ c: UInt32) -> UInt32 {
        guard let s = Unicode.Scalar(c) else { return 1 << 27 }
        return GeneralCategoryBits.bit(s.properties.generalCategory)
    }
}

/// Unicode general categories as bits, so `\p{L}` (five categories) is one mask test.
enum GeneralCategoryBits {
    static let order: [(String, Unicode.GeneralCategory)] = [
        ("Lu", .uppercaseLetter), ("Ll", .lowercaseLetter), ("Lt", .titlecaseLetter), ("Lm", .modifierLetter),
        ("Lo", .otherLetter), ("Mn", .nonspacingMark), ("Mc", .spacingMark), ("Me", .enclosingMark),
        ("Nd", .decimalNumber), ("Nl", .letterNumber), ("No", .otherNumber), ("Pc", .connectorPunctuation),
        ("Pd", .dashPunctuation), ("Ps", .openPunctuation), ("Pe", .closePunctuation), ("Pi", .initialPunctuation),
        ("Pf", .finalPunctuation), ("Po", .otherPunctuation), ("Sm", .mathSymbol), ("Sc", .currencySymbol),
        ("Sk", .modifierSymbol), ("So", .otherSymbol), ("Zs", .spaceSeparator), ("Zl", .lineSeparator),
        ("Zp", .paragraphSeparator), ("Cc", .control), ("Cf", .format), ("Cs", .surrogate),
        ("Co", .privateUse), ("Cn", .unassigned),
    ]

    static func bit(_ g: Unicode.GeneralCategory) -> UInt32 {
        switch g {
        case .uppercaseLetter: 1 << 0
        case .lowercaseLetter: 1 << 1
        case .titlecaseLetter: 1 << 2
        case .modifierLetter: 1 << 3
        case .otherLetter: 1 << 4
        case .nonspacingMark: 1 << 5
        case .spacingMark: 1 << 6
        case .enclosingMark: 1 << 7
        case .decimalNumber: 1 << 8
        case .letterNumber: 1 << 9
        case .otherNumber: 1 << 10
        case .connectorPunctuation: 1 << 11
        case .dashPunctuation: 1 << 12
        case .openPunctuation: 1 << 13
        case .closePunctuation: 1 << 14
        case .initialPunctuation: 1 << 15
        case .finalPunctuation: 1 << 16
        case .otherPunctuation: 1 << 17
        case .mathSymbol: 1 << 18
        case .currencySymbol: 1 << 19
        case .modifierSymbol: 1 << 20
        case .otherSymbol: 1 << 21
        case .spaceSeparator: 1 << 22
        case .lineSeparator: 1 << 23
        case .paragraphSeparator: 1 << 24
        case .control: 1 << 25
        case .format: 1 << 26
        case .surrogate: 1 << 27
        case .privateUse: 1 << 28
        case .unassigned: 1 << 29
        @unknown default: 1 << 29
        }
    }

    static let letter: UInt32 = 0b11111
    static let mark: UInt32 = 0b111 << 5
    static let number: UInt32 = 0b111 << 8
    static let nd: UInt32 = 1 << 8
    static let pc: UInt32 = 1 << 11
    static let punctuation: UInt32 = 0b1111111 << 11
    static let symbol: UInt32 = 0b1111 << 18
    static let separator: UInt32 = 0b111 << 22
    static let other: UInt32 = 0b11111 << 25

    /// The mask for a `\p{..}` name: a one- or two-letter category, its long name, or `Any`.
    static func mask(named raw: String) -> UInt32? {
        let name = raw.replacingOccurrences(of: "_", with: "").replacingOccurrences(of: " ", with: "").lowercased()
        let groups: [String: UInt32] = [
            "l": letter, "letter": letter, "m": mark, "mark": mark, "combiningmark": mark, "n": number, "number": number,
            "p": punctuation, "punctuation": punctuation, "punct": punctuation, "s": symbol, "symbol": symbol,
            "z": separator, "separator": separator, "c": other, "other": other, "any": (1 << 30) - 1,
            "lc": 0b111, "casedletter": 0b111, "l&": 0b111,
            "alpha": letter | mark, "digit": nd, "alnum": letter | mark | nd,
            "upper": 1, "lower": 2,
        ]
        if let m = groups[name] { return m }
        let long: [String: String] = [
            "uppercaseletter": "Lu", "lowercaseletter": "Ll", "titlecaseletter": "Lt", "modifierletter": "Lm",
            "otherletter": "Lo", "nonspacingmark": "Mn", "spacingmark": "Mc", "enclosingmark": "Me",
            "decimalnumber": "Nd", "letternumber": "Nl", "othernumber": "No", "connectorpunctuation": "Pc",
            "dashpunctuation": "Pd", "openpunctuation": "Ps", "closepunctuation": "Pe", "initialpunctuation": "Pi",
            "finalpunctuation": "Pf", "otherpunctuation": "Po", "mathsymbol": "Sm", "currencysymbol": "Sc",
            "modifiersymbol": "Sk", "othersymbol": "So", "spaceseparator": "Zs", "lineseparator": "Zl",
            "paragraphseparator": "Zp", "control": "Cc", "format": "Cf", "surrogate": "Cs", "privateuse": "Co",
            "unassigned": "Cn",
        ]
        let short = long[name] ?? raw
        for (i, (code, _)) in order.enumerated() where code.lowercased() == short.lowercased() { return 1 << UInt32(i) }
        return nil
    }
}
