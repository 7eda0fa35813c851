/// A pattern that the regex engine cannot take: its text, where and why.
package struct RegexError: Error, CustomStringConvertible, Sendable {
    package let pattern: String
    package let offset: Int
    package let message: String
    package var description: String { "pattern \(Self.shown(pattern)) at character \(offset): \(message)" }

    /// A pattern quoted for a message: long ones (a hostile file's) cut to their start.
    static func shown(_ pattern: String) -> String {
        let cut = 200
        return pattern.unicodeScalars.count <= cut ? pattern.debugDescription
            : String(String.UnicodeScalarView(pattern.unicodeScalars.prefix(cut))).debugDescription + "…"
    }
}

/// A parsed pattern: the Oniguruma (Ruby syntax) subset that tokenizer.json files use.
indirect enum RegexNode: Sendable {
    case empty
    case literal(UInt32, fold: Bool)
    case set(CharacterClass)
    case any                                   // `.`: anything but \n, as in Ruby syntax
    case sequence([RegexNode])
    case alternation([RegexNode])
    case repeated(RegexNode, min: Int, max: Int, greedy: Bool, possessive: Bool)   // max Int.max = unbounded
    case atomic(RegexNode)
    case look(RegexNode, behind: Bool, negated: Bool)
    case anchor(Anchor)

    enum Anchor: Sendable { case lineStart, lineEnd, textStart, textEnd, textEndBeforeNewline, wordBoundary, notWordBoundary }
}

struct RegexParser {
    let pattern: String
    let chars: [UInt32]
    var at = 0
    var fold = false
    /// Groups and classes open around `at` (see RegexLimits.nesting).
    var depth = 0
    /// `\w` with Rust regex's meaning instead of Oniguruma's.
    let rustWord: Bool

    init(_ pattern: String, rustWord: Bool = false) {
        self.pattern = pattern
        self.rustWord = rustWord
        chars = pattern.unicodeScalars.map(\.value)
    }

    func error(_ message: String, at offset: Int? = nil) -> RegexError {
        RegexError(pattern: pattern, offset: offset ?? at, message: message)
    }

    var done: Bool { at >= chars.count }
    func peek(_ k: Int = 0) -> UInt32? { at + k < chars.count ? chars[at + k] : nil }
    func isChar(_ c: Character, _ k: Int = 0) -> Bool { peek(k) == c.unicodeScalars.first!.value }

    mutating func parse() throws(RegexError) -> RegexNode {
        if chars.count > RegexLimits.patternLength {
            throw error("the pattern has \(chars.count) characters, more than the \(RegexLimits.patternLength) allowed", at: 0)
        }
        let node = try parseAlternation()
        if !done { throw error("unbalanced ')'") }
        return node
    }

    mutating func parseAlternation() throws(RegexError) -> RegexNode {
        var branches = [try parseSequence()]
        while isChar("|") {
            at += 1
            branches.append(try parseSequence())
        }
        return branches.count == 1 ? branches[0] : .alternation(branches)
    }

    mutating func parseSequence() throws(RegexError) -> RegexNode {
        var items: [RegexNode] = []
        let saved = fold
        defer { fold = saved }
        while !done && !isChar("|") && !isChar(")") {
            // An inline flag group `(?i)` changes the rest of this sequence.
            if isChar("("), isChar("?", 1), let flags = try inlineFlagsOnly() {
                fold = flags
                continue
            }
            var atom = try parseAtom()
            atom = try parseQuantifiers(atom)
            items.append(atom)
        }
        return items.count == 1 ? items[0] : (items.isEmpty ? .empty : .sequence(items))
    }

    /// `(?i)` / `(?-i)` standing alone: returns the new case-folding flag, or nil (not such a group).
    mutating func inlineFlagsOnly() throws(RegexError) -> Bool? {
        var k = 2, on = true, value = fold
        while let c = peek(k), c != 0x29 /* ) */ {
            switch c {
            case 0x2D: on = false          // -
            case 0x69: value = on          // i
            case 0x6D, 0x78: break          // m, x: no effect on the patterns tokenizers ship
            case 0x3A: return nil          // `(?i:` is a group
            default: return nil
            }
            k += 1
        }
        guard peek(k) == 0x29, k > 2 else { return nil }
        at += k + 1
        return value
    }

