import Tokenizers
/// An expression in a template.
indirect enum JinjaExpr {
    case literal(JinjaValue)
    case name(String)
    case list([JinjaExpr])
    case tuple([JinjaExpr])
    case dict([(JinjaExpr, JinjaExpr)])
    case attribute(JinjaExpr, String)
    case item(JinjaExpr, JinjaExpr)
    case slice(JinjaExpr, JinjaExpr?, JinjaExpr?, JinjaExpr?)
    case call(JinjaExpr, JinjaCallArgs)
    case filter(JinjaExpr, String, JinjaCallArgs)
    case test(JinjaExpr, String, JinjaCallArgs, negated: Bool)
    case unary(String, JinjaExpr)
    case binary(String, JinjaExpr, JinjaExpr)
    case compare(JinjaExpr, [(String, JinjaExpr)])
    case conditional(then: JinjaExpr, condition: JinjaExpr, otherwise: JinjaExpr?)
}

/// A call's arguments as written: `f(a, *rest, key=1, **more)` (Jinja's order: positional
/// ones, then one `*iterable`, keyword ones, then one `**mapping`).
struct JinjaCallArgs {
    var args: [JinjaExpr] = []
    var kwargs: [(String, JinjaExpr)] = []
    var star: JinjaExpr? = nil
    var starStar: JinjaExpr? = nil
}

/// `{% macro name(params) %}`: whether its body names `varargs` or `kwargs` decides, as in
/// Jinja, whether extra positional or unknown keyword arguments are accepted.
struct JinjaMacro {
    let name: String
    let params: [(String, JinjaExpr?)]
    let body: [JinjaNode]
    let takesVarargs: Bool
    let takesKwargs: Bool
}

/// A statement of a template; `line` is where its tag starts, for error messages.
indirect enum JinjaNode {
    enum Target { case name(String), attribute(String, String), tuple([String]) }

    case text(String)
    case output(JinjaExpr, line: Int)
    case ifBlock([(JinjaExpr, [JinjaNode])], otherwise: [JinjaNode], line: Int)
    /// `usesLoop`: whether the body names `loop` (without it, an iterator is read item by item,
    /// so a `break` leaves the rest unread, as in jinja2).
    case forLoop(targets: [String], iterable: JinjaExpr, condition: JinjaExpr?, body: [JinjaNode], otherwise: [JinjaNode], usesLoop: Bool, line: Int)
    /// `{% filter name(args)|name2 %}body{% endfilter %}`: the body's text through the filters.
    case filterBlock([(String, JinjaCallArgs)], [JinjaNode], line: Int)
    case set(Target, JinjaExpr, line: Int)
    case setBlock(String, [JinjaNode], line: Int)
    case macro(JinjaMacro, line: Int)
    case breakLoop(line: Int)
    case continueLoop(line: Int)
    case generation([JinjaNode])
}

/// Parses the token stream into statements, with Jinja's operator precedence. Nesting is
/// bounded (`JinjaLimits.maxParseDepth`) twice: the parser's own recursion, so that deep input
/// fails here instead of overflowing the stack, and the depth of each expression tree built
/// (`a + b + ...` nests without recursing), which bounds evaluating and freeing it.
struct JinjaParser {
    typealias Token = JinjaLexer.Token
    let tokens: [Token]
    let maxDepth: Int
    var at = 0
    /// Parse functions (and blocks) in progress.
    var depth = 0
    /// The tree depth of the expression the last parse function returned.
    var lastDepth = 0

    init(_ tokens: [Token], maxDepth: Int = JinjaLimits.default.maxParseDepth) {
        self.tokens = tokens
        self.maxDepth = maxDepth
    }

    static func parse(_ source: String, limits: JinjaLimits = .default) throws(TemplateError) -> [JinjaNode] {
        var p = JinjaParser(try JinjaLexer.tokenize(source), maxDepth: limits.maxParseDepth)
        let (nodes, end) = try p.body(until: [])
        if let end { throw TemplateError("unexpected {% \(end) %}", line: p.line) }
        return nodes
    }

    var current: JinjaLexer.Kind { tokens[at].kind }
    var line: Int { tokens[min(at, tokens.count - 1)].line }

    func error(_ m: String) -> TemplateError { TemplateError(m, line: line) }

    mutating func advance() { if at < tokens.count - 1 { at += 1 } }

    func isOp(_ o: String) -> Bool { current == .op(o) }
    func isName(_ n: String) -> Bool { current == .name(n) }

