import Foundation
import Tokenizers

/// Renders parsed statements: scopes as Jinja has them (a `for` body has its own; `set` inside
/// it does not leak out, which is why templates use `namespace`), Python's operators on values,
/// `loop`, macros, `break`/`continue`.
final class JinjaInterpreter {
    final class Scope {
        var vars: [String: JinjaValue] = [:]
        let parent: Scope?
        init(parent: Scope?) { self.parent = parent }
        func lookup(_ n: String) -> JinjaValue? { vars[n] ?? parent?.lookup(n) }
    }

    enum Flow: Error { case breakLoop, continueLoop }

    var line = 0
    let globals: Scope

    init(globals: [String: JinjaValue]) {
        let g = Scope(parent: nil)
        g.vars = globals
        self.globals = g
        for (name, f) in JinjaBuiltins.globals(self) where g.vars[name] == nil { g.vars[name] = .function(f) }
    }

    func error(_ m: String) -> TemplateError { TemplateError(m, line: line) }

    func render(_ nodes: [JinjaNode]) throws -> String {
        var out = ""
        try run(nodes, Scope(parent: globals), &out)
        return out
    }

    func run(_ nodes: [JinjaNode], _ scope: Scope, _ out: inout String) throws {
        for n in nodes { try run(n, scope, &out) }
    }

    func run(_ node: JinjaNode, _ scope: Scope, _ out: inout String) throws {
        switch node {
        case .text(let t): out += t
        case .output(let e, let l):
            line = l
            out += try eval(e, scope).text
        case .ifBlock(let branches, let otherwise, let l):
            for (cond, body) in branches {
                line = l
                if try eval(cond, scope).truthy { try run(body, scope, &out); return }
            }
            try run(otherwise, scope, &out)
        case .forLoop(let targets, let iterable, let condition, let body, let otherwise, let l):
            line = l
            let seq = try iterate(try eval(iterable, scope))
            var items: [JinjaValue] = []
            for item in seq {
                if let condition {
                    let s = Scope(parent: scope)
                    try bind(targets, item, s)
                    if !(try eval(condition, s).truthy) { continue }
                }
                items.append(item)
            }
            if items.isEmpty { try run(otherwise, scope, &out); return }
            for (i, item) in items.enumerated() {
                let s = Scope(parent: scope)
                try bind(targets, item, s)
                s.vars["loop"] = loopObject(i, items)
                do { try run(body, s, &out) } catch Flow.breakLoop { break } catch Flow.continueLoop { continue }
            }
        case .set(let target, let e, let l):
            line = l
            let v = try eval(e, scope)
            switch target {
            case .name(let n): scope.vars[n] = v
            case .tuple(let names): try bind(names, v, scope)
            case .attribute(let n, let attr):
                guard case .namespace(let ns)? = scope.lookup(n) else {
                    throw error("cannot assign attribute \(attr) of \(n): only a namespace() takes attribute assignments")
                }
                ns.object[attr] = v
            }
        case .setBlock(let n, let body, _):
            var captured = ""
            try run(body, scope, &captured)
            scope.vars[n] = .string(captured)
        case .macro(let name, let params, let body, _):
            scope.vars[name] = .function(macro(name, params, body, defined: scope))
        case .breakLoop(let l): line = l; throw Flow.breakLoop
        case .continueLoop(let l): line = l; throw Flow.continueLoop
        case .generation(let body): try run(body, scope, &out)
        }
    }

    func macro(_ name: String, _ params: [(String, JinjaExpr?)], _ body: [JinjaNode], defined: Scope) -> JinjaFunction {
        JinjaFunction(name: name) { [unowned self] args, kwargs in
            let s = Scope(parent: defined)
            for (i, (p, d)) in params.enumerated() {
                if i < args.count { s.vars[p] = args[i] }
                else if let kw = kwargs.first(where: { $0.0 == p }) { s.vars[p] = kw.1 }
                else if let d { s.vars[p] = try self.eval(d, s) }
                else { s.vars[p] = .undefined(p) }
            }
            s.vars["varargs"] = .array(Array(args.dropFirst(params.count)))
            var out = ""
            let saved = self.line
            try self.run(body, s, &out)
            self.line = saved
            return .string(out)
        }
    }