    mutating func parseQuantifiers(_ atom: RegexNode) throws(RegexError) -> RegexNode {
        var node = atom
        var stacked = 0
        while let c = peek() {
            var lo = 0, hi = Int.max
            let start = at
            switch c {
            case 0x3F: lo = 0; hi = 1; at += 1          // ?
            case 0x2A: lo = 0; at += 1                  // *
            case 0x2B: lo = 1; at += 1                  // +
            case 0x7B:                                  // {
                guard let (a, b, len) = counted() else { return node }   // a literal `{`
                lo = a; hi = b; at += len
            default: return node
            }
            if case .anchor = node { throw error("a quantifier after an anchor", at: start) }
            var greedy = true, possessive = false
            if isChar("?") { greedy = false; at += 1 } else if isChar("+") && c != 0x7B { possessive = true; at += 1 }
            if lo > hi { throw error("{\(lo),\(hi)}: the minimum exceeds the maximum", at: start) }
            if max(lo, hi == Int.max ? 0 : hi) > RegexLimits.repeatCount {
                throw error("a repetition count above \(RegexLimits.repeatCount) (Oniguruma's limit)", at: start)
            }
            stacked += 1
            if stacked > RegexLimits.stackedQuantifiers {
                throw error("more than \(RegexLimits.stackedQuantifiers) quantifiers on one atom", at: start)
            }
            node = .repeated(node, min: lo, max: hi, greedy: greedy, possessive: possessive)
        }
        return node
    }

    /// `{n}`, `{n,}`, `{,m}`, `{n,m}` at `at`: (min, max, length), or nil when it is not one.
    func counted() -> (Int, Int, Int)? {
        var k = 1
        func number() -> Int? {
            var v: Int? = nil
            // Saturates rather than overflowing: any count past the limit is refused the same way.
            while let c = peek(k), c >= 0x30 && c <= 0x39 { v = min((v ?? 0) * 10 + Int(c - 0x30), Int(Int32.max)); k += 1 }
            return v
        }
        let a = number()
        if peek(k) == 0x7D { guard let a else { return nil }; return (a, a, k + 1) }
        guard peek(k) == 0x2C else { return nil }
        k += 1
        let b = number()
        guard peek(k) == 0x7D, a != nil || b != nil else { return nil }
        return (a ?? 0, b ?? Int.max, k + 1)
    }

    mutating func parseAtom() throws(RegexError) -> RegexNode {
        let c = chars[at]
        switch c {
        case 0x28: return try parseGroup()
        case 0x5B: at += 1; return .set(try parseClass())
        case 0x2E: at += 1; return .any
        case 0x5E: at += 1; return .anchor(.lineStart)
        case 0x24: at += 1; return .anchor(.lineEnd)
        case 0x5C: return try parseEscape()
        case 0x2A, 0x2B, 0x3F: throw error("a quantifier with nothing to repeat")
        default:
            at += 1
            return .literal(c, fold: fold)
        }
    }

    /// Enters a group or class: past `RegexLimits.nesting` levels the pattern is refused.
    mutating func enter(at open: Int) throws(RegexError) {
        depth += 1
        if depth > RegexLimits.nesting {
            throw error("groups or classes nested more than \(RegexLimits.nesting) deep", at: open)
        }
    }

    mutating func parseGroup() throws(RegexError) -> RegexNode {
        let open = at
        try enter(at: open)
        defer { depth -= 1 }
        at += 1
        var kind = 0 // 0 plain, 1 lookahead, 2 negative lookahead, 3 lookbehind, 4 negative lookbehind, 5 atomic
        let saved = fold
        defer { fold = saved }
        if isChar("?") {
            at += 1
            if isChar(":") { at += 1 }
            else if isChar("=") { at += 1; kind = 1 }
            else if isChar("!") { at += 1; kind = 2 }
            else if isChar(">") { at += 1; kind = 5 }
            else if isChar("<") && isChar("=", 1) { at += 2; kind = 3 }
            else if isChar("<") && isChar("!", 1) { at += 2; kind = 4 }
            else if isChar("<") || isChar("'") {
                // A named group: the name does not matter, only the match.
                let close: Character = isChar("<") ? ">" : "'"
                while !done && !isChar(close) { at += 1 }
                guard !done else { throw error("unterminated group name", at: open) }
                at += 1
            } else {
                // Flags for the group: (?i:...), (?-i:...), (?im-x:...)
                var on = true
                while let f = peek(), f != 0x3A {
                    switch f {
                    case 0x2D: on = false
                    case 0x69: fold = on
                    case 0x6D, 0x78: break
                    default: throw error("group syntax (?\(String(Character(Unicode.Scalar(f)!))) is not supported", at: open)
                    }
                    at += 1
                }
                guard isChar(":") else { throw error("unterminated group", at: open) }
                at += 1
            }
        }
        let body = try parseAlternation()
        guard isChar(")") else { throw error("unterminated group: missing ')'", at: open) }
        at += 1
        switch kind {
        case 1: return .look(body, behind: false, negated: false)
        case 2: return .look(body, behind: false, negated: true)
        case 3: return .look(body, behind: true, negated: false)
        case 4: return .look(body, behind: true, negated: true)
        case 5: return .atomic(body)
        default: return body
        }
    }

