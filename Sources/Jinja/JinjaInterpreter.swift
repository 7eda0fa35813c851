import Foundation
import Tokenizers

/// Renders parsed statements: scopes as Jinja has them (a `for` body has its own; `set` inside
/// it does not leak out, which is why templates use `namespace`), Python's operators on values,
/// `loop`, macros, `break`/`continue`. Everything a template can make grow (nesting, loops,
/// strings, lists, output) is counted against `limits` before it is done.
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
    let limits: JinjaLimits
    /// This render's use of `limits`.
    var loopIterations = 0
    var built = 0
    var renderDepth = 0
    var macroDepth = 0
    /// Every namespace made in this render. They are emptied when it ends: that breaks the
    /// reference cycles a template can make (`set ns.a = ns`), which would otherwise leak.
    var namespaces: [JinjaNamespace] = []
    /// Large arrays whose nesting was measured lately (kept alive, so identity is safe).
    var measured: [(items: [JinjaValue], depth: Int)] = []
    /// Scopes that hold a macro defined in them (emptied when the render ends).
    var macroScopes: [Scope] = []
    /// Whether the depth walk in progress met a namespace.
    var walkedNamespace = false

    init(globals: [String: JinjaValue], limits: JinjaLimits = .default) {
        let g = Scope(parent: nil)
        g.vars = globals
        self.globals = g
        self.limits = limits
        for (name, f) in JinjaBuiltins.globals(self) where g.vars[name] == nil { g.vars[name] = .function(f) }
    }

    func error(_ m: String) -> TemplateError { TemplateError(m, line: line) }

    /// A TemplateError thrown below without a line (values, JSON) gets the current one.
    func located<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as TemplateError where e.line == 0 && !e.raised { throw error(e.message) }
    }

    func render(_ nodes: [JinjaNode]) throws -> String {
        defer {
            for ns in namespaces { ns.object = JinjaObject() }
            namespaces = []
            measured = []
            // A macro holds the scope it was defined in, which holds the macro; the builtins hold
            // this interpreter, whose globals hold them: emptied, or every render would leak.
            for s in macroScopes { s.vars = [:] }
            macroScopes = []
            globals.vars = [:]
        }
        var out = ""
        try run(nodes, Scope(parent: globals), &out)
        return out
    }

    func run(_ nodes: [JinjaNode], _ scope: Scope, _ out: inout String) throws {
        for n in nodes { try run(n, scope, &out) }
    }

    func run(_ node: JinjaNode, _ scope: Scope, _ out: inout String) throws {
        try enterNesting()
        defer { renderDepth -= 1 }
        switch node {
        case .text(let t): try emit(t, &out)
        case .output(let e, let l):
            line = l
            try emit(try text(try eval(e, scope)), &out)
        case .ifBlock(let branches, let otherwise, let l):
            for (cond, body) in branches {
                line = l
                if try eval(cond, scope).truthy { try run(body, scope, &out); return }
            }
            try run(otherwise, scope, &out)
        case .forLoop(let targets, let iterable, let condition, let body, let otherwise, let usesLoop, let l):
            line = l
            let seq = try eval(iterable, scope)
            if case .iterator = seq, !usesLoop {
                try forEach(targets, seq, condition, body, otherwise, scope, &out)
            } else {
                try forLoop(targets, seq, condition, body, otherwise, scope, &out)
            }
        case .filterBlock(let filters, let body, let l):
            var captured = ""
            try run(body, Scope(parent: scope), &captured)
            line = l
            var v = JinjaValue.string(captured)
            for (name, call) in filters {
                let (args, kwargs) = try arguments(call, scope)
                v = try located { try JinjaBuiltins.filter(self, name, v, args, kwargs) }
            }
            try emit(try text(v), &out)
        case .set(let target, let e, let l):
            line = l
            try assign(target, try eval(e, scope), scope)
        case .setBlock(let n, let body, _):
            var captured = ""
            try run(body, scope, &captured)
            scope.vars[n] = .string(captured)
        case .macro(let m, _):
            scope.vars[m.name] = .function(macro(m, defined: scope))
            macroScopes.append(scope)
        case .breakLoop(let l): line = l; throw Flow.breakLoop
        case .continueLoop(let l): line = l; throw Flow.continueLoop
        case .generation(let body): try run(body, scope, &out)
        }
    }

    func forLoop(_ targets: [String], _ iterable: JinjaValue, _ condition: JinjaExpr?, _ body: [JinjaNode],
                 _ otherwise: [JinjaNode], _ scope: Scope, _ out: inout String) throws {
        let seq = try iterate(iterable)
        var items: [JinjaValue] = []
        for item in seq {
            if let condition {
                try countIteration()
                let s = Scope(parent: scope)
                try bind(targets, item, s)
                if !(try eval(condition, s).truthy) { continue }
            }
            items.append(item)
        }
        if items.isEmpty { try run(otherwise, scope, &out); return }
        for (i, item) in items.enumerated() {
            try countIteration()
            let s = Scope(parent: scope)
            try bind(targets, item, s)
            s.vars["loop"] = loopObject(i, items)
            do { try run(body, s, &out) } catch Flow.breakLoop { break } catch Flow.continueLoop { continue }
        }
    }

    /// A loop over an iterator whose body does not use `loop`: items read one at a time, so a
    /// `break` leaves the rest in the iterator.
    func forEach(_ targets: [String], _ iterator: JinjaValue, _ condition: JinjaExpr?, _ body: [JinjaNode],
                 _ otherwise: [JinjaNode], _ scope: Scope, _ out: inout String) throws {
        let read = reader(iterator)
        var ran = false
        while let item = try read() {
            try countIteration()
            let s = Scope(parent: scope)
            try bind(targets, item, s)
            if let condition, !(try eval(condition, s).truthy) { continue }
            ran = true
            do { try run(body, s, &out) } catch Flow.breakLoop { break } catch Flow.continueLoop { continue }
        }
        if !ran { try run(otherwise, scope, &out) }
    }

    func assign(_ target: JinjaNode.Target, _ v: JinjaValue, _ scope: Scope) throws {
        try checkStored(v)
        switch target {
        case .name(let n): scope.vars[n] = v
        case .tuple(let names): try bind(names, v, scope)
        case .attribute(let n, let attr):
            guard case .namespace(let ns)? = scope.lookup(n) else {
                throw error("cannot assign attribute \(attr) of \(n): only a namespace() takes attribute assignments")
            }
            ns.object[attr] = v
        }
    }

    func macro(_ m: JinjaMacro, defined: Scope) -> JinjaFunction {
        JinjaFunction(name: m.name) { [unowned self] args, kwargs in try self.call(m, defined, args, kwargs) }
    }

    /// A macro call, with Jinja's argument rules: parameters by position or name, then their
    /// defaults, else undefined; extra positional arguments only if the body uses `varargs`,
    /// unknown keyword ones only if it uses `kwargs`.
    func call(_ m: JinjaMacro, _ defined: Scope, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws -> JinjaValue {
        macroDepth += 1
        defer { macroDepth -= 1 }
        guard macroDepth <= limits.maxMacroDepth else { throw limitError("macro calls in progress (a macro calling itself?)", limits.maxMacroDepth, "maxMacroDepth") }
        guard args.count <= m.params.count || m.takesVarargs else {
            throw error("macro '\(m.name)' takes not more than \(m.params.count) argument(s)")
        }
        let s = Scope(parent: defined)
        var extra = JinjaObject()
        for (k, v) in kwargs {
            if let i = m.params.firstIndex(where: { $0.0 == k }) {
                if i < args.count { throw error("macro '\(m.name)' got multiple values for argument '\(k)'") }
            } else if m.takesKwargs {
                extra[k] = v
            } else {
                throw error("macro '\(m.name)' takes no keyword argument '\(k)'")
            }
        }
        for (i, (p, d)) in m.params.enumerated() {
            if i < args.count { s.vars[p] = args[i] }
            else if let kw = kwargs.first(where: { $0.0 == p }) { s.vars[p] = kw.1 }
            else if let d { s.vars[p] = try eval(d, s) }
            else { s.vars[p] = .undefined(p) }
        }
        s.vars["varargs"] = .tuple(Array(args.dropFirst(m.params.count)))
        s.vars["kwargs"] = .object(extra)
        for v in s.vars.values { try checkStored(v) }
        var out = ""
        let saved = line
        try run(m.body, s, &out)
        line = saved
        return .string(out)
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

    /// What `for` iterates: list items, dict keys, string characters (code points, as Python);
    /// an undefined value is empty, as Jinja's Undefined is.
    func iterate(_ v: JinjaValue) throws -> [JinjaValue] {
        switch v {
        case .array(let a), .tuple(let a): return a
        case .object(let o): return o.keys
        case .iterator(let it): return try drain(it)
        case .string(let s), .markup(let s):
            try reserveList(s.unicodeScalars.count)
            return s.unicodeScalars.map { .string(String($0)) }
        case .undefined: return []
        case .namespace(let n): return n.object.keys
        default: throw error("'\(v.typeName)' object is not iterable")
        }
    }

    // MARK: expressions

    func eval(_ e: JinjaExpr, _ s: Scope) throws -> JinjaValue {
        try enterNesting()
        defer { renderDepth -= 1 }
        switch e {
        case .literal(let v): return v
        case .name(let n): return s.lookup(n) ?? .undefined(n)
        case .list(let items): return .array(try items.map { try eval($0, s) })
        case .tuple(let items): return .tuple(try items.map { try eval($0, s) })
        case .dict(let pairs):
            var o = JinjaObject()
            for (k, v) in pairs {
                let key = try eval(k, s)
                guard JinjaKey(key) != nil else { throw error("unhashable type: '\(key.typeName)' (as a dict key)") }
                o[key] = try eval(v, s)
            }
            return .object(o)
        case .attribute(let base, let name):
            return try attribute(try eval(base, s), name, describing: base)
        case .item(let base, let index):
            return try item(try eval(base, s), try eval(index, s), describing: base)
        case .slice(let base, let a, let b, let c):
            return try slice(try eval(base, s), try a.map { try eval($0, s) }, try b.map { try eval($0, s) }, try c.map { try eval($0, s) })
        case .call(let f, let call):
            let callee = try eval(f, s)
            guard case .function(let fn) = callee else {
                if case .undefined(let n) = callee { throw error("'\(n)' is undefined (called as a function)") }
                throw error("'\(callee.typeName)' object is not callable")
            }
            let (args, kwargs) = try arguments(call, s)
            return try located { try fn.call(args, kwargs) }
        case .filter(let base, let name, let call):
            let v = try eval(base, s)
            let (args, kwargs) = try arguments(call, s)
            return try located { try JinjaBuiltins.filter(self, name, v, args, kwargs) }
        case .test(let base, let name, let call, let negated):
            let v = try eval(base, s)
            let (args, _) = try arguments(call, s)
            return .bool(try located { try JinjaBuiltins.test(self, name, v, args) } != negated)
        case .unary(let op, let x):
            return try unary(op, try eval(x, s))
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

    /// A call's arguments evaluated, `*iterable` and `**mapping` spread as Python spreads them.
    func arguments(_ call: JinjaCallArgs, _ s: Scope) throws -> ([JinjaValue], [(String, JinjaValue)]) {
        var args = try call.args.map { try eval($0, s) }
        if let star = call.star {
            let v = try eval(star, s)
            if case .none = v { throw error("Value after * must be an iterable, not NoneType") }
            args += try iterate(v)
        }
        var kwargs = try call.kwargs.map { ($0.0, try eval($0.1, s)) }
        if let starStar = call.starStar {
            let v = try eval(starStar, s)
            guard case .object(let o) = v else { throw error("argument after ** must be a mapping, not \(v.typeName)") }
            for (k, x) in o.pairs {
                guard case .string(let name) = k else { throw error("keywords must be strings") }
                kwargs.append((name, x))
            }
        }
        var seen = Set<String>()
        for (k, _) in kwargs where !seen.insert(k).inserted { throw error("got multiple values for keyword argument '\(k)'") }
        return (args, kwargs)
    }

    func describe(_ e: JinjaExpr) -> String {
        switch e {
        case .name(let n): return n
        case .attribute(let b, let n): return describe(b) + "." + n
        case .item(let b, let i):
            if case .literal(let v) = i { return describe(b) + "[" + v.shortRepr + "]" }
            return describe(b) + "[...]"
        default: return "value"
        }
    }

    /// `x.name`: an attribute (a method) first, then an item, as Jinja's getattr does. Reading
    /// from an undefined value is Jinja's UndefinedError; a missing attribute is undefined.
    func attribute(_ v: JinjaValue, _ name: String, describing base: JinjaExpr) throws -> JinjaValue {
        if case .undefined(let n) = v { throw error("'\(n)' is undefined (reading .\(name))") }
        if let m = JinjaBuiltins.method(self, v, name) { return .function(m) }
        switch v {
        case .object(let o): return o[name] ?? .undefined("\(describe(base)).\(name)")
        case .namespace(let ns): return ns.object[name] ?? .undefined("\(describe(base)).\(name)")
        default: return .undefined("\(describe(base)).\(name)")
        }
    }

    /// `x[key]`: an item first, then an attribute.
    func item(_ v: JinjaValue, _ key: JinjaValue, describing base: JinjaExpr) throws -> JinjaValue {
        let missing = JinjaValue.undefined("\(describe(base))[\(key.shortRepr)]")
        switch v {
        case .undefined(let n): throw error("'\(n)' is undefined (reading [\(key.shortRepr)])")
        case .array(let a), .tuple(let a):
            guard let i = key.intValue else { return missing }
            let k = i < 0 ? a.count + i : i
            return k >= 0 && k < a.count ? a[k] : missing
        case .string(let str), .markup(let str):
            guard let i = key.intValue else { return missing }
            let scalars = Array(str.unicodeScalars)
            let k = i < 0 ? scalars.count + i : i
            guard k >= 0 && k < scalars.count else { return missing }
            let c = JinjaValue.string(String(scalars[k]))
            return v.isMarkup ? c.asMarkup : c
        case .object(let o):
            if let x = o[key] { return x }
            if case .string(let k) = key, let m = JinjaBuiltins.method(self, v, k) { return .function(m) }
            return missing
        case .namespace(let ns):
            return ns.object[key] ?? missing
        default:
            return missing
        }
    }

    /// `x[a:b:c]` with Python's rules: omitted or None bounds, negative ones from the end,
    /// out-of-range ones clamped, any step but zero.
    func slice(_ v: JinjaValue, _ a: JinjaValue?, _ b: JinjaValue?, _ c: JinjaValue?) throws -> JinjaValue {
        func index(_ x: JinjaValue?) throws -> Int? {
            guard let x else { return nil }
            if case .none = x { return nil }
            guard let i = x.intValue else { throw error("slice indices must be integers or None, not \(x.typeName)") }
            return i
        }
        let step = try index(c) ?? 1
        guard step != 0 else { throw error("slice step cannot be zero") }
        let (start, stop) = (try index(a), try index(b))
        func pick<T>(_ items: [T]) -> [T] { JinjaInterpreter.sliceIndices(items.count, start, stop, step).map { items[$0] } }
        switch v {
        case .array(let arr): return .array(pick(arr))
        case .tuple(let arr): return .tuple(pick(arr))
        case .string(let s), .markup(let s):
            var out = String.UnicodeScalarView()
            out.append(contentsOf: pick(Array(s.unicodeScalars)))
            return v.isMarkup ? .markup(String(out)) : .string(String(out))
        case .undefined(let n): throw error("'\(n)' is undefined (sliced)")
        case .iterator(let it): throw error("'\(it.typeName)' object is not subscriptable")
        default: throw error("'\(v.typeName)' object is not subscriptable")
        }
    }

    /// The indices `range(n)[start:stop:step]` selects (no overflow for any Int bounds or step).
    static func sliceIndices(_ n: Int, _ start: Int?, _ stop: Int?, _ step: Int) -> [Int] {
        func clamp(_ i: Int, _ low: Int, _ high: Int) -> Int {
            let k = i < 0 ? (i < -n ? low : i + n) : i
            return min(max(k, low), high)
        }
        let from = start.map { clamp($0, step > 0 ? 0 : -1, step > 0 ? n : n - 1) } ?? (step > 0 ? 0 : n - 1)
        let to = stop.map { clamp($0, step > 0 ? 0 : -1, step > 0 ? n : n - 1) } ?? (step > 0 ? n : -1)
        let count: Int
        if step > 0 { count = from < to ? (to - from - 1) / step + 1 : 0 }
        else { count = from > to ? -((from - to - 1) / step) + 1 : 0 }
        return (0..<count).map { from + $0 * step }
    }

    func compare(_ op: String, _ a: JinjaValue, _ b: JinjaValue) throws -> Bool {
        switch op {
        case "==": return a.equals(b)
        case "!=": return !a.equals(b)
        case "in": return try contains(b, a)
        case "not in": return !(try contains(b, a))
        default:
            if case .undefined(let n) = a { throw error("'\(n)' is undefined (compared with \(op))") }
            if case .undefined(let n) = b { throw error("'\(n)' is undefined (compared with \(op))") }
            let order = try located { try JinjaValue.order(a, b) }
            switch op {
            case "<": return order < 0
            case ">": return order > 0
            case "<=": return order <= 0
            default: return order >= 0
            }
        }
    }

    /// Python's `x in container`; nothing is in an undefined value.
    func contains(_ container: JinjaValue, _ x: JinjaValue) throws -> Bool {
        switch container {
        case .string(let s), .markup(let s):
            guard let sub = x.plainString else { throw error("'in <string>' requires string as left operand, not \(x.typeName)") }
            return !JinjaBuiltins.matches(Array(sub.unicodeScalars), in: Array(s.unicodeScalars), firstOnly: true).isEmpty
        case .array(let a), .tuple(let a): return a.contains { $0.equals(x) }
        case .object(let o):
            guard JinjaKey(x) != nil else { throw error("unhashable type: '\(x.typeName)'") }
            return o[x] != nil
        case .namespace(let n): return n.object[x] != nil
        case .iterator(let it): return try iteratorContains(it, x)
        case .undefined: return false
        default: throw error("argument of type '\(container.typeName)' is not iterable")
        }
    }
}

// MARK: arithmetic

/// Python's operators. Integers are 64-bit here where Python's are unbounded, so a result
/// that does not fit is an error, never a wrapped number.
extension JinjaInterpreter {
    func unary(_ op: String, _ v: JinjaValue) throws -> JinjaValue {
        if op == "not" { return .bool(!v.truthy) }
        if case .undefined(let n) = v { throw error("'\(n)' is undefined (used with unary \(op))") }
        if let i = v.intValue {
            guard op == "-" else { return .int(i) }
            guard i != .min else { throw overflow("-(\(i))") }
            return .int(-i)
        }
        if let d = v.number { return .double(op == "-" ? -d : d) }
        throw error("bad operand type for unary \(op): '\(v.typeName)'")
    }

    func overflow(_ expression: String) -> TemplateError {
        error("integer overflow: \(expression) does not fit in 64 bits (Python's integers are unbounded; here they are Int64)")
    }

    func binary(_ op: String, _ a: JinjaValue, _ b: JinjaValue) throws -> JinjaValue {
        if op == "~" { return try concatenate(try text(a), try text(b)) }
        if op == "+", let v = try JinjaMarkup.add(self, a, b) { return v }
        if op == "%", let f = a.plainString {
            let s = try located { try PrintfFormat.format(self, f, b, escaping: a.isMarkup) }
            return a.isMarkup ? .markup(s) : .string(s)
        }
        if op == "*", a.isMarkup || b.isMarkup {
            // Markup * n is a Markup.
            let plain = { (v: JinjaValue) in v.plainString.map(JinjaValue.string) ?? v }
            if let v = try sequence(op, plain(a), plain(b)) { return v.asMarkup }
        }
        if let v = try sequence(op, a, b) { return v }
        if case .undefined(let n) = a { throw error("'\(n)' is undefined (used with \(op))") }
        if case .undefined(let n) = b { throw error("'\(n)' is undefined (used with \(op))") }
        if let p = a.intValue, let q = b.intValue { return try integer(op, p, q) }
        guard let x = a.number, let y = b.number else {
            throw error("unsupported operand type(s) for \(op): '\(a.typeName)' and '\(b.typeName)'")
        }
        return try float(op, x, y)
    }

    func concatenate(_ x: String, _ y: String) throws -> JinjaValue {
        try reserveString(x.utf8.count + y.utf8.count)
        return .string(x + y)
    }

    /// `+` and `*` on strings, lists and tuples (nil: not such a case), sized before building.
    func sequence(_ op: String, _ a: JinjaValue, _ b: JinjaValue) throws -> JinjaValue? {
        switch (op, a, b) {
        case ("+", .string(let x), .string(let y)): return try concatenate(x, y)
        case ("+", .array(let x), .array(let y)): try reserveList(x.count + y.count); return .array(x + y)
        case ("+", .tuple(let x), .tuple(let y)): try reserveList(x.count + y.count); return .tuple(x + y)
        case ("*", .string(let x), _), ("*", _, .string(let x)):
            guard let n = (a.isString ? b : a).intValue else { return nil }
            let count = max(n, 0)
            try reserveString(product(x.utf8.count, count))
            return .string(String(repeating: x, count: count))
        case ("*", .array(let x), _), ("*", _, .array(let x)), ("*", .tuple(let x), _), ("*", _, .tuple(let x)):
            guard let n = (a.isSequence ? b : a).intValue else { return nil }
            let count = max(n, 0)
            try reserveList(product(x.count, count))
            let items = Array(repeating: x, count: count).flatMap { $0 }
            if case .tuple = a { return .tuple(items) }
            if case .tuple = b { return .tuple(items) }
            return .array(items)
        default: return nil
        }
    }

    func integer(_ op: String, _ p: Int, _ q: Int) throws -> JinjaValue {
        let r: (partialValue: Int, overflow: Bool)
        switch op {
        case "+": r = p.addingReportingOverflow(q)
        case "-": r = p.subtractingReportingOverflow(q)
        case "*": r = p.multipliedReportingOverflow(by: q)
        case "/":
            guard q != 0 else { throw error("division by zero") }
            return .double(Double(p) / Double(q))
        case "//":
            guard q != 0 else { throw error("integer division or modulo by zero") }
            guard !(p == .min && q == -1) else { throw overflow("\(p) // \(q)") }
            let (d, m) = p.quotientAndRemainder(dividingBy: q)
            return .int(m != 0 && (m < 0) != (q < 0) ? d - 1 : d)
        case "%":
            guard q != 0 else { throw error("integer modulo by zero") }
            if q == -1 { return .int(0) }
            let m = p % q
            return .int(m != 0 && (m < 0) != (q < 0) ? m + q : m)
        case "**": return try power(p, q)
        default: throw error("unknown operator \(op)")
        }
        guard !r.overflow else { throw overflow("\(p) \(op) \(q)") }
        return .int(r.partialValue)
    }

    /// `p ** q`: exact by squaring while it fits; a negative exponent gives a float, as in Python.
    func power(_ p: Int, _ q: Int) throws -> JinjaValue {
        if q < 0 {
            guard p != 0 else { throw error("0.0 cannot be raised to a negative power") }
            return .double(Foundation.pow(Double(p), Double(q)))
        }
        var result = 1, base = p, e = q
        while e > 0 {
            if e & 1 == 1 {
                let (r, o) = result.multipliedReportingOverflow(by: base)
                guard !o else { throw overflow("\(p) ** \(q)") }
                result = r
            }
            e >>= 1
            if e > 0 {
                let (b, o) = base.multipliedReportingOverflow(by: base)
                guard !o else { throw overflow("\(p) ** \(q)") }
                base = b
            }
        }
        return .int(result)
    }

    func float(_ op: String, _ x: Double, _ y: Double) throws -> JinjaValue {
        switch op {
        case "+": return .double(x + y)
        case "-": return .double(x - y)
        case "*": return .double(x * y)
        case "/":
            guard y != 0 else { throw error("float division by zero") }
            return .double(x / y)
        case "//":
            guard y != 0 else { throw error("float floor division by zero") }
            return .double((x / y).rounded(.down))
        case "%":
            guard y != 0 else { throw error("float modulo") }
            let r = x.truncatingRemainder(dividingBy: y)
            return .double(r != 0 && (r < 0) != (y < 0) ? r + y : r)
        case "**":
            guard !(x == 0 && y < 0) else { throw error("0.0 cannot be raised to a negative power") }
            guard x >= 0 || y == y.rounded() else { throw error("\(JinjaValue.pythonFloat(x)) ** \(JinjaValue.pythonFloat(y)) is a complex number") }
            return .double(Foundation.pow(x, y))
        default: throw error("unknown operator \(op)")
        }
    }
}

// MARK: limits

/// Each check comes before the work it guards: a size is computed (saturating, so no
/// overflow) and compared with its limit before anything is allocated.
extension JinjaInterpreter {
    func limitError(_ what: String, _ limit: Int, _ name: String) -> TemplateError {
        error("\(what): passes the sandbox limit of \(limit) (JinjaLimits.\(name))")
    }

    /// `str(v)`, failing instead of building a text past maxStringBytes (a list of a million
    /// references to one long string prints as terabytes).
    func text(_ v: JinjaValue) throws -> String {
        if case .string(let s) = v { return s }
        guard let t = v.text(limit: limits.maxStringBytes) else {
            throw limitError("the text of a \(v.typeName) of more than \(limits.maxStringBytes) bytes", limits.maxStringBytes, "maxStringBytes")
        }
        try spend(t.utf8.count)
        return t
    }

    func text(_ v: JinjaValue?) throws -> String? { try v.map { try text($0) } }

    /// `a + b`, or Int.max when that overflows (always over any limit).
    func sum(_ a: Int, _ b: Int) -> Int {
        let (s, o) = a.addingReportingOverflow(b)
        return o ? .max : s
    }

    /// `a * b`, or Int.max when that overflows (always over any limit).
    func product(_ a: Int, _ b: Int) -> Int {
        let (p, o) = a.multipliedReportingOverflow(by: b)
        return o ? .max : p
    }

    /// Before building a string of `bytes` UTF-8 bytes.
    func reserveString(_ bytes: Int) throws {
        guard bytes <= limits.maxStringBytes else { throw limitError("a string of \(bytes) bytes", limits.maxStringBytes, "maxStringBytes") }
        try spend(bytes)
    }

    /// Before building a list of `count` elements.
    func reserveList(_ count: Int) throws {
        guard count <= limits.maxListLength else { throw limitError("a list of \(count) elements", limits.maxListLength, "maxListLength") }
        try spend(count)
    }

    func spend(_ n: Int) throws {
        built += n
        guard built <= limits.maxBuiltTotal else {
            throw limitError("strings and lists built in this render (bytes and elements added up)", limits.maxBuiltTotal, "maxBuiltTotal")
        }
    }

    /// Appends rendered text, within the output limit.
    func emit(_ s: String, _ out: inout String) throws {
        guard s.utf8.count <= limits.maxOutputBytes - out.utf8.count else {
            throw limitError("rendered text of more than \(limits.maxOutputBytes) bytes", limits.maxOutputBytes, "maxOutputBytes")
        }
        out += s
    }

    func countIteration() throws {
        loopIterations += 1
        guard loopIterations <= limits.maxLoopIterations else {
            throw limitError("loop iterations in this render", limits.maxLoopIterations, "maxLoopIterations")
        }
    }

    /// One more statement or expression in evaluation (the caller undoes it with defer).
    func enterNesting() throws {
        renderDepth += 1
        guard renderDepth <= limits.maxRenderDepth else {
            throw limitError("statements and expressions evaluated within each other", limits.maxRenderDepth, "maxRenderDepth")
        }
    }

    /// A value about to be stored (`set`, a macro's arguments) nests no deeper than
    /// maxValueDepth: only stored values can be fed back into themselves, in a loop through a
    /// namespace, so this bounds every value printing, comparing or freeing walks through.
    func checkStored(_ v: JinjaValue) throws {
        var path: Set<ObjectIdentifier> = []
        guard depth(of: v, &path, limit: limits.maxValueDepth) <= limits.maxValueDepth else {
            throw limitError("a value nesting lists, dicts and namespaces deeper than \(limits.maxValueDepth) levels", limits.maxValueDepth, "maxValueDepth")
        }
    }

    /// How deep `v` nests, or any number past `limit` as soon as it is known to pass it. A
    /// namespace already on `path` is a cycle and adds nothing.
    func depth(of v: JinjaValue, _ path: inout Set<ObjectIdentifier>, limit: Int) -> Int {
        guard limit >= 0 else { return 1 }
        switch v {
        case .array(let a), .tuple(let a): return depth(of: a, &path, limit: limit)
        case .object(let o):
            var d = 0
            for (k, x) in o.pairs {
                d = max(d, depth(of: k, &path, limit: limit - 1), depth(of: x, &path, limit: limit - 1))
                if d > limit - 1 { break }
            }
            return d + 1
        case .namespace(let n):
            let id = ObjectIdentifier(n)
            walkedNamespace = true
            guard !path.contains(id) else { return 0 }
            path.insert(id)
            defer { path.remove(id) }
            return depth(of: .object(n.object), &path, limit: limit)
        default: return 0
        }
    }

    /// Arrays of 1024 items or more are remembered with their depth (while no namespace, whose
    /// contents can change, is inside), so a template storing one list over and over does not
    /// walk it each time.
    func depth(of a: [JinjaValue], _ path: inout Set<ObjectIdentifier>, limit: Int) -> Int {
        let big = a.count >= 1024
        let address = a.withUnsafeBufferPointer { $0.baseAddress.map { UInt(bitPattern: $0) } }
        if big, let address, let hit = measured.first(where: { m in m.items.withUnsafeBufferPointer { $0.baseAddress.map { UInt(bitPattern: $0) } } == address && m.items.count == a.count }) {
            return hit.depth
        }
        let outer = walkedNamespace
        walkedNamespace = false
        defer { walkedNamespace = walkedNamespace || outer }
        var d = 0
        for x in a {
            d = max(d, depth(of: x, &path, limit: limit - 1))
            if d > limit - 1 { return d + 1 }
        }
        if big && !walkedNamespace && d + 1 <= limit {
            if measured.count >= 16 { measured.removeFirst() }
            measured.append((a, d + 1))
        }
        return d + 1
    }
}
