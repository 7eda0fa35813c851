import Tokenizers
/// Splits a template into text and tag tokens the way Jinja's lexer does with the options
/// transformers renders chat templates with: newlines normalized to `\n`, one trailing newline
/// dropped (keep_trailing_newline=False), `trim_blocks` (the newline after a block or comment
/// tag is removed), `lstrip_blocks` (spaces and tabs before a block or comment tag at the start
/// of a line are removed), and `-`/`+` whitespace control on either side of a tag.
struct JinjaLexer {
    enum Kind: Equatable {
        case text(String)
        case variableBegin, variableEnd, blockBegin, blockEnd
        case name(String), string(String), int(Int), float(Double), op(String)
        case eof
    }
    struct Token { let kind: Kind; let line: Int }

    static func tokenize(_ source: String) throws(TemplateError) -> [Token] {
        var lexer = JinjaLexer(source: normalize(source))
        try lexer.run()
        return lexer.tokens
    }

    /// `\r\n`, `\r` and `\n` become `\n`; one newline at the very end is dropped.
    static func normalize(_ s: String) -> [Character] {
        var out: [Character] = []
        var it = s.unicodeScalars.makeIterator()
        var pending: Unicode.Scalar? = it.next()
        var scalars: [Unicode.Scalar] = []
        while let u = pending {
            pending = it.next()
            if u == "\r" {
                scalars.append("\n")
                if pending == "\n" { pending = it.next() }
            } else {
                scalars.append(u)
            }
        }
        if scalars.last == "\n" { scalars.removeLast() }
        var str = String.UnicodeScalarView()
        str.append(contentsOf: scalars)
        out = Array(String(str))
        return out
    }

    let src: [Character]
    var pos = 0
    var line = 1
    var tokens: [Token] = []

    init(source: [Character]) { src = source }

    func at(_ i: Int) -> Character? { i < src.count ? src[i] : nil }
    func starts(_ s: String, at i: Int) -> Bool {
        var k = i
        for c in s { guard k < src.count, src[k] == c else { return false }; k += 1 }
        return true
    }

    mutating func emit(_ k: Kind, line l: Int? = nil) { tokens.append(Token(kind: k, line: l ?? line)) }

    mutating func advanceCounting(_ n: Int) {
        for i in pos..<min(pos + n, src.count) where src[i] == "\n" { line += 1 }
        pos += n
    }

    mutating func run() throws(TemplateError) {
        var stripNextLeading = false
        var lineStarting = true
        while pos < src.count {
            // Find the next tag opener.
            var k = pos
            var opener: Character? = nil
            while k + 1 < src.count {
                if src[k] == "{", let n = at(k + 1), n == "{" || n == "%" || n == "#" { opener = n; break }
                k += 1
            }
            if opener == nil { k = src.count }
            var text = String(src[pos..<k])
            let textLine = line
            if stripNextLeading { text = String(text.drop { $0.isWhitespace }) }
            stripNextLeading = false
            guard let kind = opener else {
                if !text.isEmpty { emit(.text(text), line: textLine) }
                advanceCounting(k - pos)
                break
            }
            let sign = at(k + 2)
            if sign == "-" {
                while let last = text.last, last.isWhitespace { text.removeLast() }
            } else if sign != "+" && kind != "{" {
                // lstrip_blocks: only spaces/tabs between the line's start and the tag.
                let lastNewline = text.lastIndex(of: "\n")
                let tail = lastNewline.map { text[text.index(after: $0)...] } ?? text[...]
                if (lastNewline != nil || lineStarting) && !tail.isEmpty && tail.allSatisfy({ $0 == " " || $0 == "\t" }) {
                    text.removeLast(tail.count)
                }
            }
            if !text.isEmpty { emit(.text(text), line: textLine) }
            advanceCounting(k - pos)
            let tagLine = line
            pos += 2
            if sign == "-" || sign == "+" { pos += 1 }
            switch kind {
            case "#":
                // A comment: up to #}, with the same whitespace control as a block.
                var e = pos
                while e + 1 < src.count && !(src[e] == "#" && src[e + 1] == "}") { e += 1 }
                guard e + 1 < src.count else { throw TemplateError("unterminated comment", line: tagLine) }
                let closeSign = e > pos ? src[e - 1] : nil
                advanceCounting(e - pos)
                pos += 2
                if closeSign == "-" { stripNextLeading = true } else if closeSign != "+" && at(pos) == "\n" { advanceCounting(1) }
            case "{":
                emit(.variableBegin, line: tagLine)
                stripNextLeading = try expression(until: "}}") == .strip
                emit(.variableEnd)
            default:
                // A raw block is passed through as text.
                let save = pos
                skipSpaces()
                if starts("raw", at: pos), let after = at(pos + 3), !after.isLetter && !after.isNumber && after != "_" {
                    try raw(tagLine: tagLine)
                    stripNextLeading = false
                    lineStarting = pos > 0 && src[pos - 1] == "\n"
                    continue
                }
                pos = save
                emit(.blockBegin, line: tagLine)
                let end = try expression(until: "%}")
                emit(.blockEnd)
                if end == .strip { stripNextLeading = true } else if end == .plain && at(pos) == "\n" { advanceCounting(1) }
            }
            lineStarting = pos > 0 && src[pos - 1] == "\n"
        }
        emit(.eof)
    }

    mutating func skipSpaces() { while let c = at(pos), c.isWhitespace { if c == "\n" { line += 1 }; pos += 1 } }

