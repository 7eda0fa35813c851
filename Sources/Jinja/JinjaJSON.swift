import Foundation
import Tokenizers

/// JSON in and out of templates with Python's meaning: objects keep their key order (Python's
/// `json.loads`), and `tojson` writes what `json.dumps(x, ensure_ascii=False)` writes.
enum JinjaJSON {
    struct ParseError: Error, CustomStringConvertible {
        let offset: Int
        let message: String
        var description: String { "\(message) at character \(offset)" }
    }

    static func parse(_ text: String) throws -> JinjaValue {
        var p = Parser(Array(text.utf8))
        p.skip()
        let v = try p.value()
        p.skip()
        guard p.at == p.bytes.count else { throw ParseError(offset: p.at, message: "extra text after the JSON value") }
        return v
    }

    struct Parser {
        let bytes: [UInt8]
        var at = 0
        /// Arrays and objects open around the current value: deep input fails instead of
        /// exhausting the stack.
        var depth = 0
        init(_ b: [UInt8]) { bytes = b }

        mutating func enter() throws {
            depth += 1
            guard depth <= JinjaLimits.default.maxValueDepth else {
                throw fail("arrays and objects nest deeper than \(JinjaLimits.default.maxValueDepth) levels (JinjaLimits.maxValueDepth)")
            }
        }

        mutating func skip() { while at < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[at]) { at += 1 } }

        func fail(_ m: String) -> ParseError { ParseError(offset: at, message: m) }

        mutating func literal(_ word: String, _ v: JinjaValue) throws -> JinjaValue {
            let w = Array(word.utf8)
            guard at + w.count <= bytes.count, Array(bytes[at..<(at + w.count)]) == w else { throw fail("unexpected character") }
            at += w.count
            return v
        }

        mutating func value() throws -> JinjaValue {
            guard at < bytes.count else { throw fail("unexpected end of JSON") }
            switch bytes[at] {
            case 0x7B: // {
                at += 1
                try enter()
                defer { depth -= 1 }
                var o = JinjaObject()
                skip()
                if at < bytes.count && bytes[at] == 0x7D { at += 1; return .object(o) }
                while true {
                    skip()
                    guard at < bytes.count, bytes[at] == 0x22 else { throw fail("expected a string key") }
                    let k = try string()
                    skip()
                    guard at < bytes.count, bytes[at] == 0x3A else { throw fail("expected ':'") }
                    at += 1
                    skip()
                    o[k] = try value()
                    skip()
                    guard at < bytes.count else { throw fail("unterminated object") }
                    if bytes[at] == 0x2C { at += 1; continue }
                    if bytes[at] == 0x7D { at += 1; return .object(o) }
                    throw fail("expected ',' or '}'")
                }
            case 0x5B: // [
                at += 1
                try enter()
                defer { depth -= 1 }
                var a: [JinjaValue] = []
                skip()
                if at < bytes.count && bytes[at] == 0x5D { at += 1; return .array(a) }
                while true {
                    skip()
                    a.append(try value())
                    skip()
                    guard at < bytes.count else { throw fail("unterminated array") }
                    if bytes[at] == 0x2C { at += 1; continue }
                    if bytes[at] == 0x5D { at += 1; return .array(a) }
                    throw fail("expected ',' or ']'")
                }
            case 0x22: return .string(try string())
            case 0x74: return try literal("true", .bool(true))
            case 0x66: return try literal("false", .bool(false))
            case 0x6E: return try literal("null", .none)
            default: return try number()
            }
        }

        mutating func number() throws -> JinjaValue {
            let start = at
            var isFloat = false
            if at < bytes.count && bytes[at] == 0x2D { at += 1 }
            while at < bytes.count {
                let c = bytes[at]
                if c >= 0x30 && c <= 0x39 { at += 1 } else if c == 0x2E || c == 0x65 || c == 0x45 || c == 0x2B || c == 0x2D { isFloat = true; at += 1 } else { break }
            }
            let s = String(decoding: bytes[start..<at], as: UTF8.self)
            if !isFloat, let i = Int(s) { return .int(i) }
            guard let d = Double(s), !s.isEmpty else { at = start; throw fail("unexpected character") }
            return .double(d)
        }

        mutating func string() throws -> String {
            at += 1
            var out = [UInt8]()
            while true {
                guard at < bytes.count else { throw fail("unterminated string") }
                let c = bytes[at]
                at += 1
                if c == 0x22 { break }
                if c != 0x5C { out.append(c); continue }
                guard at < bytes.count else { throw fail("unterminated string") }
                let e = bytes[at]
                at += 1
                switch e {
                case 0x22: out.append(0x22)
                case 0x5C: out.append(0x5C)
                case 0x2F: out.append(0x2F)
                case 0x62: out.append(8)
                case 0x66: out.append(12)
                case 0x6E: out.append(10)
                case 0x72: out.append(13)
                case 0x74: out.append(9)
                case 0x75:
                    var code = try hex4()
                    if code >= 0xD800 && code < 0xDC00, at + 1 < bytes.count, bytes[at] == 0x5C, bytes[at + 1] == 0x75 {
                        at += 2
                        let low = try hex4()
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    }
                    out += Array(String(Character(Unicode.Scalar(code) ?? "\u{FFFD}")).utf8)
                default: throw fail("bad escape")
                }
            }
            return String(decoding: out, as: UTF8.self)
        }