    func bind(_ targets: [String], _ v: JinjaValue, _ s: Scope) throws {
        if targets.count == 1 { s.vars[targets[0]] = v; return }
        let parts = try iterate(v)
        guard parts.count == targets.count else {
            throw error("cannot unpack \(parts.count) values into \(targets.count) names (\(targets.joined(separator: ", ")))")
        }
        for (t, p) in zip(targets, parts) { s.vars[t] = p }
    }

    func loopObject(_ i: Int, _ items: [JinjaValue]) -> JinjaValue {
        let n = items.count
        var o = JinjaObject()
        o["index"] = .int(i + 1)
        o["index0"] = .int(i)
        o["revindex"] = .int(n - i)
        o["revindex0"] = .int(n - i - 1)
        o["first"] = .bool(i == 0)
        o["last"] = .bool(i == n - 1)
        o["length"] = .int(n)
        o["depth"] = .int(1)
        o["depth0"] = .int(0)
        o["previtem"] = i > 0 ? items[i - 1] : .undefined("loop.previtem")
        o["nextitem"] = i < n - 1 ? items[i + 1] : .undefined("loop.nextitem")
        o["cycle"] = .function(JinjaFunction(name: "loop.cycle") { args, _ in args.isEmpty ? .none : args[i % args.count] })
        return .object(o)
    }

    /// What `for` iterates: list items, dict keys, string characters.
    func iterate(_ v: JinjaValue) throws -> [JinjaValue] {
        switch v {
        case .array(let a), .tuple(let a): return a
        case .object(let o): return o.keys.map { .string($0) }
        case .string(let s): return s.map { .string(String($0)) }
        case .undefined: return []
        case .namespace(let n): return n.object.keys.map { .string($0) }
        default: throw error("\(v.typeName) object is not iterable")
        }
    }

    // MARK: expressions

    func eval(_ e: JinjaExpr, _ s: Scope) throws -> JinjaValue {
        switch e {
        case .literal(let v): return v
        case .name(let n): return s.lookup(n) ?? .undefined(n)
        case .list(let items): return .array(try items.map { try eval($0, s) })
        case .tuple(let items): return .tuple(try items.map { try eval($0, s) })
        case .dict(let pairs):
            var o = JinjaObject()
            for (k, v) in pairs { o[try eval(k, s).text] = try eval(v, s) }
            return .object(o)
        case .attribute(let base, let name):
            return try attribute(try eval(base, s), name, describing: base)
        case .item(let base, let index):
            return try item(try eval(base, s), try eval(index, s), describing: base)
        case .slice(let base, let a, let b, let c):
            return try slice(try eval(base, s), try a.map { try eval($0, s) }, try b.map { try eval($0, s) }, try c.map { try eval($0, s) })
        case .call(let f, let args, let kwargs):
            let callee = try eval(f, s)
            guard case .function(let fn) = callee else {
                if case .undefined(let n) = callee { throw error("\(n) is undefined (called as a function)") }
                throw error("\(callee.typeName) object is not callable")
            }
            return try fn.call(try args.map { try eval($0, s) }, try kwargs.map { ($0.0, try eval($0.1, s)) })
        case .filter(let base, let name, let args, let kwargs):
            if name == "default" || name == "d" {
                // default looks at an undefined value without failing on it.
                let v = try eval(base, s)
                return try JinjaBuiltins.filter(self, name, v, try args.map { try eval($0, s) }, try kwargs.map { ($0.0, try eval($0.1, s)) })
            }
            return try JinjaBuiltins.filter(self, name, try eval(base, s), try args.map { try eval($0, s) }, try kwargs.map { ($0.0, try eval($0.1, s)) })
        case .test(let base, let name, let args, let negated):
            let r = try JinjaBuiltins.test(self, name, try eval(base, s), try args.map { try eval($0, s) })
            return .bool(r != negated)
        case .unary(let op, let x):
            let v = try eval(x, s)
            switch op {
            case "not": return .bool(!v.truthy)
            case "-":
                if case .int(let i) = v { return .int(-i) }
                if let d = v.number { return .double(-d) }
                throw error("bad operand type for unary -: \(v.typeName)")
            default: return v
            }
        case .binary(let op, let a, let b):
            if op == "and" { let x = try eval(a, s); return x.truthy ? try eval(b, s) : x }
            if op == "or" { let x = try eval(a, s); return x.truthy ? x : try eval(b, s) }
            return try binary(op, try eval(a, s), try eval(b, s))
        case .compare(let first, let rest):
            var left = try eval(first, s)
            for (op, re) in rest {
                let right = try eval(re, s)
                if !(try compare(op, left, right)) { return .bool(false) }
                left = right
            }
            return .bool(true)
        case .conditional(let then, let condition, let otherwise):
            if try eval(condition, s).truthy { return try eval(then, s) }
            return try otherwise.map { try eval($0, s) } ?? .undefined("conditional expression")
        }
    }

