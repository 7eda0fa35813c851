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

    /// An optional argument, None counting as not given.
    static func notNone(_ v: JinjaValue?) -> JinjaValue? {
        if case .none? = v { return nil }
        return v
    }

    static func globals(_ r: JinjaInterpreter) -> [String: JinjaFunction] {
        [
            "raise_exception": JinjaFunction(name: "raise_exception") { args, _ in
                throw TemplateError(try r.text(args.first) ?? "raise_exception", line: r.line, raised: true)
            },
            "namespace": JinjaFunction(name: "namespace") { args, kwargs in
                var o = JinjaObject()
                if case .object(let init_)? = args.first { for (k, v) in init_.pairs { o[k] = v } }
                for (k, v) in kwargs { o[k] = v }
                let ns = JinjaNamespace(o)
                r.namespaces.append(ns)
                return .namespace(ns)
            },
            "dict": JinjaFunction(name: "dict") { _, kwargs in .object(JinjaObject(kwargs)) },
            "range": JinjaFunction(name: "range") { args, _ in try range(r, args) },
            "strftime_now": JinjaFunction(name: "strftime_now") { args, _ in
                var t = time(nil)
                var tmv = tm()
                localtime_r(&t, &tmv)
                var buf = [Int8](repeating: 0, count: 256)
                let n = strftime(&buf, buf.count, try r.text(args.first) ?? "%Y-%m-%d", &tmv)
                return .string(String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self))
            },
        ]
    }

    /// `range(stop)`, `range(start, stop[, step])`, its length known (without overflow) before
    /// any number is made.
    static func range(_ r: JinjaInterpreter, _ args: Args) throws -> JinjaValue {
        let n = args.compactMap(\.intValue)
        guard n.count == args.count, !n.isEmpty, n.count <= 3 else { throw r.error("range() takes 1 to 3 integers") }
        let (start, stop, step) = n.count == 1 ? (0, n[0], 1) : (n[0], n[1], n.count == 3 ? n[2] : 1)
        guard step != 0 else { throw r.error("range() arg 3 must not be zero") }
        // The distance between two Ints always fits in a UInt; so do the numbers made, one
        // step at a time.
        let span: UInt = step > 0 ? (stop > start ? UInt(bitPattern: stop &- start) : 0) : (start > stop ? UInt(bitPattern: start &- stop) : 0)
        let length = span == 0 ? 0 : (span - 1) / step.magnitude + 1
        guard length <= UInt(r.limits.maxRangeLength) else {
            throw r.limitError("range() of \(length) numbers", r.limits.maxRangeLength, "maxRangeLength")
        }
        try r.reserveList(Int(length))
        var out: [JinjaValue] = [], v = start
        for k in 0..<Int(length) {
            out.append(.int(v))
            if k + 1 < Int(length) { v = v &+ step }
        }
        return .array(out)
    }

    // MARK: filters

    /// A filter applied to `v`. An undefined value acts as Jinja's default Undefined: an empty
    /// string to the string filters, an empty sequence to the sequence ones; the filters
    /// that need a number or a mapping (and `tojson`, `indent`) raise on it, as Jinja does.
    static func filter(_ r: JinjaInterpreter, _ name: String, _ v: JinjaValue, _ args: Args, _ kwargs: KW) throws -> JinjaValue {
        if case .markup(let s) = v { return try JinjaMarkup.filter(r, name, s, args, kwargs) }
        if let x = try stringFilter(r, name, v, args, kwargs) { return x }
        if let x = try sequenceFilter(r, name, v, args, kwargs) { return x }
        if let x = try numberFilter(r, name, v, args, kwargs) { return x }
        switch name {
        case "default", "d":
            let fallback = arg(args, kwargs, 0, "default_value") ?? .string("")
            let boolean = arg(args, kwargs, 1, "boolean")?.truthy ?? false
            if v.isUndefined || (boolean && !v.truthy) { return fallback }
            return v
        case "tojson": return try tojson(r, v, args, kwargs)
        case "items": return items(r, v)
        case "dictsort": return try dictsort(r, v, args, kwargs)
        case "safe": return .markup(try r.text(v))
        case "escape", "e", "forceescape": return try JinjaMarkup.escape(r, v)
        case "striptags": return .string(JinjaMarkup.striptags(try r.text(v)))
        case "format": return .string(try formatFilter(r, try r.text(v), args, kwargs, escaping: false))
        case "wordwrap": return try TextWrap.wordwrap(r, v, args, kwargs)
        case "groupby", "urlize", "xmlattr", "filesizeformat", "pprint", "random", "urlencode":
            throw r.error("filter \(name) is not supported")
        default:
            throw r.error("no filter named \(name)")
        }
    }


    static func stringFilter(_ r: JinjaInterpreter, _ name: String, _ v: JinjaValue, _ args: Args, _ kwargs: KW) throws -> JinjaValue? {
        switch name {
        case "trim":
            if let chars = arg(args, kwargs, 0, "chars"), case .string(let c) = chars { return .string(strip(try r.text(v), Set(c), left: true, right: true)) }
            return .string(pyStrip(try r.text(v), left: true, right: true))
        case "upper": return .string(try r.text(v).uppercased())
        case "lower": return .string(try r.text(v).lowercased())
        case "capitalize": return .string(capitalize(try r.text(v)))
        case "title": return .string(title(try r.text(v)))
        case "string": return .string(try r.text(v))
        case "replace":
            guard args.count >= 2 else { throw r.error("replace needs old and new") }
            return .string(try pyReplace(r, try r.text(v), try r.text(args[0]), try r.text(args[1]), count: arg(args, kwargs, 2, "count")?.intValue ?? -1))
        case "wordcount": return .int(try r.text(v).split(whereSeparator: { $0.isWhitespace }).count)
        case "indent": return try indent(r, v, args, kwargs)
        case "center":
            let width = arg(args, kwargs, 0, "width")?.intValue ?? 80
            return .string(try center(r, try r.text(v), width))
        case "truncate": return try truncate(r, try r.text(v), args, kwargs)
        default: return nil
        }
    }

    /// `indent(width=4, first=False, blank=False)`: a negative width indents by nothing, as
    /// Python's `' ' * -5` is ''.
    static func indent(_ r: JinjaInterpreter, _ v: JinjaValue, _ args: Args, _ kwargs: KW) throws -> JinjaValue {
        guard case .string(let s) = v else {
            if case .undefined(let n) = v { throw r.error("'\(n)' is undefined (filter indent)") }
            throw r.error("indent needs a string, not \(v.typeName)")
        }
        let width = arg(args, kwargs, 0, "width") ?? .int(4)
        let first = arg(args, kwargs, 1, "first")?.truthy ?? false
        let blank = arg(args, kwargs, 2, "blank")?.truthy ?? false
        let padText = width.intValue == nil ? try r.text(width) : ""
        let padBytes = width.intValue.map { max($0, 0) } ?? padText.utf8.count
        let lines = s.components(separatedBy: "\n")
        try r.reserveString(r.sum(r.product(padBytes, lines.count), s.utf8.count))
        let pad = width.intValue.map { String(repeating: " ", count: max($0, 0)) } ?? padText
        return .string(lines.enumerated().map { i, l in
            (i == 0 && !first) || (l.isEmpty && !blank) ? l : pad + l
        }.joined(separator: "\n"))
    }

    /// Python's `str.center`: the extra space goes right when the padding is odd and the
    /// length even, left otherwise.
    static func center(_ r: JinjaInterpreter, _ s: String, _ width: Int) throws -> String {
        let n = s.unicodeScalars.count
        guard width > n else { return s }
        try r.reserveString(width - n + s.utf8.count)
        let total = width - n
        let left = total / 2 + (total & width & 1)
        return String(repeating: " ", count: left) + s + String(repeating: " ", count: total - left)
    }

    /// `truncate(length=255, killwords=False, end='...', leeway=5)`.
    static func truncate(_ r: JinjaInterpreter, _ s: String, _ args: Args, _ kwargs: KW) throws -> JinjaValue {
        let length = arg(args, kwargs, 0, "length")?.intValue ?? 255
        let killwords = arg(args, kwargs, 1, "killwords")?.truthy ?? false
        let end = try r.text(arg(args, kwargs, 2, "end")) ?? "..."
        let leeway = arg(args, kwargs, 3, "leeway")?.intValue ?? 5
        let endCount = end.unicodeScalars.count
        guard length >= endCount else { throw r.error("truncate: expected length >= \(endCount), got \(length)") }
        guard leeway >= 0 else { throw r.error("truncate: expected leeway >= 0, got \(leeway)") }
        let scalars = Array(s.unicodeScalars)
        if scalars.count <= length || scalars.count - length <= leeway { return .string(s) }
        var kept = String(String.UnicodeScalarView(scalars[0..<(length - endCount)]))
        if !killwords, let space = kept.lastIndex(of: " ") { kept = String(kept[..<space]) }
        return .string(kept + end)
    }

    static func sequenceFilter(_ r: JinjaInterpreter, _ name: String, _ v: JinjaValue, _ args: Args, _ kwargs: KW) throws -> JinjaValue? {
        switch name {
        case "length", "count":
            switch v {
            case .string(let s): return .int(s.unicodeScalars.count)
            case .array(let a), .tuple(let a): return .int(a.count)
            case .object(let o): return .int(o.count)
            case .undefined: return .int(0)
            default: throw r.error("object of type '\(v.typeName)' has no len()")
            }
        case "first":
            if case .iterator(let it) = v { return try r.reader(.iterator(it))() ?? .undefined("first of an empty sequence") }
            return try r.iterate(v).first ?? .undefined("first of an empty sequence")
        case "last":
            if case .iterator(let it) = v { throw r.error("'\(it.typeName)' object is not reversible") }
            return try r.iterate(v).last ?? .undefined("last of an empty sequence")
        case "list": return .array(try r.iterate(v))
        case "join": return try join(r, v, args, kwargs)
        case "reverse": return try reverse(r, v)
        case "sort": return try sort(r, v, args, kwargs)
        case "unique": return unique(r, v, args, kwargs)
        case "select", "reject", "selectattr", "rejectattr": return select(r, name, v, args, kwargs)
        case "map": return map(r, v, args, kwargs)
        case "sum":
            var total = arg(args, kwargs, 1, "start") ?? .int(0)
            let attribute = try r.text(arg(args, kwargs, 0, "attribute"))
            for x in try r.iterate(v) { total = try r.binary("+", total, try attribute.map { try path(r, x, $0) } ?? x) }
            return total
        case "min", "max":
            let items = try r.iterate(v)
            let attribute = try r.text(arg(args, kwargs, 1, "attribute"))
            let caseSensitive = arg(args, kwargs, 0, "case_sensitive")?.truthy ?? false
            guard var best = items.first else { return .undefined("\(name) of an empty sequence") }
            for x in items.dropFirst() {
                let (a, b) = (try sortKey(r, x, attribute, caseSensitive), try sortKey(r, best, attribute, caseSensitive))
                if try r.compare(name == "min" ? "<" : ">", a, b) { best = x }
            }
            return best
        case "batch": return eager("do_batch") { try batch(r, v, args, kwargs) }
        case "slice": return eager("sync_do_slice") { try slices(r, v, args, kwargs) }
        default: return nil
        }
    }

    /// `join(d='', attribute=None)`, its length added up before the string is built.
    static func join(_ r: JinjaInterpreter, _ v: JinjaValue, _ args: Args, _ kwargs: KW) throws -> JinjaValue {
        let sep = try r.text(arg(args, kwargs, 0, "d")) ?? ""
        var items = try r.iterate(v)
        if let a = arg(args, kwargs, 1, "attribute") { items = try items.map { try path(r, $0, try r.text(a)) } }
        return .string(try joined(r, try items.map { try r.text($0) }, sep))
    }

    static func joined(_ r: JinjaInterpreter, _ parts: [String], _ sep: String) throws -> String {
        var bytes = r.product(sep.utf8.count, max(parts.count - 1, 0))
        for p in parts { bytes = r.sum(bytes, p.utf8.count) }
        try r.reserveString(bytes)
        return parts.joined(separator: sep)
    }

    /// Jinja's attribute paths (`attribute='a.b'`, digits as indices), each step as `x.a`.
    static func path(_ r: JinjaInterpreter, _ x: JinjaValue, _ attribute: String) throws -> JinjaValue {
        var v = x
        for part in attribute.split(separator: ".", omittingEmptySubsequences: false) {
            if let i = Int(part) { v = try r.item(v, .int(i), describing: .name("item")) } else { v = try r.attribute(v, String(part), describing: .name("item")) }
        }
        return v
    }

    /// What sort, unique, min and max compare: the attribute if given, strings lowercased
    /// unless case_sensitive (Jinja's default is not).
    static func sortKey(_ r: JinjaInterpreter, _ x: JinjaValue, _ attribute: String?, _ caseSensitive: Bool) throws -> JinjaValue {
        let k = try attribute.map { try path(r, x, $0) } ?? x
        if !caseSensitive, case .string(let s) = k { return .string(s.lowercased()) }
        return k
    }

    static func sort(_ r: JinjaInterpreter, _ v: JinjaValue, _ args: Args, _ kwargs: KW) throws -> JinjaValue {
        let reverse = arg(args, kwargs, 0, "reverse")?.truthy ?? false
        let caseSensitive = arg(args, kwargs, 1, "case_sensitive")?.truthy ?? false
        let attribute = try r.text(arg(args, kwargs, 2, "attribute"))
        let keyed = try r.iterate(v).map { (try sortKey(r, $0, attribute, caseSensitive), $0) }
        var failure: Error? = nil
        let sorted = keyed.enumerated().sorted { a, b in
            // Stable, as Python's sort: equal keys keep their order, reversed or not.
            do {
                let o = try r.located { try JinjaValue.order(a.element.0, b.element.0) }
                return o == 0 ? a.offset < b.offset : (o < 0) != reverse
            } catch { failure = error; return false }
        }
        if let failure { throw failure }
        return .array(sorted.map(\.element.1))
    }

    /// `batch(linecount, fill_with=None)`, as Jinja's loop makes it (0 gives an empty first
    /// batch; a negative count one batch of everything).
    static func batch(_ r: JinjaInterpreter, _ v: JinjaValue, _ args: Args, _ kwargs: KW) throws -> [JinjaValue] {
        guard let size = arg(args, kwargs, 0, "linecount")?.intValue else { throw r.error("batch needs a count") }
        let fill = notNone(arg(args, kwargs, 1, "fill_with"))
        var out: [JinjaValue] = [], current: [JinjaValue] = []
        for x in try r.iterate(v) {
            if current.count == size { out.append(.array(current)); current = [] }
            current.append(x)
        }
        if !current.isEmpty {
            if let fill, current.count < size {
                try r.reserveList(size)
                current += Array(repeating: fill, count: size - current.count)
            }
            out.append(.array(current))
        }
        return out
    }

    /// `slice(slices, fill_with=None)`: `slices` columns, the first ones one longer.
    static func slices(_ r: JinjaInterpreter, _ v: JinjaValue, _ args: Args, _ kwargs: KW) throws -> [JinjaValue] {
        guard let count = arg(args, kwargs, 0, "slices")?.intValue else { throw r.error("slice needs a count") }
        guard count != 0 else { throw r.error("integer division or modulo by zero") }
        let fill = notNone(arg(args, kwargs, 1, "fill_with"))
        let items = try r.iterate(v)
        guard count > 0 else { return [] }
        try r.reserveList(count)
        let per = items.count / count, extra = items.count % count
        var out: [JinjaValue] = [], offset = 0
        for k in 0..<count {
            let start = offset + k * per
            if k < extra { offset += 1 }
            var part = Array(items[start..<(offset + (k + 1) * per)])
            if let fill, k >= extra { part.append(fill) }
            out.append(.array(part))
        }
        return out
    }

    static func numberFilter(_ r: JinjaInterpreter, _ name: String, _ v: JinjaValue, _ args: Args, _ kwargs: KW) throws -> JinjaValue? {
        if ["int", "float", "abs", "round"].contains(name), case .undefined(let n) = v { throw r.error("'\(n)' is undefined (filter \(name))") }
        switch name {
        case "int": return try int(r, v, default: arg(args, kwargs, 0, "default") ?? .int(0))
        case "float":
            if let d = v.number { return .double(d) }
            if case .string(let s) = v, let d = Double(s.trimmingCharacters(in: .whitespaces)) { return .double(d) }
            return arg(args, kwargs, 0, "default") ?? .double(0)
        case "abs":
            if let i = v.intValue { guard i != .min else { throw r.overflow("abs(\(i))") }; return .int(abs(i)) }
            if let d = v.number { return .double(abs(d)) }
            throw r.error("bad operand type for abs(): '\(v.typeName)'")
        case "round":
            let precision = arg(args, kwargs, 0, "precision")?.intValue ?? 0
            let method = try r.text(arg(args, kwargs, 1, "method")) ?? "common"
            return try round(r, v, precision, method)
        default: return nil
        }
    }

    /// `int(default=0)`: Python's int() of the value, else of its float, else the default; a
    /// float too large for 64 bits is an error.
    static func int(_ r: JinjaInterpreter, _ v: JinjaValue, default fallback: JinjaValue) throws -> JinjaValue {
        func fromDouble(_ d: Double) throws -> JinjaValue {
            if d.isNaN { return fallback }
            guard let i = Int(exactly: d.rounded(.towardZero)) else { throw r.error("int(\(JinjaValue.pythonFloat(d))) does not fit in 64 bits") }
            return .int(i)
        }
        switch v {
        case .int, .bool: return .int(v.intValue!)
        case .double(let d): return try fromDouble(d)
        case .string(let s):
            let t = s.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "_", with: "")
            if let i = Int(t) { return .int(i) }
            if let d = Double(t) { return try fromDouble(d) }
            return fallback
        default: return fallback
        }
    }

    /// `round(precision=0, method='common')`: Python's round (to nearest, ties to even on the
    /// exact binary value), which keeps an int an int; 'floor' and 'ceil' give floats.
    static func round(_ r: JinjaInterpreter, _ v: JinjaValue, _ precision: Int, _ method: String) throws -> JinjaValue {
        guard let d = v.number else { throw r.error("type \(v.typeName) doesn't define __round__ method") }
        guard ["common", "floor", "ceil"].contains(method) else { throw r.error("method must be common, ceil or floor") }
        let p = min(max(precision, -400), 400)
        if method != "common" {
            let m = Foundation.pow(10.0, Double(p))
            let x = method == "floor" ? (d * m).rounded(.down) : (d * m).rounded(.up)
            return .double(m.isFinite && m != 0 ? x / m : d)
        }
        if let i = v.intValue {
            guard p < 0 else { return .int(i) }
            return try roundInt(r, i, -p)
        }
        if !d.isFinite || p > 323 { return .double(d) }
        if p >= 0, let x = Double(String(format: "%.\(p)f", d)) { return .double(x) }
        let m = Foundation.pow(10.0, Double(-p))
        guard m.isFinite else { return .double(0.0 * d) }
        return .double((d / m).rounded(.toNearestOrEven) * m)
    }

    /// An int rounded to 10**digits, ties to even, as Python's round(int, -digits).
    static func roundInt(_ r: JinjaInterpreter, _ i: Int, _ digits: Int) throws -> JinjaValue {
        var m = 1
        for _ in 0..<digits {
            let (x, o) = m.multipliedReportingOverflow(by: 10)
            if o { return .int(0) }
            m = x
        }
        let (q, rem) = i.quotientAndRemainder(dividingBy: m)
        var down = rem < 0 ? q - 1 : q
        let remainder = rem < 0 ? rem + m : rem
        if remainder * 2 > m || (remainder * 2 == m && down % 2 != 0) { down += 1 }
        let (x, o) = down.multipliedReportingOverflow(by: m)
        guard !o else { throw r.overflow("round(\(i), -\(digits))") }
        return .int(x)
    }

    /// transformers' `tojson(ensure_ascii=False, indent=None, separators=None, sort_keys=False)`,
    /// positional or by keyword, as `json.dumps` takes them: an int indent is that many spaces
    /// (a negative one none, newlines only), a str indent is itself; separators is a pair of
    /// strings (item, key), by default ", " and ": " (",", ": " with an indent).
    static func tojson(_ r: JinjaInterpreter, _ v: JinjaValue, _ args: Args, _ kwargs: KW) throws -> JinjaValue {
        guard args.count <= 4 else { throw r.error("tojson() takes from 1 to 5 positional arguments but \(args.count + 1) were given") }
        var options = JinjaJSON.Options()
        options.ensureASCII = arg(args, kwargs, 0, "ensure_ascii")?.truthy ?? false
        options.sortKeys = arg(args, kwargs, 3, "sort_keys")?.truthy ?? false
        if let i = notNone(arg(args, kwargs, 1, "indent")) {
            if let n = i.intValue {
                try r.reserveString(max(n, 0))
                options.indent = String(repeating: " ", count: max(n, 0))
            } else if let s = i.plainString { options.indent = s } else {
                throw r.error("can't multiply sequence by non-int of type '\(i.typeName)'")
            }
        }
        if let sep = notNone(arg(args, kwargs, 2, "separators")) {
            let pair = try r.iterate(sep)
            guard pair.count == 2 else { throw r.error("\(pair.count > 2 ? "too many" : "not enough") values to unpack (expected 2, got \(pair.count))") }
            guard let item = pair[0].plainString, let key = pair[1].plainString else {
                throw r.error("make_encoder() argument must be str, not \((pair[0].isString ? pair[1] : pair[0]).typeName)")
            }
            options.separators = (item, key)
        }
        let text = try r.located { try JinjaJSON.dump(v, options, maxBytes: r.limits.maxStringBytes, maxDepth: JinjaValue.reprDepth) }
        try r.spend(text.utf8.count)
        return .string(text)
    }

    /// jinja2's `format` filter: `value % (kwargs or args)`, not both.
    static func formatFilter(_ r: JinjaInterpreter, _ s: String, _ args: Args, _ kwargs: KW, escaping: Bool) throws -> String {
        guard args.isEmpty || kwargs.isEmpty else { throw r.error("can't handle positional and keyword arguments at the same time") }
        let values: JinjaValue = kwargs.isEmpty ? .tuple(args) : .object(JinjaObject(kwargs))
        return try PrintfFormat.format(r, s, values, escaping: escaping)
    }

    /// `dictsort(case_sensitive=False, by='key', reverse=False)`: (key, value) tuples.
    static func dictsort(_ r: JinjaInterpreter, _ v: JinjaValue, _ args: Args, _ kwargs: KW) throws -> JinjaValue {
        guard case .object(let o) = v else {
            if case .undefined(let n) = v { throw r.error("'\(n)' is undefined (filter dictsort)") }
            throw r.error("dictsort needs a mapping, got \(v.typeName)")
        }
        let caseSensitive = arg(args, kwargs, 0, "case_sensitive")?.truthy ?? false
        let byValue: Bool
        switch try r.text(arg(args, kwargs, 1, "by")) ?? "key" {
        case "key": byValue = false
        case "value": byValue = true
        default: throw r.error("You can only sort by either \"key\" or \"value\"")
        }
        let reverse = arg(args, kwargs, 2, "reverse")?.truthy ?? false
        let pairs = JinjaValue.array(o.pairs.map { .tuple([$0.0, $0.1]) })
        // sort's attribute path "0" or "1" is the tuple's key or value.
        return try sort(r, pairs, [.bool(reverse), .bool(caseSensitive), .string(byValue ? "1" : "0")], [])
    }

    // MARK: tests

    static func test(_ r: JinjaInterpreter, _ name: String, _ v: JinjaValue, _ args: Args) throws -> Bool {
        switch name {
        case "defined": return !v.isUndefined
        case "undefined": return v.isUndefined
        case "none": if case .none = v { return true }; return false
        case "string": return v.isString
        case "number": if case .int = v { return true }; if case .double = v { return true }; return false
        case "integer": if case .int = v { return true }; return false
        case "float": if case .double = v { return true }; return false
        case "boolean": if case .bool = v { return true }; return false
        case "true": if case .bool(true) = v { return true }; return false
        case "false": if case .bool(false) = v { return true }; return false
        case "mapping": if case .object = v { return true }; return false
        case "sequence", "iterable":
            switch v {
            case .string, .markup, .array, .tuple, .object: return true
            case .undefined: return true
            case .iterator: return name == "iterable"
            default: return false
            }
        case "callable": if case .function = v { return true }; return false
        case "odd", "even":
            guard let i = v.intValue else { throw r.error("\(name) needs an integer") }
            return (i % 2 != 0) == (name == "odd")
        case "divisibleby":
            guard let i = v.intValue, let d = args.first?.intValue, d != 0 else { throw r.error("divisibleby needs integers") }
            return d == -1 || i % d == 0
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
        case "lower": if let s = v.plainString { return s == s.lowercased() }; return false
        case "upper": if let s = v.plainString { return s == s.uppercased() }; return false
        default: throw r.error("no test named \(name)")
        }
    }

    // MARK: methods

    /// Python's str, dict and list methods that templates call (`content.strip()`, `message.get('x')`...).
    static func method(_ r: JinjaInterpreter, _ v: JinjaValue, _ name: String) -> JinjaFunction? {
        func f(_ body: @escaping (Args, KW) throws -> JinjaValue) -> JinjaFunction { JinjaFunction(name: name, call: body) }
        switch v {
        case .markup(let s): return JinjaMarkup.method(r, s, name)
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
                    case .array(let a)?, .tuple(let a)?: options = try a.map { try r.text($0) }
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
                    if case .string("")? = sep { throw r.error("empty separator") }
                    let maxsplit = arg(args, kwargs, 1, "maxsplit")?.intValue ?? -1
                    return .array(pySplit(s, sep: sep.flatMap { if case .none = $0 { return nil }; return try? r.text($0) }, maxsplit: maxsplit,
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
                    return .string(try pyReplace(r, s, try r.text(args[0]), try r.text(args[1]), count: args.count > 2 ? args[2].intValue ?? -1 : -1))
                }
            case "find", "index", "rfind":
                return f { args, _ in
                    let sub = Array((try r.text(args.first) ?? "").unicodeScalars), hay = Array(s.unicodeScalars)
                    let all = matches(sub, in: hay, firstOnly: name != "rfind")
                    let found = (name == "rfind" ? all.last : all.first) ?? -1
                    if found < 0 && name == "index" { throw r.error("substring not found") }
                    return .int(found)
                }
            case "count":
                return f { args, _ in
                    .int(disjoint(Array((try r.text(args.first) ?? "").unicodeScalars), in: Array(s.unicodeScalars), limit: .max).count)
                }
            case "join":
                return f { args, _ in
                    guard let items = args.first, !(items.isUndefined || { if case .none = items { return true }; return false }()) else {
                        throw r.error("can only join an iterable")
                    }
                    return .string(try joined(r, try r.iterate(items).map { try r.text($0) }, s))
                }
            case "isdigit": return f { _, _ in .bool(!s.isEmpty && s.allSatisfy { $0.isNumber }) }
            case "isspace": return f { _, _ in .bool(!s.isEmpty && s.allSatisfy { $0.isWhitespace }) }
            case "format":
                return f { args, _ in
                    var parts: [String] = [], i = 0, rest = Substring(s)
                    while let open = rest.range(of: "{}") {
                        parts += [String(rest[..<open.lowerBound]), try r.text(i < args.count ? args[i] : .string(""))]
                        i += 1
                        rest = rest[open.upperBound...]
                    }
                    return .string(try joined(r, parts + [String(rest)], ""))
                }
            default: return nil
            }
        case .object(let o):
            switch name {
            case "items": return f { _, _ in .array(o.pairs.map { .tuple([$0.0, $0.1]) }) }
            case "keys": return f { _, _ in .array(o.keys) }
            case "values": return f { _, _ in .array(o.pairs.map(\.1)) }
            case "get": return f { args, _ in o[args.first ?? .none] ?? (args.count > 1 ? args[1] : .none) }
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
            if maxsplit >= 0 && parts.count - 1 > maxsplit {
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
        let hay = Array(s.unicodeScalars), needle = Array(sep.unicodeScalars)
        var parts: [String] = [], at = 0
        for k in disjoint(needle, in: hay, limit: .max) {
            parts.append(String(String.UnicodeScalarView(hay[at..<k])))
            at = k + needle.count
        }
        parts.append(String(String.UnicodeScalarView(hay[at...])))
        if maxsplit >= 0 && parts.count - 1 > maxsplit {
            if fromRight {
                parts = [parts[0..<(parts.count - maxsplit)].joined(separator: sep)] + parts[(parts.count - maxsplit)...]
            } else {
                parts = Array(parts[0..<maxsplit]) + [parts[maxsplit...].joined(separator: sep)]
            }
        }
        return parts
    }

    /// Where `needle` starts in `hay`, overlapping matches included (an empty needle matches
    /// at every position and the end), in linear time (Knuth-Morris-Pratt): a long search
    /// cannot take the product of the lengths.
    static func matches(_ needle: [Unicode.Scalar], in hay: [Unicode.Scalar], firstOnly: Bool = false) -> [Int] {
        if needle.isEmpty { return firstOnly ? [0] : Array(0...hay.count) }
        var fallback = [0], k = 0
        for i in 1..<max(needle.count, 1) {
            while k > 0 && needle[i] != needle[k] { k = fallback[k - 1] }
            if needle[i] == needle[k] { k += 1 }
            fallback.append(k)
        }
        var found: [Int] = []
        k = 0
        for (i, c) in hay.enumerated() {
            while k > 0 && c != needle[k] { k = fallback[k - 1] }
            if c == needle[k] { k += 1 }
            if k == needle.count {
                found.append(i + 1 - k)
                if firstOnly { return found }
                k = fallback[k - 1]
            }
        }
        return found
    }

    /// Matches that do not overlap, from the left, at most `limit` (as count, replace and split
    /// take them).
    static func disjoint(_ needle: [Unicode.Scalar], in hay: [Unicode.Scalar], limit: Int) -> [Int] {
        var out: [Int] = [], next = 0
        for k in matches(needle, in: hay) where k >= next {
            guard out.count < limit else { break }
            out.append(k)
            next = k + max(needle.count, 1)
        }
        return out
    }

    /// Python's `str.replace(old, new, count)` on code points (an empty `old` matches between
    /// every two), the result's size known before it is built.
    static func pyReplace(_ r: JinjaInterpreter, _ s: String, _ old: String, _ new: String, count: Int) throws -> String {
        let hay = Array(s.unicodeScalars), needle = Array(old.unicodeScalars)
        let limit = count < 0 ? Int.max : count
        let starts = disjoint(needle, in: hay, limit: limit)
        let grow = r.product(starts.count, new.utf8.count)
        try r.reserveString(r.sum(s.utf8.count, grow))
        var out = String.UnicodeScalarView(), at = 0
        for k in starts {
            out.append(contentsOf: hay[at..<k])
            out.append(contentsOf: new.unicodeScalars)
            at = k + needle.count
        }
        out.append(contentsOf: hay[at...])
        return String(out)
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
