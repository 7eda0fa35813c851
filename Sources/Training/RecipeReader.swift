import Foundation
import FileSafety
import Yams

/// A recipe problem: the file, the line and column, the key path, and what was expected.
package struct RecipeError: Error, CustomStringConvertible, Equatable {
    package let file: String
    package let line: Int?
    package let column: Int?
    package let path: String
    package let message: String

    package init(file: String, line: Int?, column: Int?, path: String, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.path = path
        self.message = message
    }

    package var description: String {
        let loc = line.map { ":\($0)" + (column.map { ":\($0)" } ?? "") } ?? ""
        // A key path from a hostile recipe can be megabytes long: quoted in part.
        return "\(file)\(loc): \(path.isEmpty ? "" : excerpt(path) + ": ")\(message)"
    }
}

/// Reads a YAML mapping key by key, so that every value is checked where it stands (its line
/// and key path are known) and every key nobody asked for is reported with the closest valid
/// one. Yams' Codable decoding ignores unknown keys, which a recipe must not.
final class YAMLObject {
    let file: String
    let path: String
    let node: Node
    let mapping: Node.Mapping
    private(set) var consumed: [String] = []

    init(file: String, path: String, node: Node) throws {
        self.file = file
        self.path = path
        self.node = node
        guard let m = node.mapping else {
            throw RecipeError(file: file, line: node.mark.map { $0.line }, column: node.mark.map { $0.column }, path: path,
                              message: "expected a mapping of keys to values, got \(YAMLObject.describe(node))")
        }
        mapping = m
    }

    static func describe(_ n: Node) -> String {
        switch n {
        case .scalar(let s): return quoted(s.string)
        case .sequence: return "a list"
        case .mapping: return "a mapping"
        case .alias: return "an alias"
        }
    }