    func describe(_ e: JinjaExpr) -> String {
        switch e {
        case .name(let n): return n
        case .attribute(let b, let n): return describe(b) + "." + n
        case .item(let b, let i):
            if case .literal(let v) = i { return describe(b) + "[" + v.repr + "]" }
            return describe(b) + "[...]"
        default: return "value"
        }
    }

    /// `x.name`: an attribute (a method) first, then an item, as Jinja's getattr does.
    func attribute(_ v: JinjaValue, _ name: String, describing base: JinjaExpr) throws -> JinjaValue {
        if case .undefined(let n) = v { throw error("\(n) is undefined (reading .\(name))") }
        if let m = JinjaBuiltins.method(self, v, name) { return .function(m) }
        switch v {
        case .object(let o): return o[name] ?? .undefined("\(describe(base)).\(name)")
        case .namespace(let ns): return ns.object[name] ?? .undefined("\(describe(base)).\(name)")
        default: return .undefined("\(describe(base)).\(name)")
        }
    }

    /// `x[key]`: an item first, then an attribute.
    func item(_ v: JinjaValue, _ key: JinjaValue, describing base: JinjaExpr) throws -> JinjaValue {
        switch v {
        case .undefined(let n): throw error("\(n) is undefined (reading [\(key.repr)])")
        case .array(let a), .tuple(let a):
            guard let i = key.intValue else { return .undefined("\(describe(base))[\(key.repr)]") }
            let k = i < 0 ? a.count + i : i
            return k >= 0 && k < a.count ? a[k] : .undefined("\(describe(base))[\(i)]")
        case .string(let str):
            guard let i = key.intValue else { return .undefined("\(describe(base))[\(key.repr)]") }
            let chars = Array(str)
            let k = i < 0 ? chars.count + i : i
            return k >= 0 && k < chars.count ? .string(String(chars[k])) : .undefined("\(describe(base))[\(i)]")
        case .object(let o):
            if case .string(let k) = key, let x = o[k] { return x }
            if case .string(let k) = key, let m = JinjaBuiltins.method(self, v, k) { return .function(m) }
            return .undefined("\(describe(base))[\(key.repr)]")
        case .namespace(let ns):
            if case .string(let k) = key, let x = ns.object[k] { return x }
            return .undefined("\(describe(base))[\(key.repr)]")
        default:
            return .undefined("\(describe(base))[\(key.repr)]")
        }
    }

    func slice(_ v: JinjaValue, _ a: JinjaValue?, _ b: JinjaValue?, _ c: JinjaValue?) throws -> JinjaValue {
        func indices(_ n: Int) throws -> [Int] {
            let step = c?.intValue ?? 1
            guard step != 0 else { throw error("slice step cannot be zero") }
            func norm(_ x: JinjaValue?, _ dflt: Int) -> Int {
                guard let x, let i = x.intValue else { return dflt }
                var k = i < 0 ? i + n : i
                if step > 0 { k = min(max(k, 0), n) } else { k = min(max(k, -1), n - 1) }
                return k
            }
            let start = norm(a, step > 0 ? 0 : n - 1), stop = norm(b, step > 0 ? n : -1)
            return Array(stride(from: start, to: stop, by: step))
        }
        switch v {
        case .array(let arr): return .array(try indices(arr.count).map { arr[$0] })
        case .tuple(let arr): return .tuple(try indices(arr.count).map { arr[$0] })
        case .string(let s):
            let chars = Array(s)
            return .string(String(try indices(chars.count).map { chars[$0] }))
        case .undefined(let n): throw error("\(n) is undefined (sliced)")
        default: throw error("\(v.typeName) object is not subscriptable")
        }
    }