    /// `{% raw %}...{% endraw %}`: the text in between, untouched.
    mutating func raw(tagLine: Int) throws(TemplateError) {
        pos += 3
        skipSpaces()
        if at(pos) == "-" { pos += 1 }
        guard starts("%}", at: pos) else { throw TemplateError("expected %} after raw", line: tagLine) }
        pos += 2
        var e = pos
        while e < src.count {
            if src[e] == "{" && at(e + 1) == "%" {
                var j = e + 2
                if at(j) == "-" || at(j) == "+" { j += 1 }
                while let c = at(j), c == " " { j += 1 }
                if starts("endraw", at: j) {
                    var t = j + 6
                    while let c = at(t), c == " " { t += 1 }
                    if at(t) == "-" || at(t) == "+" { t += 1 }
                    if starts("%}", at: t) {
                        emit(.text(String(src[pos..<e])), line: line)
                        advanceCounting(e - pos)
                        pos = t + 2
                        return
                    }
                }
            }
            e += 1
        }
        throw TemplateError("unterminated raw block: missing {% endraw %}", line: tagLine)
    }

    enum TagEnd { case plain, strip, keep }

    /// Tokens of a tag's expression up to `close` (`}}` or `%}`), which is consumed, and how
    /// the tag ended: `-` strips the whitespace after it, `+` keeps the newline trim_blocks takes.
    mutating func expression(until close: String) throws(TemplateError) -> TagEnd {
        var depth = 0
        let startLine = line
        while true {
            skipSpaces()
            guard let c = at(pos) else {
                throw TemplateError("unterminated tag: missing \(close)", line: startLine)
            }
            if depth == 0 {
                if c == "-" && starts(close, at: pos + 1) { pos += 1 + close.count; return .strip }
                if c == "+" && close == "%}" && starts(close, at: pos + 1) { pos += 1 + close.count; return .keep }
                if starts(close, at: pos) { pos += close.count; return .plain }
            }
            if c.isLetter || c == "_" {
                var e = pos
                while let d = at(e), d.isLetter || d.isNumber || d == "_" { e += 1 }
                emit(.name(String(src[pos..<e])))
                pos = e
            } else if c.isASCII && c.isNumber {
                var e = pos
                while let d = at(e), (d.isASCII && d.isNumber) || d == "_" { e += 1 }
                var isFloat = false
                if at(e) == ".", let d = at(e + 1), d.isASCII && d.isNumber, tokens.last.map({ $0.kind != .op(".") }) ?? true {
                    isFloat = true
                    e += 1
                    while let d = at(e), d.isASCII && d.isNumber { e += 1 }
                }
                if let d = at(e), d == "e" || d == "E", let n = at(e + 1), n.isNumber || ((n == "+" || n == "-") && (at(e + 2)?.isNumber ?? false)) {
                    isFloat = true
                    e += 2
                    while let d = at(e), d.isASCII && d.isNumber { e += 1 }
                }
                let s = String(src[pos..<e]).replacingOccurrences(of: "_", with: "")
                if isFloat {
                    emit(.float(Double(s) ?? 0))
                } else {
                    // Python's integers are unbounded; here they are 64-bit (docs/data.md).
                    guard let i = Int(s) else { throw TemplateError("integer literal \(s) does not fit in 64 bits", line: line) }
                    emit(.int(i))
                }
                pos = e
            } else if c == "'" || c == "\"" {
                emit(.string(try stringLiteral(quote: c)))
            } else {
                let two = pos + 1 < src.count ? String(src[pos...(pos + 1)]) : ""
                if ["//", "**", "==", "!=", "<=", ">="].contains(two) {
                    emit(.op(two))
                    pos += 2
                } else if "+-*/%~<>=()[]{},.:|".contains(c) {
                    if c == "(" || c == "[" || c == "{" { depth += 1 }
                    if c == ")" || c == "]" || c == "}" { depth -= 1 }
                    emit(.op(String(c)))
                    pos += 1
                } else {
                    throw TemplateError("unexpected character \(String(c).debugDescription) in a tag", line: line)
                }
            }
        }
    }

    /// A string literal with Python's escapes (`\n`, `\t`, `\\`, `\'`, `\xHH`, `\uXXXX`, ...).
    mutating func stringLiteral(quote: Character) throws(TemplateError) -> String {
        let startLine = line
        pos += 1
        var out = ""
        while true {
            guard let c = at(pos) else { throw TemplateError("unterminated string literal", line: startLine) }
            pos += 1
            if c == quote { return out }
            if c == "\n" { line += 1 }
            guard c == "\\" else { out.append(c); continue }
            guard let e = at(pos) else { throw TemplateError("unterminated string literal", line: startLine) }
            pos += 1
            switch e {
            case "n": out.append("\n")
            case "t": out.append("\t")
            case "r": out.append("\r")
            case "\\": out.append("\\")
            case "'": out.append("'")
            case "\"": out.append("\"")
            case "a": out.append("\u{07}")
            case "b": out.append("\u{08}")
            case "f": out.append("\u{0C}")
            case "v": out.append("\u{0B}")
            case "0": out.append("\u{00}")
            case "\n": line += 1
            case "x", "u", "U":
                let n = e == "x" ? 2 : (e == "u" ? 4 : 8)
                guard pos + n <= src.count, let v = UInt32(String(src[pos..<(pos + n)]), radix: 16), let u = Unicode.Scalar(v) else {
                    throw TemplateError("bad \\\(e) escape in a string literal", line: line)
                }
                out.unicodeScalars.append(u)
                pos += n
            default:
                out.append("\\")
                out.append(e)
            }
        }
    }
}