    mutating func expect(_ o: String) throws(TemplateError) {
        guard isOp(o) else { throw error("expected '\(o)', found \(describe(current))") }
        advance()
    }

    mutating func expectName(_ n: String) throws(TemplateError) {
        guard isName(n) else { throw error("expected '\(n)', found \(describe(current))") }
        advance()
    }

    mutating func identifier() throws(TemplateError) -> String {
        guard case .name(let n) = current else { throw error("expected a name, found \(describe(current))") }
        advance()
        return n
    }

    mutating func expectBlockEnd() throws(TemplateError) {
        guard current == .blockEnd else { throw error("expected the end of the tag (%}), found \(describe(current))") }
        advance()
    }

    func describe(_ k: JinjaLexer.Kind) -> String {
        switch k {
        case .text: return "text"
        case .variableBegin: return "'{{'"
        case .variableEnd: return "'}}'"
        case .blockBegin: return "'{%'"
        case .blockEnd: return "'%}'"
        case .name(let n): return "'\(n)'"
        case .string(let s): return "string \(s.debugDescription)"
        case .int(let i): return "\(i)"
        case .float(let d): return "\(d)"
        case .op(let o): return "'\(o)'"
        case .eof: return "the end of the template"
        }
    }

    // MARK: statements

    /// Statements up to a block tag whose keyword is in `ends` (that keyword is returned, its
    /// tag's remaining tokens not consumed), or to the end of the template (nil).
    mutating func body(until ends: Set<String>) throws(TemplateError) -> ([JinjaNode], String?) {
        var nodes: [JinjaNode] = []
        while true {
            switch current {
            case .eof:
                if !ends.isEmpty { throw error("missing {% \(ends.sorted().joined(separator: " or ")) %} before the end of the template") }
                return (nodes, nil)
            case .text(let t):
                nodes.append(.text(t))
                advance()
            case .variableBegin:
                let l = line
                advance()
                let e = try expression()
                guard current == .variableEnd else { throw error("expected '}}', found \(describe(current))") }
                advance()
                nodes.append(.output(e, line: l))
            case .blockBegin:
                let l = line
                advance()
                guard case .name(let keyword) = current else { throw error("expected a statement name after '{%', found \(describe(current))") }
                if ends.contains(keyword) { advance(); return (nodes, keyword) }
                advance()
                nodes.append(try statement(keyword, line: l))
            default:
                throw error("unexpected \(describe(current))")
            }
        }
    }

    func nestingError() -> TemplateError {
        error("expressions and blocks nest deeper than \(maxDepth) levels (JinjaLimits.maxParseDepth)")
    }

    /// One more level of parser recursion (the caller undoes it with `defer { depth -= 1 }`).
    mutating func enter() throws(TemplateError) {
        depth += 1
        guard depth <= maxDepth else { throw nestingError() }
    }

    /// The tree depth of a node over children of these depths.
    func deeper(_ children: Int...) throws(TemplateError) -> Int {
        let d = (children.max() ?? 0) + 1
        guard d <= maxDepth else { throw nestingError() }
        return d
    }

