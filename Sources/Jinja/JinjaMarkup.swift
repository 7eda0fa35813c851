import Foundation
import Tokenizers

/// markupsafe's Markup, which `|safe` and `|escape` return. Autoescaping is off in
/// transformers' environment, so printing one prints its text; what changes is that a Markup
/// escapes the strings it is combined with: `Markup + str` and `str + Markup` escape the str
/// and stay Markup, as do `Markup % args` and the `join`, `replace` and `format` methods (their
/// arguments), while `~` and most filters give plain strings. Templates hit this when they mix
/// `'...'|safe + x` (meetkai functionary).
enum JinjaMarkup {
    /// markupsafe's escape: & < > " ' as &amp; &lt; &gt; &#34; &#39;.
    static func escape(_ s: String) -> String {
        guard s.utf8.contains(where: { $0 == 0x26 || $0 == 0x3C || $0 == 0x3E || $0 == 0x22 || $0 == 0x27 }) else { return s }
        var out = ""
        out.reserveCapacity(s.utf8.count + 16)
        for u in s.unicodeScalars {
            switch u {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&#34;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(u)
            }
        }
        return out
    }

    /// The UTF-8 size of `escape(s)`, known before it is built.
    static func escapedSize(_ s: String) -> Int {
        s.utf8.reduce(0) { n, b in
            switch b {
            case 0x26: return n + 5
            case 0x3C, 0x3E: return n + 4
            case 0x22, 0x27: return n + 5
            default: return n + 1
            }
        }
    }

    /// `escape(x)`: a Markup unchanged, anything else its text escaped (sized first).
    static func escape(_ r: JinjaInterpreter, _ v: JinjaValue) throws -> JinjaValue {
        if case .markup = v { return v }
        let s = try r.text(v)
        try r.reserveString(escapedSize(s))
        return .markup(escape(s))
    }

    /// `a + b` where one side is a Markup and the other a str (nil otherwise).
    static func add(_ r: JinjaInterpreter, _ a: JinjaValue, _ b: JinjaValue) throws -> JinjaValue? {
        switch (a, b) {
        case (.markup(let x), .markup(let y)): return try r.concatenate(x, y).asMarkup
        case (.markup(let x), .string(let y)):
            try r.reserveString(x.utf8.count + escapedSize(y))
            return .markup(x + escape(y))
        case (.string(let x), .markup(let y)):
            try r.reserveString(escapedSize(x) + y.utf8.count)
            return .markup(escape(x) + y)
        default: return nil
        }
    }

    /// The filters whose result stays a Markup when given one (jinja2's `soft_str` keeps it).
    static let keepingFilters: Set<String> = ["upper", "lower", "capitalize", "trim", "string", "center", "indent",
                                              "truncate", "reverse", "default", "d", "safe"]

    /// A filter applied to a Markup: escape and safe keep it; forceescape escapes it again;
    /// the rest see its text and re-wrap the result where jinja2 keeps the Markup.
    static func filter(_ r: JinjaInterpreter, _ name: String, _ s: String, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws -> JinjaValue {
        switch name {
        case "escape", "e", "safe": return .markup(s)
        case "forceescape": return try escape(r, .string(s))
        case "format": return .markup(try JinjaBuiltins.formatFilter(r, s, args, kwargs, escaping: true))
        default:
            let result = try JinjaBuiltins.filter(r, name, .string(s), args, kwargs)
            return keepingFilters.contains(name) ? result.asMarkup : result
        }
    }

    /// A str method called on a Markup: its string arguments (and `join`'s items) escaped
    /// first, its string results (and lists of them) Markup.
    static func method(_ r: JinjaInterpreter, _ s: String, _ name: String) -> JinjaFunction? {
        guard let m = JinjaBuiltins.method(r, .string(s), name) else { return nil }
        return JinjaFunction(name: name) { args, kwargs in
            let escaped: [JinjaValue]
            if name == "join", let items = args.first {
                escaped = [.array(try r.iterate(items).map { try escape(r, $0).plainString.map(JinjaValue.string) ?? $0 })]
            } else {
                escaped = try args.map { $0.isString ? .string(try escape(r, $0).plainString ?? "") : $0 }
            }
            let result = try m.call(escaped, kwargs)
            if case .array(let items) = result { return .array(items.map(\.asMarkup)) }
            return result.asMarkup
        }
    }

    /// markupsafe's `striptags`: from the left, each `<!-- ... -->` comment and `<...>` tag
    /// removed, up to the first one left open; whitespace collapsed, entities unescaped; a plain str.
    static func striptags(_ s: String) -> String {
        let u = Array(s.unicodeScalars)
        var kept = String.UnicodeScalarView(), pos = 0
        let comment = Array("<!--".unicodeScalars)
        while let start = u[pos...].firstIndex(of: "<") {
            let end: Int
            if u[start...].starts(with: comment) {
                guard let close = (start + 4..<max(u.count - 2, start + 4)).first(where: { u[$0] == "-" && u[$0 + 1] == "-" && u[$0 + 2] == ">" }) else { break }
                end = close + 3
            } else {
                guard let close = u[start...].firstIndex(of: ">") else { break }
                end = close + 1
            }
            kept.append(contentsOf: u[pos..<start])
            pos = end
        }
        kept.append(contentsOf: u[pos...])
        let words = JinjaBuiltins.pySplit(String(kept), sep: nil, maxsplit: -1, fromRight: false)
        return unescape(words.joined(separator: " "))
    }

    /// The entities `striptags` and `unescape` turn back: the five escape() makes, &apos;,
    /// &nbsp; and numeric ones (html.unescape knows more names; others stay as they are).
    static func unescape(_ s: String) -> String {
        guard s.contains("&") else { return s }
        let named: [String: String] = ["amp": "&", "lt": "<", "gt": ">", "quot": "\"", "apos": "'", "nbsp": "\u{A0}"]
        var out = "", rest = Substring(s)
        while let amp = rest.firstIndex(of: "&") {
            out += rest[..<amp]
            let after = rest[rest.index(after: amp)...]
            guard let semi = after.prefix(32).firstIndex(of: ";") else { out += "&"; rest = after; continue }
            let name = after[..<semi]
            var replacement: String? = named[String(name)]
            if replacement == nil, name.hasPrefix("#") {
                let digits = name.dropFirst()
                let code = digits.first == "x" || digits.first == "X" ? UInt32(digits.dropFirst(), radix: 16) : UInt32(digits)
                replacement = code.flatMap { Unicode.Scalar($0) }.map { String($0) }
            }
            if let replacement { out += replacement; rest = after[after.index(after: semi)...] } else { out += "&"; rest = after }
        }
        return out + rest
    }
}

extension JinjaValue {
    var isMarkup: Bool { if case .markup = self { return true }; return false }
    /// A str as Markup (other values unchanged).
    var asMarkup: JinjaValue { if case .string(let s) = self { return .markup(s) }; return self }
}