        mutating func hex4() throws -> UInt32 {
            guard at + 4 <= bytes.count, let v = UInt32(String(decoding: bytes[at..<(at + 4)], as: UTF8.self), radix: 16) else {
                throw fail("bad \\u escape")
            }
            at += 4
            return v
        }
    }

    /// json.dumps' options that transformers' `tojson` passes on.
    struct Options {
        var ensureASCII = false
        var indent: String? = nil
        var separators: (item: String, key: String)? = nil
        var sortKeys = false
    }

    /// `json.dumps(v, ensure_ascii=False, indent=indent, sort_keys=sortKeys)`, failing (instead of
    /// allocating) once the text would pass `maxBytes` or the value nests past `maxDepth`.
    static func dump(_ v: JinjaValue, indent: String? = nil, sortKeys: Bool = false,
                     maxBytes: Int = .max, maxDepth: Int = JinjaValue.reprDepth) throws -> String {
        try dump(v, Options(indent: indent, sortKeys: sortKeys), maxBytes: maxBytes, maxDepth: maxDepth)
    }

    /// `json.dumps(v, **options)` within `maxBytes` and `maxDepth`.
    static func dump(_ v: JinjaValue, _ options: Options, maxBytes: Int = .max, maxDepth: Int = JinjaValue.reprDepth) throws -> String {
        var w = Writer(options: options, maxBytes: maxBytes, maxDepth: maxDepth)
        try w.value(v, level: 0)
        return w.out
    }

    struct Writer {
        let options: Options
        let maxBytes: Int
        let maxDepth: Int
        var out = ""
        var indent: String? { options.indent }
        /// Python's defaults: ", " between items, ": " after keys; "," with an indent.
        var itemSeparator: String { options.separators?.item ?? (indent == nil ? ", " : ",") }
        var keySeparator: String { options.separators?.key ?? ": " }
        func quote(_ s: String) -> String { JinjaJSON.quote(s, ascii: options.ensureASCII) }

        mutating func append(_ s: String) throws {
            guard s.utf8.count <= maxBytes - out.utf8.count else {
                throw TemplateError("tojson: the JSON text would pass \(maxBytes) bytes (JinjaLimits.maxStringBytes)", line: 0)
            }
            out += s
        }

        /// A newline and `level` indents (nothing without indent=).
        mutating func newline(_ level: Int) throws {
            guard let indent else { return }
            try append("\n")
            for _ in 0..<level { try append(indent) }
        }

        mutating func value(_ v: JinjaValue, level: Int) throws {
            guard level <= maxDepth else { throw TemplateError("tojson: the value nests deeper than \(maxDepth) levels", line: 0) }
            switch v {
            case .undefined: throw TemplateError("Object of type Undefined is not JSON serializable", line: 0)
            case .none: try append("null")
            case .bool(let b): try append(b ? "true" : "false")
            case .int(let i): try append(String(i))
            case .double(let d): try append(JinjaJSON.number(d))
            case .string(let s), .markup(let s): try append(quote(s))
            case .iterator(let it): throw TemplateError("Object of type \(it.typeName) is not JSON serializable", line: 0)
            case .array(let a), .tuple(let a):
                if a.isEmpty { try append("[]"); return }
                try append("[")
                for (i, x) in a.enumerated() {
                    if i > 0 { try append(itemSeparator) }
                    try newline(level + 1)
                    try value(x, level: level + 1)
                }
                try newline(level)
                try append("]")
            case .object(let o): try object(o, level: level)
            case .namespace: throw TemplateError("Object of type Namespace is not JSON serializable", line: 0)
            case .function(let f): throw TemplateError("Object of type function (\(f.name)) is not JSON serializable", line: 0)
            }
        }

        mutating func object(_ o: JinjaObject, level: Int) throws {
            if o.count == 0 { try append("{}"); return }
            var pairs = try o.pairs.map { (try JinjaJSON.key($0.0), $0.0, $0.1) }
            if options.sortKeys { try JinjaJSON.sortByKey(&pairs) }
            try append("{")
            for (i, (k, _, x)) in pairs.enumerated() {
                if i > 0 { try append(itemSeparator) }
                try newline(level + 1)
                try append(quote(k) + keySeparator)
                try value(x, level: level + 1)
            }
            try newline(level)
            try append("}")
        }
    }

    static func number(_ d: Double) -> String {
        if d.isNaN { return "NaN" }
        if d.isInfinite { return d > 0 ? "Infinity" : "-Infinity" }
        return JinjaValue.pythonFloat(d)
    }

    /// A dict key as `json.dumps` writes it: strings as they are, numbers, booleans and None
    /// as their JSON text; other keys are refused.
    static func key(_ k: JinjaValue) throws -> String {
        switch k {
        case .string(let s), .markup(let s): return s
        case .int(let i): return String(i)
        case .double(let d): return number(d)
        case .bool(let b): return b ? "true" : "false"
        case .none: return "null"
        default: throw TemplateError("keys must be str, int, float, bool or None, not \(k.typeName)", line: 0)
        }
    }

    /// sort_keys=True: Python sorts the original keys, so strings and numbers do not mix.
    static func sortByKey(_ pairs: inout [(String, JinjaValue, JinjaValue)]) throws {
        var failure: Error? = nil
        pairs.sort { a, b in
            do { return try JinjaValue.less(a.1, b.1) } catch { failure = error; return false }
        }
        if let failure { throw failure }
    }

    /// A JSON string as Python writes it; with `ascii` (ensure_ascii) every code point outside
    /// space...~ is a \\u escape, those past U+FFFF as a surrogate pair.
    static func quote(_ s: String, ascii: Bool = false) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if u.value < 0x20 || (ascii && u.value > 0x7E) {
                    if u.value > 0xFFFF {
                        let v = u.value - 0x10000
                        out += hex4(0xD800 + (v >> 10)) + hex4(0xDC00 + (v & 0x3FF))
                    } else {
                        out += hex4(u.value)
                    }
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }

    static func hex4(_ v: UInt32) -> String {
        let h = String(v, radix: 16)
        return "\\u" + String(repeating: "0", count: 4 - h.count) + h
    }
}