    mutating func statement(_ keyword: String, line l: Int) throws(TemplateError) -> JinjaNode {
        try enter()
        defer { depth -= 1 }
        switch keyword {
        case "if":
            var branches: [(JinjaExpr, [JinjaNode])] = []
            var condition = try expression()
            try expectBlockEnd()
            while true {
                let (nodes, end) = try body(until: ["elif", "else", "endif"])
                branches.append((condition, nodes))
                if end == "elif" {
                    condition = try expression()
                    try expectBlockEnd()
                    continue
                }
                try expectBlockEnd()
                if end == "else" {
                    let (other, _) = try body(until: ["endif"])
                    try expectBlockEnd()
                    return .ifBlock(branches, otherwise: other, line: l)
                }
                return .ifBlock(branches, otherwise: [], line: l)
            }
        case "for":
            var targets = [try identifier()]
            while isOp(",") { advance(); targets.append(try identifier()) }
            try expectName("in")
            let iterable = try ternaryFree()
            var condition: JinjaExpr? = nil
            if isName("if") { advance(); condition = try expression() }
            if isName("recursive") { throw error("recursive for loops are not supported") }
            try expectBlockEnd()
            let bodyStart = at
            let (loopBody, end) = try body(until: ["else", "endfor"])
            let usesLoop = tokens[bodyStart..<at].contains { $0.kind == .name("loop") }
            try expectBlockEnd()
            var other: [JinjaNode] = []
            if end == "else" {
                (other, _) = try body(until: ["endfor"])
                try expectBlockEnd()
            }
            return .forLoop(targets: targets, iterable: iterable, condition: condition, body: loopBody, otherwise: other, usesLoop: usesLoop, line: l)
        case "set":
            let first = try identifier()
            var target = JinjaNode.Target.name(first)
            if isOp(".") {
                advance()
                target = .attribute(first, try identifier())
            } else if isOp(",") {
                var names = [first]
                while isOp(",") { advance(); names.append(try identifier()) }
                target = .tuple(names)
            }
            if current == .blockEnd {
                guard case .name(let n) = target else { throw error("a block set takes one name") }
                advance()
                let (nodes, _) = try body(until: ["endset"])
                try expectBlockEnd()
                return .setBlock(n, nodes, line: l)
            }
            try expect("=")
            let value = try expression()
            try expectBlockEnd()
            return .set(target, value, line: l)
        case "macro":
            let name = try identifier()
            try expect("(")
            var params: [(String, JinjaExpr?)] = []
            while !isOp(")") {
                let p = try identifier()
                var d: JinjaExpr? = nil
                if isOp("=") { advance(); d = try expression() }
                params.append((p, d))
                if isOp(",") { advance() } else { break }
            }
            try expect(")")
            try expectBlockEnd()
            let bodyStart = at
            let (nodes, _) = try body(until: ["endmacro"])
            let names = Set(tokens[bodyStart..<at].compactMap { if case .name(let n) = $0.kind { return n }; return nil })
            if case .name = current { advance() }
            try expectBlockEnd()
            return .macro(JinjaMacro(name: name, params: params, body: nodes, takesVarargs: names.contains("varargs"),
                                     takesKwargs: names.contains("kwargs")), line: l)
        case "break":
            try expectBlockEnd()
            return .breakLoop(line: l)
        case "continue":
            try expectBlockEnd()
            return .continueLoop(line: l)
        case "filter":
            var filters: [(String, JinjaCallArgs)] = []
            repeat {
                if !filters.isEmpty { advance() }
                var name = try identifier()
                while isOp(".") { advance(); name += "." + (try identifier()) }
                filters.append((name, isOp("(") ? try callArguments() : JinjaCallArgs()))
            } while isOp("|")
            try expectBlockEnd()
            let (nodes, _) = try body(until: ["endfilter"])
            try expectBlockEnd()
            return .filterBlock(filters, nodes, line: l)
        case "generation":
            try expectBlockEnd()
            let (nodes, _) = try body(until: ["endgeneration"])
            try expectBlockEnd()
            return .generation(nodes)
        default:
            throw TemplateError("unknown statement {% \(keyword) %} (supported: if, for, set, macro, filter, break, continue, generation, raw)", line: l)
        }
    }

    // MARK: expressions

    mutating func expression() throws(TemplateError) -> JinjaExpr {
        try enter()
        defer { depth -= 1 }
        let value = try orExpr()
        guard isName("if") else { return value }
        let valueDepth = lastDepth
        advance()
        let condition = try orExpr()
        let conditionDepth = lastDepth
        var other: JinjaExpr? = nil
        var otherDepth = 0
        if isName("else") { advance(); other = try expression(); otherDepth = lastDepth }
        lastDepth = try deeper(valueDepth, conditionDepth, otherDepth)
        return .conditional(then: value, condition: condition, otherwise: other)
    }

    /// A for loop's iterable: no conditional expression (its `if` filters the loop).
    mutating func ternaryFree() throws(TemplateError) -> JinjaExpr { try orExpr() }

    /// `operand (op operand)*`, nesting to the left as Python does.
    mutating func leftAssociative(_ op: (JinjaParser) -> String?,
                                  _ operand: (inout JinjaParser) throws(TemplateError) -> JinjaExpr) throws(TemplateError) -> JinjaExpr {
        var e = try operand(&self)
        var d = lastDepth
        while let o = op(self) {
            advance()
            let right = try operand(&self)
            d = try deeper(d, lastDepth)
            e = .binary(o, e, right)
        }
        lastDepth = d
        return e
    }

    func anyOp(_ ops: [String]) -> String? {
        if case .op(let o) = current, ops.contains(o) { return o }
        return nil
    }

    mutating func orExpr() throws(TemplateError) -> JinjaExpr {
        try leftAssociative({ $0.isName("or") ? "or" : nil }) { p throws(TemplateError) in try p.andExpr() }
    }

    mutating func andExpr() throws(TemplateError) -> JinjaExpr {
        try leftAssociative({ $0.isName("and") ? "and" : nil }) { p throws(TemplateError) in try p.notExpr() }
    }

