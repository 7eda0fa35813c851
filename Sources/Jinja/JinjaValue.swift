import Foundation
import FileSafety
import Tokenizers

/// A template error: what went wrong and the template line it happened on (1-based; 0 when
/// not known). `raise_exception` from the template is one, with the template's own message.
package struct TemplateError: Error, CustomStringConvertible, Sendable {
    package let message: String
    package let line: Int
    package let raised: Bool
    package init(_ message: String, line: Int, raised: Bool = false) {
        self.message = message
        self.line = line
        self.raised = raised
    }
    package var description: String { raised ? message : (line > 0 ? "line \(line): \(message)" : message) }
    /// How commands and data errors report it: a template's own `raise_exception` message, or
    /// the failure with its template line.
    package var report: String { raised ? "the chat template raised: \(message)" : "chat template: \(description)" }
}

/// A dict key as Python hashes it: `1`, `1.0` and `True` are one key, a tuple of keys is a
/// key, and lists, dicts and namespaces are not keys (unhashable).
enum JinjaKey: Hashable, Sendable {
    case none
    case int(Int)
    case double(Double)
    case string(String)
    case tuple([JinjaKey])

    init?(_ v: JinjaValue) {
        switch v {
        case .none: self = .none
        case .bool(let b): self = .int(b ? 1 : 0)
        case .int(let i): self = .int(i)
        case .double(let d): if let i = Int(exactly: d) { self = .int(i) } else { self = .double(d) }
        case .string(let s), .markup(let s): self = .string(s)
        case .tuple(let items):
            var keys: [JinjaKey] = []
            for x in items { guard let k = JinjaKey(x) else { return nil }; keys.append(k) }
            self = .tuple(keys)
        default: return nil
        }
    }
}

/// A Python dict: keys of any hashable type (`{1: 'a'}` keeps an integer key), in insertion
/// order (a message's keys come out of `tojson` and `items()` in the order the JSON gave them).
/// A key keeps its first spelling, as in Python (`{1: 'a', 1.0: 'b'}` is `{1: 'b'}`).
package struct JinjaObject: Sendable {
    private var order: [JinjaKey] = []
    private var entries: [JinjaKey: (key: JinjaValue, value: JinjaValue)] = [:]

    package init() {}
    package init(_ pairs: [(String, JinjaValue)]) { for (k, v) in pairs { self[k] = v } }

    package subscript(key: String) -> JinjaValue? {
        get { entries[JinjaKey.string(key)]?.value }
        set { update(.string(key), JinjaValue.string(key), newValue) }
    }

    /// The value at a key of any type; nil for a missing or unhashable key (setting one is a no-op:
    /// callers check hashability with `JinjaKey` first).
    subscript(key: JinjaValue) -> JinjaValue? {
        get { JinjaKey(key).flatMap { entries[$0]?.value } }
        set { if let k = JinjaKey(key) { update(k, key, newValue) } }
    }

    private mutating func update(_ k: JinjaKey, _ spelled: JinjaValue, _ value: JinjaValue?) {
        if let value {
            if let old = entries[k] { entries[k] = (old.key, value) } else { order.append(k); entries[k] = (spelled, value) }
        } else if entries.removeValue(forKey: k) != nil {
            order.removeAll { $0 == k }
        }
    }

    package var keys: [JinjaValue] { order.map { entries[$0]!.key } }
    package var pairs: [(JinjaValue, JinjaValue)] { order.map { entries[$0]! } }
    package var count: Int { order.count }
}

/// `namespace(...)`: the one mutable object templates have (to carry state out of a loop).
package final class JinjaNamespace: @unchecked Sendable {
    var object: JinjaObject
    init(_ object: JinjaObject) { self.object = object }
}

/// A callable: a built-in (raise_exception, a string's method) or a template macro.
package struct JinjaFunction: @unchecked Sendable {
    let name: String
    let call: ([JinjaValue], [(String, JinjaValue)]) throws -> JinjaValue
}

