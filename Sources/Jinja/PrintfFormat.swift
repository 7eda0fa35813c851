import Foundation
import Tokenizers

/// Python's printf-style formatting, `format % args` (and jinja2's `format` filter, which is
/// `value % (kwargs or args)`): conversions s r a d i u x X o e E f F g G c and `%%`, the flags
/// `-+ #0`, width and precision (`*` takes them from the arguments), `%(key)s` from a mapping,
/// and Python's errors. Arguments are consumed as CPython consumes them: a tuple gives one
/// value per conversion, anything else is the one value, and a mapping (a dict or a list, as
/// `PyMapping_Check` has it) also serves `%(key)`. A Markup format escapes what `%s`/`%r` insert.
/// Width and precision are checked against `JinjaLimits.maxStringBytes` before any padding
/// or digits are made.
struct PrintfFormat {
    let r: JinjaInterpreter
    let escaping: Bool
    /// CPython's `args`, `arglen` and `argidx`: the current argument source and position.
    var args: JinjaValue
    var arglen: Int
    var argidx: Int
    let mapping: JinjaValue?
    var out = ""

    static func format(_ r: JinjaInterpreter, _ format: String, _ args: JinjaValue, escaping: Bool) throws -> String {
        var mapping: JinjaValue? = nil
        switch args {
        case .object, .array: mapping = args
        default: break
        }
        var f = PrintfFormat(r: r, escaping: escaping, args: args, arglen: -1, argidx: -2, mapping: mapping)
        if case .tuple(let items) = args { f.arglen = items.count; f.argidx = 0 }
        try f.run(Array(format.unicodeScalars))
        if f.argidx < f.arglen && f.mapping == nil { throw r.error("not all arguments converted during string formatting") }
        try r.spend(f.out.utf8.count)
        return f.out
    }

    /// A conversion as written: `%(key)-+ #0width.precision[hlL]type`.
    struct Spec {
        var left = false, plus = false, blank = false, alternate = false, zero = false
        var width = -1, precision = -1
        var type: Unicode.Scalar = "s"
    }

    mutating func run(_ f: [Unicode.Scalar]) throws {
        var i = 0
        while i < f.count {
            guard f[i] == "%" else {
                var j = i
                while j < f.count && f[j] != "%" { j += 1 }
                try append(String(String.UnicodeScalarView(f[i..<j])))
                i = j
                continue
            }
            i += 1
            guard i < f.count else { throw r.error("incomplete format") }
            if f[i] == "%" { try append("%"); i += 1; continue }
            var spec = Spec()
            if f[i] == "(" { try key(f, &i) }
            try parse(f, &i, &spec)
            let value = try nextArg()
            guard spec.type != "%" else { throw unsupported(spec.type, i - 1) }
            try convert(value, spec, at: i - 1)
        }
    }

    /// `%(key)`: the value at key in the mapping becomes the argument source (parentheses nest).
    mutating func key(_ f: [Unicode.Scalar], _ i: inout Int) throws {
        var depth = 1, j = i + 1
        while j < f.count && depth > 0 {
            if f[j] == "(" { depth += 1 } else if f[j] == ")" { depth -= 1 }
            j += 1
        }
        guard depth == 0 else { throw r.error("incomplete format key") }
        let name = String(String.UnicodeScalarView(f[(i + 1)..<(j - 1)]))
        guard let mapping else { throw r.error("format requires a mapping") }
        switch mapping {
        case .object(let o):
            guard let v = o[name] else { throw r.error("KeyError: \(JinjaValue.pythonRepr(name))") }
            args = v
        default: throw r.error("\(mapping.typeName) indices must be integers or slices, not str")
        }
        arglen = -1
        argidx = -2
        i = j
    }

    mutating func parse(_ f: [Unicode.Scalar], _ i: inout Int, _ spec: inout Spec) throws {
        flags: while i < f.count {
            switch f[i] {
            case "-": spec.left = true
            case "+": spec.plus = true
            case " ": spec.blank = true
            case "#": spec.alternate = true
            case "0": spec.zero = true
            default: break flags
            }
            i += 1
        }
        if let w = try number(f, &i, what: "width") {
            if w < 0 { spec.left = true }
            spec.width = abs(w)
        }
        if i < f.count && f[i] == "." {
            i += 1
            spec.precision = max(try number(f, &i, what: "precision") ?? 0, 0)
        }
        if i < f.count && (f[i] == "h" || f[i] == "l" || f[i] == "L") { i += 1 }
        guard i < f.count else { throw r.error("incomplete format") }
        spec.type = f[i]
        i += 1
    }