    mutating func notExpr() throws(TemplateError) -> JinjaExpr {
        guard isName("not") else { return try compare() }
        advance()
        try enter()
        defer { depth -= 1 }
        let operand = try notExpr()
        lastDepth = try deeper(lastDepth)
        return .unary("not", operand)
    }

    mutating func compare() throws(TemplateError) -> JinjaExpr {
        let first = try math1()
        var depths = [lastDepth]
        var ops: [(String, JinjaExpr)] = []
        while true {
            if let o = anyOp(["==", "!=", "<", ">", "<=", ">="]) {
                advance()
                ops.append((o, try math1()))
            } else if isName("in") {
                advance()
                ops.append(("in", try math1()))
            } else if isName("not"), case .name("in") = tokens[min(at + 1, tokens.count - 1)].kind {
                advance(); advance()
                ops.append(("not in", try math1()))
            } else {
                break
            }
            depths.append(lastDepth)
        }
        if ops.isEmpty { return first }
        lastDepth = try deeper(depths.max()!)
        return .compare(first, ops)
    }

    mutating func math1() throws(TemplateError) -> JinjaExpr {
        try leftAssociative({ $0.anyOp(["+", "-"]) }) { p throws(TemplateError) in try p.concat() }
    }

    mutating func concat() throws(TemplateError) -> JinjaExpr {
        try leftAssociative({ $0.anyOp(["~"]) }) { p throws(TemplateError) in try p.math2() }
    }

    mutating func math2() throws(TemplateError) -> JinjaExpr {
        try leftAssociative({ $0.anyOp(["*", "/", "//", "%"]) }) { p throws(TemplateError) in try p.power() }
    }

    mutating func power() throws(TemplateError) -> JinjaExpr {
        try leftAssociative({ $0.anyOp(["**"]) }) { p throws(TemplateError) in try p.unary() }
    }

    mutating func unary(withFilter: Bool = true) throws(TemplateError) -> JinjaExpr {
        var e: JinjaExpr
        if let sign = anyOp(["-", "+"]) {
            advance()
            try enter()
            let operand = try unary(withFilter: false)
            depth -= 1
            lastDepth = try deeper(lastDepth)
            e = .unary(sign, operand)
        } else {
            e = try primary()
        }
        e = try postfix(e)
        if withFilter { e = try filters(e) }
        return e
    }