    func binary(_ op: String, _ a: JinjaValue, _ b: JinjaValue) throws -> JinjaValue {
        if op == "~" { return .string(a.text + b.text) }
        switch (op, a, b) {
        case ("+", .string(let x), .string(let y)): return .string(x + y)
        case ("+", .array(let x), .array(let y)): return .array(x + y)
        case ("+", .tuple(let x), .tuple(let y)): return .tuple(x + y)
        case ("*", .string(let x), .int(let n)), ("*", .int(let n), .string(let x)): return .string(String(repeating: x, count: max(n, 0)))
        case ("*", .array(let x), .int(let n)): return .array(Array(repeating: x, count: max(n, 0)).flatMap { $0 })
        default: break
        }
        if case .undefined(let n) = a { throw error("\(n) is undefined (used with \(op))") }
        if case .undefined(let n) = b { throw error("\(n) is undefined (used with \(op))") }
        guard let x = a.number, let y = b.number else {
            throw error("unsupported operand types for \(op): \(a.typeName) and \(b.typeName)")
        }
        let ints = a.intValue != nil && b.intValue != nil
        switch op {
        case "+": return ints ? .int(a.intValue! + b.intValue!) : .double(x + y)
        case "-": return ints ? .int(a.intValue! - b.intValue!) : .double(x - y)
        case "*": return ints ? .int(a.intValue! * b.intValue!) : .double(x * y)
        case "/":
            guard y != 0 else { throw error("division by zero") }
            return .double(x / y)
        case "//":
            guard y != 0 else { throw error("integer division or modulo by zero") }
            if ints { let (p, q) = (a.intValue!, b.intValue!); return .int(Int((Double(p) / Double(q)).rounded(.down))) }
            return .double((x / y).rounded(.down))
        case "%":
            guard y != 0 else { throw error("integer division or modulo by zero") }
            if ints { let (p, q) = (a.intValue!, b.intValue!); let r = p % q; return .int(r != 0 && (r < 0) != (q < 0) ? r + q : r) }
            let r = x.truncatingRemainder(dividingBy: y)
            return .double(r != 0 && (r < 0) != (y < 0) ? r + y : r)
        case "**":
            if ints && b.intValue! >= 0 { var r = 1; for _ in 0..<b.intValue! { r *= a.intValue! }; return .int(r) }
            return .double(pow(x, y))
        default: throw error("unknown operator \(op)")
        }
    }

    func compare(_ op: String, _ a: JinjaValue, _ b: JinjaValue) throws -> Bool {
        switch op {
        case "==": return a.equals(b)
        case "!=": return !a.equals(b)
        case "in": return try contains(b, a)
        case "not in": return !(try contains(b, a))
        default:
            let order: Int
            if let x = a.number, let y = b.number { order = x < y ? -1 : (x > y ? 1 : 0) }
            else if case .string(let x) = a, case .string(let y) = b {
                let xs = Array(x.unicodeScalars.map(\.value)), ys = Array(y.unicodeScalars.map(\.value))
                order = xs.lexicographicallyPrecedes(ys) ? -1 : (xs == ys ? 0 : 1)
            } else {
                throw error("'\(op)' not supported between \(a.typeName) and \(b.typeName)")
            }
            switch op {
            case "<": return order < 0
            case ">": return order > 0
            case "<=": return order <= 0
            default: return order >= 0
            }
        }
    }

    func contains(_ container: JinjaValue, _ x: JinjaValue) throws -> Bool {
        switch container {
        case .string(let s):
            guard case .string(let sub) = x else { throw error("'in <string>' requires a string, not \(x.typeName)") }
            return sub.isEmpty || s.contains(sub)
        case .array(let a), .tuple(let a): return a.contains { $0.equals(x) }
        case .object(let o): if case .string(let k) = x { return o[k] != nil }; return false
        case .namespace(let n): if case .string(let k) = x { return n.object[k] != nil }; return false
        case .undefined(let n): throw error("\(n) is undefined (used with in)")
        default: throw error("argument of type \(container.typeName) is not iterable")
        }
    }
}