    mutating func parseEscape() throws(RegexError) -> RegexNode {
        let start = at
        at += 1
        guard let c = peek() else { throw error("a pattern cannot end with '\\'", at: start) }
        switch c {
        case 0x41: at += 1; return .anchor(.textStart)               // \A
        case 0x7A: at += 1; return .anchor(.textEnd)                 // \z
        case 0x5A: at += 1; return .anchor(.textEndBeforeNewline)    // \Z
        case 0x62: at += 1; return .anchor(.wordBoundary)            // \b
        case 0x42: at += 1; return .anchor(.notWordBoundary)         // \B
        case 0x47: at += 1; return .anchor(.textStart)               // \G: searches start at the piece start
        default:
            if let item = try classEscape() { return .set(CharacterClass(items: [item.0], negated: item.1, foldCase: fold)) }
            let v = try literalEscape(start: start)
            return .literal(v, fold: fold)
        }
    }

    /// A class escape at `at` (just after the backslash): (item, negated), or nil.
    mutating func classEscape() throws(RegexError) -> (CharacterClass.Item, Bool)? {
        guard let c = peek() else { return nil }
        switch c {
        case 0x73: at += 1; return (.whitespace, false)   // \s
        case 0x53: at += 1; return (.whitespace, true)    // \S
        case 0x64: at += 1; return (.digit, false)        // \d
        case 0x44: at += 1; return (.digit, true)         // \D
        case 0x77: at += 1; return (rustWord ? .rustWord : .word, false)         // \w
        case 0x57: at += 1; return (rustWord ? .rustWord : .word, true)          // \W
        case 0x68, 0x48:                                  // \h \H: hex digits in Ruby syntax
            at += 1
            return (.nested(CharacterClass(items: [.range(48, 57), .range(65, 70), .range(97, 102)])), c == 0x48)
        case 0x70, 0x50:                                  // \p{..} \P{..} \p{^..}
            let start = at - 1
            at += 1
            guard isChar("{") else { throw error("\\p needs {name}", at: start) }
            at += 1
            var negated = c == 0x50
            if isChar("^") { negated.toggle(); at += 1 }
            var name = ""
            while let d = peek(), d != 0x7D { name.unicodeScalars.append(Unicode.Scalar(d)!); at += 1 }
            guard isChar("}") else { throw error("unterminated \\p{", at: start) }
            at += 1
            let key = name.lowercased().replacingOccurrences(of: "_", with: "")
            if key == "space" || key == "whitespace" { return (.whitespace, negated) }
            if key == "word" { return (.word, negated) }
            guard let mask = GeneralCategoryBits.mask(named: name) else {
                throw error("Unicode property \\p{\(name)} is not supported (general categories such as L, Lu, N, Nd, P, S, Z, M, C are)", at: start)
            }
            return (.categories(mask), negated)
        default: return nil
        }
    }

