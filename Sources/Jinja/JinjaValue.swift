import Foundation
import Tokenizers

/// A template error: what went wrong and the template line it happened on (1-based; 0 when
/// not known). `raise_exception` from the template is one, with the template's own message.
public struct TemplateError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public let line: Int
    public let raised: Bool
    public init(_ message: String, line: Int, raised: Bool = false) {
        self.message = message
        self.line = line
        self.raised = raised
    }
    public var description: String { raised ? message : (line > 0 ? "line \(line): \(message)" : message) }
    /// How commands and data errors report it: a template's own `raise_exception` message, or
    /// the failure with its template line.
    public var report: String { raised ? "the chat template raised: \(message)" : "chat template: \(description)" }
}

/// Keys in insertion order, as Python dicts keep them (a message's keys come out of `tojson`
/// and `items()` in the order the JSON gave them).
public struct JinjaObject: Sendable {
    public private(set) var keys: [String] = []
    private var values: [String: JinjaValue] = [:]

    public init() {}
    public init(_ pairs: [(String, JinjaValue)]) { for (k, v) in pairs { self[k] = v } }

    public subscript(key: String) -> JinjaValue? {
        get { values[key] }
        set {
            if let newValue {
                if values[key] == nil { keys.append(key) }
                values[key] = newValue
            } else if values.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }

    public var pairs: [(String, JinjaValue)] { keys.map { ($0, values[$0]!) } }
    public var count: Int { keys.count }
}

/// `namespace(...)`: the one mutable object templates have (to carry state out of a loop).
public final class JinjaNamespace: @unchecked Sendable {
    var object: JinjaObject
    init(_ object: JinjaObject) { self.object = object }
}

/// A callable: a built-in (raise_exception, a string's method) or a template macro.
public struct JinjaFunction: @unchecked Sendable {
    let name: String
    let call: ([JinjaValue], [(String, JinjaValue)]) throws -> JinjaValue
}

/// A value in a template, with Python's meaning (the one transformers' Jinja gives it).
public indirect enum JinjaValue: @unchecked Sendable {
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

    var isUndefined: Bool { if case .undefined = self { return true } else { return false } }

    /// Python truthiness.
    var truthy: Bool {
        switch self {
        case .undefined, .none: return false
        case .bool(let b): return b
        case .int(let i): return i != 0
        case .double(let d): return d != 0
        case .string(let s): return !s.isEmpty
        case .array(let a), .tuple(let a): return !a.isEmpty
        case .object(let o): return o.count > 0
        case .namespace, .function: return true
        }
    }

    var typeName: String {
        switch self {
        case .undefined: return "undefined"
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
        }
    }

    /// What `{{ x }}` prints: Python's `str(x)`; undefined prints nothing.
    var text: String {
        switch self {
        case .undefined: return ""
        case .string(let s): return s
        default: return repr
        }
    }

    /// Python's `repr(x)` (how lists and dicts print).
    var repr: String {
        switch self {
        case .undefined: return ""
        case .none: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let i): return String(i)
        case .double(let d): return JinjaValue.pythonFloat(d)
        case .string(let s): return JinjaValue.pythonRepr(s)
        case .array(let a): return "[" + a.map(\.repr).joined(separator: ", ") + "]"
        case .tuple(let a): return a.count == 1 ? "(" + a[0].repr + ",)" : "(" + a.map(\.repr).joined(separator: ", ") + ")"
        case .object(let o): return "{" + o.pairs.map { JinjaValue.pythonRepr($0.0) + ": " + $0.1.repr }.joined(separator: ", ") + "}"
        case .namespace(let n): return "<Namespace " + n.object.pairs.map { "\($0.0)=\($0.1.repr)" }.joined(separator: ", ") + ">"
        case .function(let f): return "<function \(f.name)>"
        }
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

    /// Python `==`.
    func equals(_ other: JinjaValue) -> Bool {
        switch (self, other) {
        case (.undefined, .undefined), (.none, .none): return true
        case (.string(let a), .string(let b)): return a.unicodeScalars.elementsEqual(b.unicodeScalars)
        case (.array(let a), .array(let b)), (.tuple(let a), .tuple(let b)): return a.count == b.count && zip(a, b).allSatisfy { $0.equals($1) }
        case (.object(let a), .object(let b)):
            return a.count == b.count && a.pairs.allSatisfy { k, v in b[k].map { v.equals($0) } ?? false }
        default:
            if let x = number, let y = other.number { return x == y }
            return false
        }
    }

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