/// A value in a template, with Python's meaning (the one transformers' Jinja gives it).
package indirect enum JinjaValue: @unchecked Sendable {
    case undefined(String)
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JinjaValue])
    /// A tuple literal: a list that prints with parentheses.
    case tuple([JinjaValue])
    case object(JinjaObject)
    case namespace(JinjaNamespace)
    case function(JinjaFunction)
    /// A string `|safe` or `|escape` made: Python's Markup, a str whose `+`, `%`, `join` and
    /// `format` escape what they add (JinjaMarkup.swift).
    case markup(String)
    /// What jinja2's `map`, `select`, `unique`, `items`, `batch`, `slice` and `reverse` return:
    /// an iterator, used up as it is read (JinjaIterator.swift).
    case iterator(JinjaIterator)

    var isUndefined: Bool { if case .undefined = self { return true } else { return false } }
    var isString: Bool { plainString != nil }
    /// The text of a str or a Markup.
    var plainString: String? {
        switch self {
        case .string(let s), .markup(let s): return s
        default: return nil
        }
    }
    var isSequence: Bool {
        switch self {
        case .array, .tuple: return true
        default: return false
        }
    }

    /// Python truthiness.
    var truthy: Bool {
        switch self {
        case .undefined, .none: return false
        case .bool(let b): return b
        case .int(let i): return i != 0
        case .double(let d): return d != 0
        case .string(let s), .markup(let s): return !s.isEmpty
        case .array(let a), .tuple(let a): return !a.isEmpty
        case .object(let o): return o.count > 0
        case .namespace, .function, .iterator: return true
        }
    }

    var typeName: String {
        switch self {
        case .undefined: return "Undefined"
        case .none: return "NoneType"
        case .bool: return "bool"
        case .int: return "int"
        case .double: return "float"
        case .string: return "str"
        case .array: return "list"
        case .tuple: return "tuple"
        case .object: return "dict"
        case .namespace: return "Namespace"
        case .function: return "function"
        case .markup: return "Markup"
        case .iterator(let it): return it.typeName
        }
    }

    /// What `{{ x }}` prints: Python's `str(x)`; undefined prints nothing.
    var text: String {
        switch self {
        case .undefined: return ""
        case .string(let s), .markup(let s): return s
        default: return repr
        }
    }

    /// Python's `repr(x)` (how lists and dicts print). A namespace met again inside itself
    /// prints as `<Namespace {...}>`, as Python's reprlib guard prints it, so a cycle
    /// (`set ns.a = ns`) ends; a value nested past `reprDepth` prints `...`.
    var repr: String { repr(limit: .max)! }

    /// `str(x)`, or nil once it would pass `limit` UTF-8 bytes (found before building more).
    func text(limit: Int) -> String? {
        if let s = plainString { return s.utf8.count <= limit ? s : nil }
        return repr(limit: limit)
    }

    /// `repr(x)`, or nil once it would pass `limit` UTF-8 bytes.
    func repr(limit: Int) -> String? {
        var out = ""
        var inside: Set<ObjectIdentifier> = []
        return write(&out, &inside, depth: 0, limit: limit) ? out : nil
    }

    /// At most about 200 bytes of `repr(x)`, for error messages.
    var shortRepr: String { repr(limit: 200) ?? "<a \(typeName) too long to show>" }

    /// Deeper than any value a template can store (JinjaLimits.maxValueDepth), for values a
    /// caller hands in: printing stops there instead of exhausting the stack.
    static let reprDepth = 2000

    /// Appends `repr(x)` to `out`; false as soon as `out` passes `limit`.
    private func write(_ out: inout String, _ inside: inout Set<ObjectIdentifier>, depth: Int, limit: Int) -> Bool {
        func put(_ s: String) -> Bool { out += s; return out.utf8.count <= limit }
        func items(_ a: [JinjaValue], _ open: String, _ close: String) -> Bool {
            guard put(open) else { return false }
            for (i, x) in a.enumerated() {
                guard (i == 0 || put(", ")) && x.write(&out, &inside, depth: depth + 1, limit: limit) else { return false }
            }
            return put(close)
        }
        if depth > JinjaValue.reprDepth { return put("...") }
        switch self {
        case .undefined: return true
        case .none: return put("None")
        case .bool(let b): return put(b ? "True" : "False")
        case .int(let i): return put(String(i))
        case .double(let d): return put(JinjaValue.pythonFloat(d))
        case .string(let s): return s.utf8.count <= limit && put(JinjaValue.pythonRepr(s))
        case .markup(let s): return s.utf8.count <= limit && put("Markup(" + JinjaValue.pythonRepr(s) + ")")
        case .iterator(let it): return put(it.repr)
        case .array(let a): return items(a, "[", "]")
        case .tuple(let a): return items(a, "(", a.count == 1 ? ",)" : ")")
        case .object(let o): return JinjaValue.write(o, &out, &inside, depth: depth, limit: limit)
        case .namespace(let n):
            let id = ObjectIdentifier(n)
            if inside.contains(id) { return put("<Namespace {...}>") }
            inside.insert(id)
            defer { inside.remove(id) }
            return put("<Namespace ") && JinjaValue.write(n.object, &out, &inside, depth: depth, limit: limit) && put(">")
        case .function(let f): return put("<function \(f.name)>")
        }
    }

    private static func write(_ o: JinjaObject, _ out: inout String, _ inside: inout Set<ObjectIdentifier>, depth: Int, limit: Int) -> Bool {
        out += "{"
        for (i, (k, v)) in o.pairs.enumerated() {
            if i > 0 { out += ", " }
            guard k.write(&out, &inside, depth: depth + 1, limit: limit) else { return false }
            out += ": "
            guard v.write(&out, &inside, depth: depth + 1, limit: limit) else { return false }
        }
        out += "}"
        return out.utf8.count <= limit
    }

    static func pythonFloat(_ d: Double) -> String {
        if d.isNaN { return "nan" }
        if d.isInfinite { return d > 0 ? "inf" : "-inf" }
        if d == d.rounded() && abs(d) < 1e16 { return String(format: "%.1f", d) }
        var s = "\(d)"
        // Swift writes 1e-05 as "1e-05" like Python, but 1e+20 as "1e+20" too; keep as is.
        if s.hasSuffix(".0") { s.removeLast(2) }
        return s
    }

    static func pythonRepr(_ s: String) -> String {
        let quote: Character = s.contains("'") && !s.contains("\"") ? "\"" : "'"
        var out = String(quote)
        for u in s.unicodeScalars {
            switch u {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if Character(u) == quote { out += "\\" + String(quote) }
                else if u.value < 0x20 || u.value == 0x7F { out += String(format: "\\x%02x", u.value) }
                else { out.unicodeScalars.append(u) }
            }
        }
        return out + String(quote)
    }

    /// Python `==` (namespaces are equal only to themselves).
    func equals(_ other: JinjaValue) -> Bool {
        switch (self, other) {
        case (.undefined, .undefined), (.none, .none): return true
        case (.string(let a), .string(let b)), (.markup(let a), .markup(let b)), (.string(let a), .markup(let b)), (.markup(let a), .string(let b)):
            return a.unicodeScalars.elementsEqual(b.unicodeScalars)
        case (.array(let a), .array(let b)), (.tuple(let a), .tuple(let b)): return a.count == b.count && zip(a, b).allSatisfy { $0.equals($1) }
        case (.object(let a), .object(let b)):
            return a.count == b.count && a.pairs.allSatisfy { k, v in b[k].map { v.equals($0) } ?? false }
        case (.namespace(let a), .namespace(let b)): return a === b
        case (.iterator(let a), .iterator(let b)): return a === b
        default:
            if let x = intValue, let y = other.intValue { return x == y }
            if let x = number, let y = other.number { return x == y }
            return false
        }
    }

    /// Python's ordering for `<` and sorting: numbers with numbers, strings by code point,
    /// lists and tuples item by item; -1, 0 or 1. Other pairs are a TypeError in Python.
    static func order(_ a: JinjaValue, _ b: JinjaValue) throws -> Int {
        switch (a, b) {
        case (.string(let x), .string(let y)), (.markup(let x), .markup(let y)), (.string(let x), .markup(let y)), (.markup(let x), .string(let y)):
            let xs = x.unicodeScalars, ys = y.unicodeScalars
            if xs.elementsEqual(ys) { return 0 }
            return xs.lexicographicallyPrecedes(ys) ? -1 : 1
        case (.array(let x), .array(let y)), (.tuple(let x), .tuple(let y)):
            for (p, q) in zip(x, y) where !p.equals(q) { return try order(p, q) }
            return x.count < y.count ? -1 : (x.count > y.count ? 1 : 0)
        default:
            if let x = a.intValue, let y = b.intValue { return x < y ? -1 : (x > y ? 1 : 0) }
            if let x = a.number, let y = b.number { return x < y ? -1 : (x > y ? 1 : 0) }
            throw TemplateError("'<' not supported between instances of '\(a.typeName)' and '\(b.typeName)'", line: 0)
        }
    }

    static func less(_ a: JinjaValue, _ b: JinjaValue) throws -> Bool { try order(a, b) < 0 }

    /// Numbers (bools count, as in Python) as Double.
    var number: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }

    var intValue: Int? {
        switch self {
        case .int(let i): return i
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }
}

extension TemplateError: InputError {
    /// A template's own `raise_exception` message, or the failure with its template line.
    package var userMessage: String { report }
}
