import Foundation
import Tokenizers

/// jinja2's `wordwrap(width=79, break_long_words=True, wrapstring=None, break_on_hyphens=True)`:
/// each line of the text (Python's `splitlines`) wrapped by Python's `textwrap.wrap` (tabs
/// kept, whitespace kept, whitespace dropped at line ends), all joined by `wrapstring`
/// ("\n" by default). The chunking is textwrap's `wordsep_re` written out as a scanner, in
/// linear time; lengths are code points, as Python counts them.
enum TextWrap {
    typealias Chunk = Range<Int>

    static func wordwrap(_ r: JinjaInterpreter, _ v: JinjaValue, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws -> JinjaValue {
        guard let s = v.plainString else {
            if case .undefined(let n) = v { throw r.error("'\(n)' is undefined (filter wordwrap)") }
            throw r.error("'\(v.typeName)' object has no attribute 'splitlines'")
        }
        let widthArg = JinjaBuiltins.arg(args, kwargs, 0, "width") ?? .int(79)
        guard let width = widthArg.intValue else { throw r.error("'<=' not supported between instances of '\(widthArg.typeName)' and 'int'") }
        let breakLong = JinjaBuiltins.arg(args, kwargs, 1, "break_long_words")?.truthy ?? true
        let wrap = try r.text(JinjaBuiltins.notNone(JinjaBuiltins.arg(args, kwargs, 2, "wrapstring"))) ?? "\n"
        let hyphens = JinjaBuiltins.arg(args, kwargs, 3, "break_on_hyphens")?.truthy ?? true
        var pieces: [String] = []
        for line in splitlines(Array(s.unicodeScalars)) {
            guard width > 0 else { throw r.error("invalid width \(width) (must be > 0)") }
            let lineChunks = hyphens ? chunks(line) : simpleChunks(line)
            let wrapped = wrapChunks(line, lineChunks, width: width, breakLong: breakLong, breakOnHyphens: hyphens)
            pieces.append(try JinjaBuiltins.joined(r, wrapped.map { String(String.UnicodeScalarView($0.flatMap { line[$0] })) }, wrap))
        }
        return .string(try JinjaBuiltins.joined(r, pieces, wrap))
    }

    /// Python's `str.splitlines()`: \n, \r, \r\n, \v, \f, \x1c-\x1e, \x85, U+2028, U+2029.
    static func splitlines(_ s: [Unicode.Scalar]) -> [[Unicode.Scalar]] {
        var lines: [[Unicode.Scalar]] = [], start = 0, i = 0
        while i < s.count {
            switch s[i].value {
            case 0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029:
                lines.append(Array(s[start..<i]))
                if s[i] == "\r" && i + 1 < s.count && s[i + 1] == "\n" { i += 1 }
                start = i + 1
            default: break
            }
            i += 1
        }
        if start < s.count { lines.append(Array(s[start...])) }
        return lines
    }

    /// textwrap's whitespace: ASCII only.
    static func isSpace(_ c: Unicode.Scalar) -> Bool { c == " " || (c.value >= 0x09 && c.value <= 0x0D) }

    /// Python's `\w`: a letter or number of any script, or `_`.
    static func isWord(_ c: Unicode.Scalar) -> Bool {
        switch c.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter,
             .decimalNumber, .letterNumber, .otherNumber: return true
        default: return c == "_"
        }
    }

    /// `[^\d\W]`: a word character that is not a decimal digit.
    static func isLetter(_ c: Unicode.Scalar) -> Bool { isWord(c) && c.properties.generalCategory != .decimalNumber }

    /// `[\w!"'&.,?]`.
    static func isWordPunct(_ c: Unicode.Scalar) -> Bool { isWord(c) || "!\"'&.,?".unicodeScalars.contains(c) }

    /// With break_on_hyphens=False: runs of whitespace and runs of the rest.
    static func simpleChunks(_ s: [Unicode.Scalar]) -> [Chunk] {
        var out: [Chunk] = [], i = 0
        while i < s.count {
            var j = i + 1
            while j < s.count && isSpace(s[j]) == isSpace(s[i]) { j += 1 }
            out.append(i..<j)
            i = j
        }
        return out
    }