    func child(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    func fail(_ node: Node?, _ key: String, _ message: String) -> RecipeError {
        let mark = node?.mark ?? self.node.mark
        return RecipeError(file: file, line: mark.map { $0.line }, column: mark.map { $0.column }, path: child(key), message: message)
    }

    func raw(_ key: String) -> Node? {
        consumed.append(key)
        guard let v = mapping[key] else { return nil }
        if case .scalar(let s) = v, s.style == .plain, ["null", "~", ""].contains(s.string) { return nil }
        return v
    }

    /// A required key is absent: when a key nobody asked for is a near-miss of it, that typo is
    /// the better message.
    func missing(_ key: String, _ message: String) -> RecipeError {
        for (k, _) in mapping {
            guard let name = k.string, !consumed.contains(name) || name == key, name != key else { continue }
            if editDistance(name.lowercased(), key.lowercased()) <= 2 {
                return RecipeError(file: file, line: k.mark.map { $0.line }, column: k.mark.map { $0.column }, path: child(name),
                                   message: "unknown key; did you mean \"\(key)\"?")
            }
        }
        return fail(nil, key, message)
    }

    func string(_ key: String, default d: String? = nil, allowed: [String]? = nil) throws -> String {
        guard let v = raw(key) else {
            if let d { return d }
            throw missing(key, "is required" + (allowed.map { " (one of \($0.joined(separator: ", ")))" } ?? ""))
        }
        guard case .scalar(let s) = v else { throw fail(v, key, "expected a string, got \(YAMLObject.describe(v))") }
        if let allowed, !allowed.contains(s.string) {
            throw fail(v, key, "is \(quoted(s.string)); expected one of \(allowed.joined(separator: ", "))" + closest(s.string, allowed))
        }
        return s.string
    }

    func optionalString(_ key: String) throws -> String? {
        guard let v = raw(key) else { return nil }
        guard case .scalar(let s) = v else { throw fail(v, key, "expected a string, got \(YAMLObject.describe(v))") }
        return s.string
    }

    func int(_ key: String, default d: Int? = nil, min lo: Int? = nil, max hi: Int? = nil) throws -> Int {
        guard let v = raw(key) else {
            if let d { return d }
            throw missing(key, "is required (an integer)")
        }
        guard let i = v.int else { throw fail(v, key, "expected an integer, got \(YAMLObject.describe(v))") }
        if let lo, i < lo { throw fail(v, key, "is \(i); expected at least \(lo)") }
        if let hi, i > hi { throw fail(v, key, "is \(i); expected at most \(hi)") }
        return i
    }

    func optionalInt(_ key: String, min lo: Int? = nil) throws -> Int? {
        guard raw(key) != nil else { return nil }
        consumed.removeLast()
        return try int(key, min: lo)
    }

    func double(_ key: String, default d: Double? = nil, min lo: Double? = nil, max hi: Double? = nil,
                exclusiveMin: Bool = false) throws -> Double {
        guard let v = raw(key) else {
            if let d { return d }
            throw missing(key, "is required (a number)")
        }
        guard let x = v.float ?? v.int.map(Double.init), x.isFinite else {
            throw fail(v, key, "expected a number, got \(YAMLObject.describe(v))")
        }
        if let lo, exclusiveMin ? x <= lo : x < lo { throw fail(v, key, "is \(x); expected \(exclusiveMin ? "more than" : "at least") \(lo)") }
        if let hi, x > hi { throw fail(v, key, "is \(x); expected at most \(hi)") }
        return x
    }

    func optionalDouble(_ key: String, min lo: Double? = nil, exclusiveMin: Bool = false) throws -> Double? {
        guard raw(key) != nil else { return nil }
        consumed.removeLast()
        return try double(key, min: lo, exclusiveMin: exclusiveMin)
    }

    func bool(_ key: String, default d: Bool) throws -> Bool {
        guard let v = raw(key) else { return d }
        guard let b = v.bool else { throw fail(v, key, "expected true or false, got \(YAMLObject.describe(v))") }
        return b
    }

    func object(_ key: String) throws -> YAMLObject? {
        guard let v = raw(key) else { return nil }
        return try YAMLObject(file: file, path: child(key), node: v)
    }

    func list(_ key: String) throws -> [Node]? {
        guard let v = raw(key) else { return nil }
        guard case .sequence(let s) = v else { throw fail(v, key, "expected a list, got \(YAMLObject.describe(v))") }
        return Array(s)
    }

    /// A free-form mapping (model overrides) as JSON-compatible values.
    func freeMapping(_ key: String) throws -> [String: Any] {
        guard let v = raw(key) else { return [:] }
        guard let m = v.mapping else { throw fail(v, key, "expected a mapping, got \(YAMLObject.describe(v))") }
        var out: [String: Any] = [:]
        for (k, value) in m {
            guard let name = k.string else { continue }
            out[name] = YAMLObject.json(value)
        }
        return out
    }

    static func json(_ n: Node) -> Any {
        switch n {
        case .scalar(let s):
            if s.style == .plain {
                if let i = n.int { return i }
                if let f = n.float { return f }
                if let b = n.bool { return b }
                if s.string == "null" || s.string == "~" { return NSNull() }
            }
            return s.string
        case .sequence(let seq): return seq.map { json($0) }
        case .mapping(let m):
            var d: [String: Any] = [:]
            for (k, v) in m { if let ks = k.string { d[ks] = json(v) } }
            return d
        case .alias: return NSNull()
        }
    }

    /// Fails on the first key of this mapping that no reader asked for.
    func finish() throws {
        for (k, v) in mapping {
            guard let name = k.string else { continue }
            if !consumed.contains(name) {
                throw RecipeError(file: file, line: k.mark.map { $0.line }, column: k.mark.map { $0.column }, path: child(name),
                                  message: "unknown key" + closest(name, consumed, phrase: "; did you mean") + "; valid keys here: \(consumed.joined(separator: ", "))")
            }
            _ = v
        }
    }
}

/// ", closest: \"x\"" when some candidate is within a small edit distance.
func closest(_ s: String, _ candidates: [String], phrase: String = "; closest") -> String {
    let scored = candidates.map { ($0, editDistance(s.lowercased(), $0.lowercased())) }.sorted { $0.1 < $1.1 }
    guard let best = scored.first, best.1 <= Swift.max(2, best.0.count / 2) else { return "" }
    return "\(phrase) \"\(best.0)\"?"
}

func editDistance(_ a: String, _ b: String) -> Int {
    let x = Array(a), y = Array(b)
    if x.isEmpty { return y.count }
    if y.isEmpty { return x.count }
    var prev = Array(0...y.count), cur = [Int](repeating: 0, count: y.count + 1)
    for i in 1...x.count {
        cur[0] = i
        for j in 1...y.count {
            cur[j] = Swift.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x[i - 1] == y[j - 1] ? 0 : 1))
        }
        swap(&prev, &cur)
    }
    return prev[y.count]
}

/// Applies `--set a.b.c=value` to a YAML tree (list items by index: `stages.0.steps=100`).
func applyOverride(_ root: Node, path: [String], value: Node, file: String, full: String) throws -> Node {
    guard let head = path.first else { return value }
    let rest = Array(path.dropFirst())
    switch root {
    case .mapping(var m):
        let existing = m[head] ?? Node.mapping(Node.Mapping([]))
        m[head] = try applyOverride(existing, path: rest, value: value, file: file, full: full)
        return .mapping(m)
    case .sequence(var s):
        guard let i = Int(head), i >= 0, i < s.count else {
            throw RecipeError(file: "--set", line: nil, column: nil, path: full, message: "\(quoted(head)) is not an index of a list of \(s.count)")
        }
        var nodes = Array(s)
        nodes[i] = try applyOverride(nodes[i], path: rest, value: value, file: file, full: full)
        s = Node.Sequence(nodes, s.tag, s.style, s.mark)
        return .sequence(s)
    default:
        throw RecipeError(file: "--set", line: nil, column: nil, path: full, message: "cannot set \(quoted(head)) inside a scalar")
    }
}

extension RecipeError: InputError {}
