import Foundation
import Tokenizers

/// The globals, filters, tests and methods chat templates call, with the meaning Jinja and
/// Python give them (transformers adds `raise_exception`, `strftime_now` and a `tojson` that is
/// `json.dumps(x, ensure_ascii=False)`).
enum JinjaBuiltins {
    typealias Args = [JinjaValue]
    typealias KW = [(String, JinjaValue)]

    static func kw(_ kwargs: KW, _ name: String) -> JinjaValue? { kwargs.first { $0.0 == name }?.1 }
    static func arg(_ args: Args, _ kwargs: KW, _ i: Int, _ name: String) -> JinjaValue? {
        i < args.count ? args[i] : kw(kwargs, name)
    }

    static func globals(_ r: JinjaInterpreter) -> [String: JinjaFunction] {
        [
            "raise_exception": JinjaFunction(name: "raise_exception") { args, _ in
                throw TemplateError(args.first?.text ?? "raise_exception", line: r.line, raised: true)
            },
            "namespace": JinjaFunction(name: "namespace") { args, kwargs in
                var o = JinjaObject()
                if case .object(let init_)? = args.first { for (k, v) in init_.pairs { o[k] = v } }
                for (k, v) in kwargs { o[k] = v }
                return .namespace(JinjaNamespace(o))
            },
            "dict": JinjaFunction(name: "dict") { _, kwargs in .object(JinjaObject(kwargs)) },
            "range": JinjaFunction(name: "range") { args, _ in
                let n = args.compactMap(\.intValue)
                guard n.count == args.count, !n.isEmpty, n.count <= 3 else { throw r.error("range() takes 1 to 3 integers") }
                let (start, stop, step) = n.count == 1 ? (0, n[0], 1) : (n[0], n[1], n.count == 3 ? n[2] : 1)
                guard step != 0 else { throw r.error("range() step must not be zero") }
                return .array(stride(from: start, to: stop, by: step).map { .int($0) })
            },
            "strftime_now": JinjaFunction(name: "strftime_now") { args, _ in
                var t = time(nil)
                var tmv = tm()
                localtime_r(&t, &tmv)
                var buf = [Int8](repeating: 0, count: 256)
                let n = strftime(&buf, buf.count, args.first?.text ?? "%Y-%m-%d", &tmv)
                return .string(String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self))
            },
        ]
    }

    // MARK: filters

    static func filter(_ r: JinjaInterpreter, _ name: String, _ v: JinjaValue, _ args: Args, _ kwargs: KW) throws -> JinjaValue {
        func str(_ x: JinjaValue) throws -> String {
            if case .undefined(let n) = x { throw r.error("\(n) is undefined (filter \(name))") }
            return x.text
        }
        switch name {
        case "default", "d":
            let fallback = arg(args, kwargs, 0, "default_value") ?? .string("")
            let boolean = arg(args, kwargs, 1, "boolean")?.truthy ?? false
            if v.isUndefined || (boolean && !v.truthy) { return fallback }
            return v
        case "trim":
            if let chars = arg(args, kwargs, 0, "chars"), case .string(let c) = chars { return .string(strip(try str(v), Set(c), left: true, right: true)) }
            return .string(pyStrip(try str(v), left: true, right: true))
        case "length", "count":
            switch v {
            case .string(let s): return .int(s.unicodeScalars.count)
            case .array(let a), .tuple(let a): return .int(a.count)
            case .object(let o): return .int(o.count)
            case .undefined(let n): throw r.error("\(n) is undefined (filter length)")
            default: throw r.error("object of type \(v.typeName) has no len()")
            }
        case "tojson":
            var indent: String? = nil
            if let i = arg(args, kwargs, 0, "indent") {
                if let n = i.intValue { indent = String(repeating: " ", count: n) } else if case .string(let s) = i { indent = s }
            }
            do { return .string(try JinjaJSON.dump(v, indent: indent, sortKeys: kw(kwargs, "sort_keys")?.truthy ?? false)) }
            catch let e as TemplateError { throw r.error(e.message) }
        case "upper": return .string(try str(v).uppercased())
        case "lower": return .string(try str(v).lowercased())
        case "capitalize": return .string(capitalize(try str(v)))
        case "title": return .string(title(try str(v)))
        case "string": return .string(v.text)
        case "safe", "escape", "e", "forceescape":
            if name == "safe" { return v }
            return .string(try str(v).replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
                .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&#34;").replacingOccurrences(of: "'", with: "&#39;"))
        case "first":
            let items = try r.iterate(v)
            return items.first ?? .undefined("first of an empty sequence")
        case "last":
            let items = try r.iterate(v)
            return items.last ?? .undefined("last of an empty sequence")
        case "list": return .array(try r.iterate(v))
        case "join":
            let sep = arg(args, kwargs, 0, "d")?.text ?? ""
            var items = try r.iterate(v)
            if let a = kw(kwargs, "attribute") ?? (args.count > 1 ? args[1] : nil) {
                items = try items.map { try r.attribute($0, a.text, describing: .name("item")) }
            }
            return .string(items.map(\.text).joined(separator: sep))
        case "replace":
            guard args.count >= 2 else { throw r.error("replace needs old and new") }
            return .string(pyReplace(try str(v), args[0].text, args[1].text, count: args.count > 2 ? args[2].intValue ?? -1 : -1))
        case "int":
            switch v {
            case .int: return v
            case .double(let d): return .int(Int(d))
            case .bool(let b): return .int(b ? 1 : 0)
            case .string(let s): return .int(Int(s.trimmingCharacters(in: .whitespaces)) ?? Double(s).map { Int($0) } ?? (arg(args, kwargs, 0, "default")?.intValue ?? 0))
            default: return arg(args, kwargs, 0, "default") ?? .int(0)
            }
        case "float":
            if let d = v.number { return .double(d) }
            if case .string(let s) = v, let d = Double(s.trimmingCharacters(in: .whitespaces)) { return .double(d) }
            return arg(args, kwargs, 0, "default") ?? .double(0)
        case "abs":
            if case .int(let i) = v { return .int(abs(i)) }
            if let d = v.number { return .double(abs(d)) }
            throw r.error("bad operand type for abs(): \(v.typeName)")
        case "round":
            let precision = arg(args, kwargs, 0, "precision")?.intValue ?? 0
            guard let d = v.number else { throw r.error("round needs a number") }
            let m = pow(10.0, Double(precision))
            return .double((d * m).rounded(.toNearestOrEven) / m)
        case "reverse":
            if case .string(let s) = v { return .string(String(s.reversed())) }
            return .array(try r.iterate(v).reversed())
        case "sort":
            let reverse = arg(args, kwargs, 0, "reverse")?.truthy ?? false
            let attribute = kw(kwargs, "attribute")?.text
            var items = try r.iterate(v)
            var failure: Error? = nil
            items.sort { a, b in
                do {
                    let x = try attribute.map { try r.attribute(a, $0, describing: .name("item")) } ?? a
                    let y = try attribute.map { try r.attribute(b, $0, describing: .name("item")) } ?? b
                    return try r.compare("<", x, y) != reverse
                } catch { failure = error; return false }
            }
            if let failure { throw failure }
            return .array(items)
        case "unique":
            var out: [JinjaValue] = []
            for x in try r.iterate(v) where !out.contains(where: { $0.equals(x) }) { out.append(x) }
            return .array(out)
        case "items", "dictsort":
            guard case .object(let o) = v else {
                if v.isUndefined { return .array([]) }
                throw r.error("\(name) needs a mapping, got \(v.typeName)")
            }
            var pairs = o.pairs
            if name == "dictsort" { pairs.sort { $0.0.lowercased() < $1.0.lowercased() } }
            return .array(pairs.map { .array([.string($0.0), $0.1]) })
        case "selectattr", "rejectattr", "select", "reject":
            let keep = name.hasPrefix("select")
            let byAttribute = name.hasSuffix("attr")
            var out: [JinjaValue] = []
            for x in try r.iterate(v) {
                var subject = x
                var rest = args
                if byAttribute {
                    guard let a = args.first else { throw r.error("\(name) needs an attribute name") }
                    subject = try r.attribute(x, a.text, describing: .name("item"))
                    rest = Array(args.dropFirst())
                }
                let ok: Bool
                if let t = rest.first { ok = try test(r, t.text, subject, Array(rest.dropFirst())) } else { ok = subject.truthy }
                if ok == keep { out.append(x) }
            }
            return .array(out)
        case "map":
            let items = try r.iterate(v)
            if let a = kw(kwargs, "attribute") {
                return .array(try items.map { x in
                    let y = try r.attribute(x, a.text, describing: .name("item"))
                    if y.isUndefined, let d = kw(kwargs, "default") { return d }
                    return y
                })
            }
            guard let f = args.first else { throw r.error("map needs a filter name or attribute=") }
            return .array(try items.map { try filter(r, f.text, $0, Array(args.dropFirst()), []) })
        case "indent":
            let width = arg(args, kwargs, 0, "width")
            let pad = width.flatMap { $0.intValue.map { String(repeating: " ", count: $0) } ?? $0.text } ?? "    "
            let first = arg(args, kwargs, 1, "first")?.truthy ?? false
            let blank = arg(args, kwargs, 2, "blank")?.truthy ?? false
            let lines = try str(v).components(separatedBy: "\n")
            return .string(lines.enumerated().map { i, l in
                (i == 0 && !first) || (l.isEmpty && !blank) ? l : pad + l
            }.joined(separator: "\n"))
        case "wordcount": return .int(try str(v).split(whereSeparator: { $0.isWhitespace }).count)
        case "sum":
            var total: JinjaValue = .int(0)
            for x in try r.iterate(v) { total = try r.binary("+", total, x) }
            return total
        case "min", "max":
            let items = try r.iterate(v)
            guard var best = items.first else { return .undefined("\(name) of an empty sequence") }
            for x in items.dropFirst() where try r.compare(name == "min" ? "<" : ">", x, best) { best = x }
            return best
        case "batch", "slice", "groupby", "truncate", "urlize", "format", "xmlattr", "filesizeformat", "pprint", "random", "center":
            throw r.error("filter \(name) is not supported")
        default:
            throw r.error("no filter named \(name)")
        }
    }

    // MARK: tests

    static func test(_ r: JinjaInterpreter, _ name: String, _ v: JinjaValue, _ args: Args) throws -> Bool {
        switch name {
        case "defined": return !v.isUndefined
        case "undefined": return v.isUndefined
        case "none": if case .none = v { return true }; return false
        case "string": if case .string = v { return true }; return false
        case "number": if case .int = v { return true }; if case .double = v { return true }; return false
        case "integer": if case .int = v { return true }; return false
        case "float": if case .double = v { return true }; return false
        case "boolean": if case .bool = v { return true }; return false
        case "true": if case .bool(true) = v { return true }; return false
        case "false": if case .bool(false) = v { return true }; return false
        case "mapping": if case .object = v { return true }; return false
        case "sequence", "iterable":
            switch v {
            case .string, .array, .tuple, .object: return true
            default: return false
            }
        case "callable": if case .function = v { return true }; return false
        case "odd", "even":
            guard let i = v.intValue else { throw r.error("\(name) needs an integer") }
            return (i % 2 != 0) == (name == "odd")
        case "divisibleby":
            guard let i = v.intValue, let d = args.first?.intValue, d != 0 else { throw r.error("divisibleby needs integers") }
            return i % d == 0
        case "eq", "equalto", "==": return v.equals(args.first ?? .none)
        case "ne", "!=": return !v.equals(args.first ?? .none)
        case "lt", "lessthan", "<": return try r.compare("<", v, args.first ?? .none)
        case "le", "<=": return try r.compare("<=", v, args.first ?? .none)
        case "gt", "greaterthan", ">": return try r.compare(">", v, args.first ?? .none)
        case "ge", ">=": return try r.compare(">=", v, args.first ?? .none)
        case "in": return try r.contains(args.first ?? .none, v)
        case "sameas":
            switch (v, args.first ?? .none) {
            case (.none, .none): return true
            case (.bool(let a), .bool(let b)): return a == b
            default: return false
            }
        case "lower": if case .string(let s) = v { return s == s.lowercased() }; return false
        case "upper": if case .string(let s) = v { return s == s.uppercased() }; return false
        default: throw r.error("no test named \(name)")
        }
    }

    // MARK: methods

    /// Python's str, dict and list methods that templates call (`content.strip()`, `message.get('x')`...).
    static func method(_ r: JinjaInterpreter, _ v: JinjaValue, _ name: String) -> JinjaFunction? {
        func f(_ body: @escaping (Args, KW) throws -> JinjaValue) -> JinjaFunction { JinjaFunction(name: name, call: body) }
        switch v {
        case .string(let s):
            switch name {
            case "strip", "lstrip", "rstrip":
                return f { args, _ in
                    let (l, rr) = (name != "rstrip", name != "lstrip")
                    if case .string(let c)? = args.first { return .string(strip(s, Set(c), left: l, right: rr)) }
                    return .string(pyStrip(s, left: l, right: rr))
                }
            case "startswith", "endswith":
                return f { args, _ in
                    let options: [String]
                    switch args.first {
                    case .string(let p)?: options = [p]
                    case .array(let a)?, .tuple(let a)?: options = a.map(\.text)
                    default: throw r.error("\(name) needs a string or a tuple of strings")
                    }
                    let scalars = Array(s.unicodeScalars)
                    return .bool(options.contains { p in
                        let ps = Array(p.unicodeScalars)
                        return name == "startswith" ? scalars.starts(with: ps) : scalars.reversed().starts(with: ps.reversed())
                    })
                }
            case "split", "rsplit":
                return f { args, kwargs in
                    let sep = arg(args, kwargs, 0, "sep")
                    let maxsplit = arg(args, kwargs, 1, "maxsplit")?.intValue ?? -1
                    return .array(pySplit(s, sep: sep.flatMap { if case .none = $0 { return nil }; return $0.text }, maxsplit: maxsplit,
                                          fromRight: name == "rsplit").map { .string($0) })
                }
            case "splitlines": return f { _, _ in .array(s.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).map { .string(String($0)) }.dropLast(s.last?.isNewline == true ? 1 : 0)) }
            case "upper": return f { _, _ in .string(s.uppercased()) }
            case "lower": return f { _, _ in .string(s.lowercased()) }
            case "title": return f { _, _ in .string(title(s)) }
            case "capitalize": return f { _, _ in .string(capitalize(s)) }
            case "replace":
                return f { args, _ in
                    guard args.count >= 2 else { throw r.error("replace() needs old and new") }
                    return .string(pyReplace(s, args[0].text, args[1].text, count: args.count > 2 ? args[2].intValue ?? -1 : -1))
                }
            case "find", "index", "rfind":
                return f { args, _ in
                    let sub = Array((args.first?.text ?? "").unicodeScalars), hay = Array(s.unicodeScalars)
                    var found = -1
                    if sub.count <= hay.count {
                        let range = Array(0...(hay.count - sub.count))
                        for i in (name == "rfind" ? range.reversed() : range) where Array(hay[i..<(i + sub.count)]) == sub { found = i; break }
                    }
                    if found < 0 && name == "index" { throw r.error("substring not found") }
                    return .int(found)
                }
            case "count": return f { args, _ in .int(max(0, s.components(separatedBy: args.first?.text ?? "").count - 1)) }
            case "join": return f { args, _ in .string(try r.iterate(args.first ?? .array([])).map(\.text).joined(separator: s)) }
            case "isdigit": return f { _, _ in .bool(!s.isEmpty && s.allSatisfy { $0.isNumber }) }
            case "isspace": return f { _, _ in .bool(!s.isEmpty && s.allSatisfy { $0.isWhitespace }) }
            case "format":
                return f { args, _ in
                    var out = "", i = 0, rest = Substring(s)
                    while let open = rest.range(of: "{}") { out += rest[..<open.lowerBound] + (i < args.count ? args[i].text : ""); i += 1; rest = rest[open.upperBound...] }
                    return .string(out + rest)
                }
            default: return nil
            }
        case .object(let o):
            switch name {
            case "items": return f { _, _ in .array(o.pairs.map { .array([.string($0.0), $0.1]) }) }
            case "keys": return f { _, _ in .array(o.keys.map { .string($0) }) }
            case "values": return f { _, _ in .array(o.pairs.map(\.1)) }
            case "get": return f { args, _ in o[args.first?.text ?? ""] ?? (args.count > 1 ? args[1] : .none) }
            default: return nil
            }
        case .array(let a), .tuple(let a):
            switch name {
            case "index": return f { args, _ in
                guard let i = a.firstIndex(where: { $0.equals(args.first ?? .none) }) else { throw r.error("value is not in list") }
                return .int(i)
            }
            case "count": return f { args, _ in .int(a.filter { $0.equals(args.first ?? .none) }.count) }
            default: return nil
            }
        default: return nil
        }
    }

    // MARK: Python string helpers

    static func pyStrip(_ s: String, left: Bool, right: Bool) -> String {
        var u = Array(s.unicodeScalars)
        if right { while let l = u.last, l.properties.isWhitespace { u.removeLast() } }
        var start = 0
        if left { while start < u.count && u[start].properties.isWhitespace { start += 1 } }
        var v = String.UnicodeScalarView()
        v.append(contentsOf: u[start...])
        return String(v)
    }

    static func strip(_ s: String, _ chars: Set<Character>, left: Bool, right: Bool) -> String {
        var c = Array(s)
        if right { while let l = c.last, chars.contains(l) { c.removeLast() } }
        var start = 0
        if left { while start < c.count && chars.contains(c[start]) { start += 1 } }
        return String(c[start...])
    }

    static func pySplit(_ s: String, sep: String?, maxsplit: Int, fromRight: Bool) -> [String] {
        guard let sep else {
            var parts = s.split(whereSeparator: { $0.isWhitespace }).map(String.init)
            if maxsplit >= 0 && parts.count > maxsplit + 1 {
                // Rejoining loses the original spacing only in the rare maxsplit case.
                if fromRight {
                    let head = parts[0..<(parts.count - maxsplit)].joined(separator: " ")
                    parts = [head] + parts[(parts.count - maxsplit)...]
                } else {
                    parts = Array(parts[0..<maxsplit]) + [parts[maxsplit...].joined(separator: " ")]
                }
            }
            return parts
        }
        var parts = s.components(separatedBy: sep)
        if maxsplit >= 0 && parts.count > maxsplit + 1 {
            if fromRight {
                parts = [parts[0..<(parts.count - maxsplit)].joined(separator: sep)] + parts[(parts.count - maxsplit)...]
            } else {
                parts = Array(parts[0..<maxsplit]) + [parts[maxsplit...].joined(separator: sep)]
            }
        }
        return parts
    }

    static func pyReplace(_ s: String, _ old: String, _ new: String, count: Int) -> String {
        if count < 0 { return s.replacingOccurrences(of: old, with: new) }
        var out = "", rest = Substring(s), n = 0
        while n < count, let r = rest.range(of: old) { out += rest[..<r.lowerBound] + new; rest = rest[r.upperBound...]; n += 1 }
        return out + rest
    }

    static func capitalize(_ s: String) -> String {
        guard let f = s.first else { return s }
        return f.uppercased() + s.dropFirst().lowercased()
    }

    static func title(_ s: String) -> String {
        var out = "", prevLetter = false
        for c in s {
            out += prevLetter ? c.lowercased() : c.uppercased()
            prevLetter = c.isLetter
        }
        return out
    }
}