    /// Digits, or `*` (an int argument); nil when absent. Bounded before anything is padded.
    mutating func number(_ f: [Unicode.Scalar], _ i: inout Int, what: String) throws -> Int? {
        var n: Int? = nil
        if i < f.count && f[i] == "*" {
            i += 1
            guard let x = try nextArg().intValue else { throw r.error("* wants int") }
            n = x
        } else {
            while i < f.count && f[i].value >= 48 && f[i].value <= 57 {
                let (m, o1) = (n ?? 0).multipliedReportingOverflow(by: 10)
                let (s, o2) = m.addingReportingOverflow(Int(f[i].value - 48))
                guard !o1 && !o2 else { throw r.error("\(what) too big") }
                n = s
                i += 1
            }
        }
        if let n, n.magnitude > UInt(r.limits.maxStringBytes) {
            throw r.limitError("a % format \(what) of \(n)", r.limits.maxStringBytes, "maxStringBytes")
        }
        return n
    }

    mutating func nextArg() throws -> JinjaValue {
        guard argidx < arglen else { throw r.error("not enough arguments for format string") }
        argidx += 1
        if arglen < 0 { return args }
        guard case .tuple(let items) = args, argidx - 1 < items.count else { throw r.error("not enough arguments for format string") }
        return items[argidx - 1]
    }

    func unsupported(_ c: Unicode.Scalar, _ index: Int) -> TemplateError {
        let shown = c.value >= 0x20 && c.value < 0x7F ? String(c) : "?"
        return r.error("unsupported format character '\(shown)' (0x\(String(c.value, radix: 16))) at index \(index)")
    }

    mutating func append(_ s: String) throws {
        guard s.utf8.count <= r.limits.maxStringBytes - out.utf8.count else {
            throw r.limitError("a % formatted string of more than \(r.limits.maxStringBytes) bytes", r.limits.maxStringBytes, "maxStringBytes")
        }
        out += s
    }

    mutating func convert(_ v: JinjaValue, _ spec: Spec, at index: Int) throws {
        switch spec.type {
        case "s", "r", "a":
            var s = spec.type == "s" ? try r.text(v) : try repr(v, ascii: spec.type == "a")
            if escaping && !(spec.type == "s" && v.isMarkup) { s = JinjaMarkup.escape(s) }
            if spec.precision >= 0 { s = String(String.UnicodeScalarView(s.unicodeScalars.prefix(spec.precision))) }
            try pad("", "", s, spec, numeric: false)
        case "c": try pad("", "", try character(v), spec, numeric: false)
        case "d", "i", "u", "x", "X", "o": try integer(v, spec)
        case "e", "E", "f", "F", "g", "G": try float(v, spec)
        default: throw unsupported(spec.type, index)
        }
    }

    func repr(_ v: JinjaValue, ascii: Bool) throws -> String {
        guard let s = v.repr(limit: r.limits.maxStringBytes) else {
            throw r.limitError("the repr of a \(v.typeName)", r.limits.maxStringBytes, "maxStringBytes")
        }
        guard ascii else { return s }
        var out = ""
        for u in s.unicodeScalars {
            switch u.value {
            case 0..<0x80: out.unicodeScalars.append(u)
            case 0x80..<0x100: out += "\\x" + hex(u.value, 2)
            case 0x100..<0x10000: out += "\\u" + hex(u.value, 4)
            default: out += "\\U" + hex(u.value, 8)
            }
        }
        return out
    }

    func hex(_ v: UInt32, _ digits: Int) -> String {
        let h = String(v, radix: 16)
        return String(repeating: "0", count: max(digits - h.count, 0)) + h
    }

    func character(_ v: JinjaValue) throws -> String {
        if let s = v.plainString, s.unicodeScalars.count == 1 { return s }
        if case .undefined(let n) = v { throw r.error("'\(n)' is undefined") }
        guard let i = v.intValue else { throw r.error("%c requires int or char") }
        guard i >= 0 && i < 0x110000, let u = Unicode.Scalar(UInt32(i)) else {
            if i >= 0xD800 && i < 0xE000 { throw r.error("%c arg is a lone surrogate, which this engine cannot hold") }
            throw r.error("%c arg not in range(0x110000)")
        }
        return String(u)
    }