    /// textwrap's `wordsep_re` split: whitespace runs, em-dashes (`--`) between words, and
    /// words, which end after a hyphen between letters, before whitespace or the end, or
    /// before an em-dash.
    static func chunks(_ s: [Unicode.Scalar]) -> [Chunk] {
        let n = s.count
        // dashes[i]: how many '-' start at i (so every em-dash test is O(1)).
        var dashes = [Int](repeating: 0, count: n + 1)
        for i in stride(from: n - 1, through: 0, by: -1) where s[i] == "-" { dashes[i] = dashes[i + 1] + 1 }
        func at(_ i: Int) -> Unicode.Scalar? { i >= 0 && i < n ? s[i] : nil }
        func letter(_ i: Int) -> Bool { at(i).map(isLetter) ?? false }
        func emDash(_ i: Int) -> Bool { dashes[i] >= 2 && at(i + dashes[i]).map(isWord) == true }
        var out: [Chunk] = [], i = 0
        while i < n {
            if isSpace(s[i]) {
                var j = i + 1
                while j < n && isSpace(s[j]) { j += 1 }
                out.append(i..<j)
                i = j
            } else if i > 0 && isWordPunct(s[i - 1]) && emDash(i) {
                out.append(i..<(i + dashes[i]))
                i += dashes[i]
            } else {
                var j = i + 1
                while true {
                    if at(j) == "-", (letter(j - 2) && letter(j - 1)) || (letter(j - 3) && at(j - 2) == "-" && letter(j - 1)),
                       letter(j + 1) && (letter(j + 2) || (at(j + 2) == "-" && letter(j + 3))) {
                        j += 1
                        break
                    }
                    if j == n || isSpace(s[j]) { break }
                    if isWordPunct(s[j - 1]) && emDash(j) { break }
                    j += 1
                }
                out.append(i..<j)
                i = j
            }
        }
        return out
    }

    /// textwrap's `_wrap_chunks` and `_handle_long_word` (drop_whitespace, no indents, no
    /// max_lines): each line a list of chunk ranges.
    static func wrapChunks(_ s: [Unicode.Scalar], _ chunks: [Chunk], width: Int, breakLong: Bool, breakOnHyphens: Bool) -> [[Chunk]] {
        var chunks = chunks, k = 0, lines: [[Chunk]] = []
        // solid[i]: the first position at or after i that is not (Unicode) whitespace, so that
        // `chunk.strip() == ''` is O(1) however often a long blank chunk is looked at.
        var solid = [Int](repeating: s.count, count: s.count + 1)
        for i in stride(from: s.count - 1, through: 0, by: -1) { solid[i] = s[i].properties.isWhitespace ? solid[i + 1] : i }
        func blank(_ c: Chunk) -> Bool { solid[c.lowerBound] >= c.upperBound }
        while k < chunks.count {
            var line: [Chunk] = [], length = 0
            if blank(chunks[k]) && !lines.isEmpty { k += 1 }
            while k < chunks.count && length + chunks[k].count <= width {
                line.append(chunks[k])
                length += chunks[k].count
                k += 1
            }
            if k < chunks.count && chunks[k].count > width {
                let spaceLeft = width - length
                let c = chunks[k]
                if breakLong {
                    var end = spaceLeft
                    if breakOnHyphens && c.count > spaceLeft,
                       let hyphen = s[c.lowerBound..<(c.lowerBound + spaceLeft)].lastIndex(of: "-").map({ $0 - c.lowerBound }),
                       hyphen > 0 && s[c.lowerBound..<(c.lowerBound + hyphen)].contains(where: { $0 != "-" }) {
                        end = hyphen + 1
                    }
                    line.append(c.lowerBound..<(c.lowerBound + end))
                    chunks[k] = (c.lowerBound + end)..<c.upperBound
                } else if line.isEmpty {
                    line.append(c)
                    k += 1
                }
            }
            if let last = line.last, blank(last) { line.removeLast() }
            if !line.isEmpty { lines.append(line) }
        }
        return lines
    }
}