    mutating func primary() throws(TemplateError) -> JinjaExpr {
        lastDepth = 1
        switch current {
        case .name(let n):
            advance()
            switch n {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.none)
            default: return .name(n)
            }
        case .string(var s):
            advance()
            while case .string(let more) = current { s += more; advance() }
            return .literal(.string(s))
        case .int(let i): advance(); return .literal(.int(i))
        case .float(let d): advance(); return .literal(.double(d))
        case .op("("): return try parenthesized()
        case .op("["):
            advance()
            let items = try sequence(until: "]")
            return .list(items)
        case .op("{"):
            advance()
            var pairs: [(JinjaExpr, JinjaExpr)] = []
            var d = 0
            while !isOp("}") {
                let k = try expression()
                d = max(d, lastDepth)
                try expect(":")
                pairs.append((k, try expression()))
                d = max(d, lastDepth)
                if isOp(",") { advance() } else { break }
            }
            try expect("}")
            lastDepth = try deeper(d)
            return .dict(pairs)
        default:
            throw error("unexpected \(describe(current)) in an expression")
        }
    }

    /// `(x)` is x; `()`, `(x,)` and `(x, y)` are tuples.
    mutating func parenthesized() throws(TemplateError) -> JinjaExpr {
        advance()
        if isOp(")") { advance(); return .tuple([]) }
        let first = try expression()
        guard isOp(",") else { try expect(")"); return first }
        var d = lastDepth
        var items = [first]
        while isOp(",") {
            advance()
            if isOp(")") { break }
            items.append(try expression())
            d = max(d, lastDepth)
        }
        try expect(")")
        lastDepth = try deeper(d)
        return .tuple(items)
    }

    /// Comma-separated expressions up to `close` (consumed); lastDepth is the list's.
    mutating func sequence(until close: String) throws(TemplateError) -> [JinjaExpr] {
        var items: [JinjaExpr] = []
        var d = 0
        while !isOp(close) {
            items.append(try expression())
            d = max(d, lastDepth)
            if isOp(",") { advance() } else { break }
        }
        try expect(close)
        lastDepth = try deeper(d)
        return items
    }

    /// `.name`, `[index]`, `[a:b:c]` and `(args)` after a primary, each one level deeper.
    mutating func postfix(_ base: JinjaExpr) throws(TemplateError) -> JinjaExpr {
        var e = base
        var d = lastDepth
        while true {
            if isOp(".") {
                advance()
                switch current {
                case .name(let n): advance(); e = .attribute(e, n)
                case .int(let i): advance(); e = .item(e, .literal(.int(i)))
                default: throw error("expected an attribute name after '.', found \(describe(current))")
                }
                d = try deeper(d, 1)
            } else if isOp("[") {
                e = try subscripted(e, baseDepth: d)
                d = lastDepth
            } else if isOp("(") {
                let args = try callArguments()
                d = try deeper(d, lastDepth)
                e = .call(e, args)
            } else {
                lastDepth = d
                return e
            }
        }
    }

    /// `base[index]` or `base[start:stop:step]`.
    mutating func subscripted(_ base: JinjaExpr, baseDepth: Int) throws(TemplateError) -> JinjaExpr {
        advance()
        var parts: [JinjaExpr?] = [nil]
        var d = baseDepth
        var sawColon = false
        while !isOp("]") {
            if isOp(":") { advance(); sawColon = true; parts.append(nil); continue }
            guard parts[parts.count - 1] == nil else { throw error("expected ']' or ':', found \(describe(current))") }
            parts[parts.count - 1] = try expression()
            d = max(d, lastDepth)
        }
        try expect("]")
        lastDepth = try deeper(d)
        if sawColon {
            guard parts.count <= 3 else { throw error("a slice takes at most start:stop:step") }
            while parts.count < 3 { parts.append(nil) }
            return .slice(base, parts[0], parts[1], parts[2])
        }
        guard let index = parts[0] else { throw error("empty subscript []") }
        return .item(base, index)
    }

    /// `(a, *rest, key=1, **more)`; lastDepth is the deepest argument's.
    mutating func callArguments() throws(TemplateError) -> JinjaCallArgs {
        try expect("(")
        var call = JinjaCallArgs()
        var d = 0
        while !isOp(")") {
            if isOp("*") || isOp("**") {
                let double = isOp("**")
                advance()
                let e = try expression()
                if double {
                    guard call.starStar == nil else { throw error("a call takes one **mapping, last") }
                    call.starStar = e
                } else {
                    guard call.star == nil, call.starStar == nil, call.kwargs.isEmpty else { throw error("*iterable goes after the positional arguments, once") }
                    call.star = e
                }
            } else if case .name(let n) = current, tokens[min(at + 1, tokens.count - 1)].kind == .op("=") {
                guard call.starStar == nil else { throw error("**mapping goes after the keyword arguments") }
                advance(); advance()
                call.kwargs.append((n, try expression()))
            } else {
                guard call.star == nil, call.starStar == nil, call.kwargs.isEmpty else {
                    throw error("a positional argument after keyword or unpacked arguments")
                }
                call.args.append(try expression())
            }
            d = max(d, lastDepth)
            if isOp(",") { advance() } else { break }
        }
        try expect(")")
        lastDepth = d
        return call
    }

    /// `| name(args)` and `is [not] name args` after an operand, each one level deeper.
    mutating func filters(_ base: JinjaExpr) throws(TemplateError) -> JinjaExpr {
        var e = base
        var d = lastDepth
        while true {
            if isOp("|") {
                advance()
                var name = try identifier()
                while isOp(".") { advance(); name += "." + (try identifier()) }
                var args = JinjaCallArgs()
                lastDepth = 0
                if isOp("(") { args = try callArguments() }
                d = try deeper(d, lastDepth)
                e = .filter(e, name, args)
            } else if isName("is") {
                advance()
                var negated = false
                if isName("not") { advance(); negated = true }
                let name: String
                switch current {
                case .name(let n): name = n; advance()
                case .op("=="): name = "eq"; advance()
                default: throw error("expected a test name after 'is', found \(describe(current))")
                }
                var args = JinjaCallArgs()
                lastDepth = 0
                if isOp("(") {
                    args = try callArguments()
                } else {
                    switch current {
                    case .string, .int, .float: args.args = [try primary()]
                    case .name(let n) where !["and", "or", "else", "if", "not", "in", "is"].contains(n): args.args = [try primary()]
                    default: break
                    }
                }
                d = try deeper(d, lastDepth)
                e = .test(e, name, args, negated: negated)
            } else {
                lastDepth = d
                return e
            }
        }
    }
}