    /// The argument as Python's int() for %d (floats truncate) or as an exact int for %x/%o.
    func integerValue(_ v: JinjaValue, _ type: Unicode.Scalar) throws -> Int {
        if case .undefined(let n) = v { throw r.error("'\(n)' is undefined") }
        if let i = v.intValue { return i }
        if case .double(let d) = v, type == "d" || type == "i" || type == "u" {
            if d.isNaN { throw r.error("cannot convert float NaN to integer") }
            guard let i = Int(exactly: d.rounded(.towardZero)) else {
                if d.isInfinite { throw r.error("cannot convert float infinity to integer") }
                throw r.error("int(\(JinjaValue.pythonFloat(d))) does not fit in 64 bits")
            }
            return i
        }
        if type == "d" || type == "i" || type == "u" { throw r.error("%\(type) format: a real number is required, not \(v.typeName)") }
        throw r.error("%\(type) format: an integer is required, not \(v.typeName)")
    }

    mutating func integer(_ v: JinjaValue, _ spec: Spec) throws {
        let i = try integerValue(v, spec.type)
        let radix = spec.type == "x" || spec.type == "X" ? 16 : (spec.type == "o" ? 8 : 10)
        var digits = String(i.magnitude, radix: radix, uppercase: spec.type == "X")
        if spec.precision > digits.count {
            try r.reserveString(spec.precision)
            digits = String(repeating: "0", count: spec.precision - digits.count) + digits
        }
        var prefix = ""
        if spec.alternate && radix != 10 { prefix = spec.type == "o" ? "0o" : (spec.type == "x" ? "0x" : "0X") }
        try pad(sign(i < 0, spec), prefix, digits, spec, numeric: true)
    }

    mutating func float(_ v: JinjaValue, _ spec: Spec) throws {
        if case .undefined(let n) = v { throw r.error("'\(n)' is undefined") }
        guard let d = v.number else { throw r.error("must be real number, not \(v.typeName)") }
        let upper = spec.type == "F" || spec.type == "E" || spec.type == "G"
        let body: String
        if d.isNaN { body = upper ? "NAN" : "nan" } else if d.isInfinite { body = upper ? "INF" : "inf" } else {
            body = try PrintfFormat.cFormat(r, d.magnitude, spec.type, spec.precision < 0 ? 6 : spec.precision, alternate: spec.alternate)
        }
        try pad(sign(!d.isNaN && d.sign == .minus, spec), "", body, spec, numeric: true)
    }

    /// C's formatting of a non-negative finite double, as Python's float formatting gives it,
    /// its length measured before the text is made.
    static func cFormat(_ r: JinjaInterpreter, _ d: Double, _ type: Unicode.Scalar, _ precision: Int, alternate: Bool) throws -> String {
        let format = "%" + (alternate ? "#" : "") + ".*" + String(type)
        let length = withVaList([Int32(clamping: precision), d]) { vsnprintf(nil, 0, format, $0) }
        guard length >= 0 else { throw r.error("cannot format \(d)") }
        try r.reserveString(Int(length))
        var buffer = [CChar](repeating: 0, count: Int(length) + 1)
        _ = buffer.withUnsafeMutableBufferPointer { b in
            withVaList([Int32(clamping: precision), d]) { vsnprintf(b.baseAddress, b.count, format, $0) }
        }
        return String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func sign(_ negative: Bool, _ spec: Spec) -> String {
        negative ? "-" : (spec.plus ? "+" : (spec.blank ? " " : ""))
    }

    /// Python's padding: spaces left (or right with `-`), or zeros between sign and digits
    /// with `0` on a number.
    mutating func pad(_ sign: String, _ prefix: String, _ body: String, _ spec: Spec, numeric: Bool) throws {
        let length = sign.unicodeScalars.count + prefix.count + body.unicodeScalars.count
        let fill = max(spec.width - length, 0)
        try r.reserveString(fill)
        let padding = String(repeating: spec.zero && numeric && !spec.left ? "0" : " ", count: fill)
        if spec.left { try append(sign + prefix + body + padding) }
        else if spec.zero && numeric { try append(sign + prefix + padding + body) }
        else { try append(padding + sign + prefix + body) }
    }
}