    /// The scalar an escape like `\n`, `\x41`, `\u00e9`, `\.` stands for (`at` is just after the backslash).
    mutating func literalEscape(start: Int) throws(RegexError) -> UInt32 {
        let c = chars[at]
        at += 1
        switch c {
        case 0x6E: return 10          // n
        case 0x72: return 13          // r
        case 0x74: return 9           // t
        case 0x66: return 12          // f
        case 0x76: return 11          // v
        case 0x61: return 7           // a
        case 0x65: return 27          // e
        case 0x30: return 0           // 0
        case 0x78, 0x75:              // x, u
            var digits = ""
            if isChar("{") {
                at += 1
                while let d = peek(), d != 0x7D { digits.unicodeScalars.append(Unicode.Scalar(d)!); at += 1 }
                guard isChar("}") else { throw error("unterminated \\x{", at: start) }
                at += 1
            } else {
                let n = c == 0x78 ? 2 : 4
                for _ in 0..<n { if let d = peek(), Self.isHex(d) { digits.unicodeScalars.append(Unicode.Scalar(d)!); at += 1 } }
            }
            guard let v = UInt32(digits, radix: 16), Unicode.Scalar(v) != nil else {
                throw error("bad hexadecimal escape", at: start)
            }
            return v
        default:
            if (c >= 0x31 && c <= 0x39) { throw error("back-references are not supported", at: start) }
            if (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) {
                throw error("escape \\\(String(Unicode.Scalar(c)!)) is not supported", at: start)
            }
            return c
        }
    }

    static func isHex(_ d: UInt32) -> Bool { (d >= 48 && d <= 57) || (d >= 65 && d <= 70) || (d >= 97 && d <= 102) }

    /// A bracket class; `at` is just after `[`.
    mutating func parseClass() throws(RegexError) -> CharacterClass {
        let open = at - 1
        try enter(at: open)
        defer { depth -= 1 }
        var cls = CharacterClass(foldCase: fold)
        if isChar("^") { cls.negated = true; at += 1 }
        var first = true
        while true {
            guard let c = peek() else { throw error("unterminated character class: missing ']'", at: open) }
            if c == 0x5D && !first { at += 1; break }                      // ]
            first = false
            if c == 0x5B && isChar(":", 1) {                               // [:alpha:]
                guard let item = try posixClass() else { throw error("unknown POSIX class", at: at) }
                cls.items.append(item)
                continue
            }
            if c == 0x5B { at += 1; cls.items.append(.nested(try parseClass())); continue }
            if c == 0x26 && isChar("&", 1) { throw error("class intersection && is not supported", at: at) }
            var lo: UInt32
            if c == 0x5C {
                let start = at
                at += 1
                guard !done else { throw error("a pattern cannot end with '\\'", at: start) }
                if let (item, neg) = try classEscape() {
                    cls.items.append(neg ? .inverted(CharacterClass(items: [item])) : item)
                    continue
                }
                lo = isChar("b") ? { at += 1; return 8 }() : try literalEscape(start: start)
            } else {
                lo = c
                at += 1
            }
            // A range `a-z` (a `-` before `]` is literal).
            if isChar("-"), let next = peek(1), next != 0x5D {
                at += 1
                var hi: UInt32
                if next == 0x5C {
                    let start = at
                    at += 1
                    guard !done else { throw error("a pattern cannot end with '\\'", at: start) }
                    hi = try literalEscape(start: start)
                } else {
                    hi = next
                    at += 1
                }
                if hi < lo { throw error("range out of order in character class", at: open) }
                cls.items.append(.range(lo, hi))
            } else {
                cls.items.append(.range(lo, lo))
            }
        }
        cls.finish()
        return cls
    }

    mutating func posixClass() throws(RegexError) -> CharacterClass.Item? {
        var k = 2, name = ""
        var negated = false
        if peek(k) == 0x5E { negated = true; k += 1 }
        while let d = peek(k), d != 0x3A { name.unicodeScalars.append(Unicode.Scalar(d)!); k += 1 }
        guard peek(k) == 0x3A, peek(k + 1) == 0x5D else { return nil }
        let items: [String: CharacterClass.Item] = [
            "alpha": .alphabetic,
            "digit": .digit, "alnum": .nested(CharacterClass(items: [.alphabetic, .digit])),
            "space": .whitespace, "upper": .categories(1), "lower": .categories(2),
            "punct": .categories(GeneralCategoryBits.punctuation), "word": .word,
            "xdigit": .nested(CharacterClass(items: [.range(48, 57), .range(65, 70), .range(97, 102)])),
            "cntrl": .categories(1 << 25),
        ]
        guard let item = items[name] else { return nil }
        at += k + 2
        return negated ? .inverted(CharacterClass(items: [item])) : item
    }
}

