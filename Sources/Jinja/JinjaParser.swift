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
    case call(JinjaExpr, [JinjaExpr], [(String, JinjaExpr)])
    case filter(JinjaExpr, String, [JinjaExpr], [(String, JinjaExpr)])
    case test(JinjaExpr, String, [JinjaExpr], negated: Bool)
    case unary(String, JinjaExpr)
    case binary(String, JinjaExpr, JinjaExpr)
    case compare(JinjaExpr, [(String, JinjaExpr)])
    case conditional(then: JinjaExpr, condition: JinjaExpr, otherwise: JinjaExpr?)
}

/// A statement of a template; `line` is where its tag starts, for error messages.
indirect enum JinjaNode {
    enum Target { case name(String), attribute(String, String), tuple([String]) }

    case text(String)
    case output(JinjaExpr, line: Int)
    case ifBlock([(JinjaExpr, [JinjaNode])], otherwise: [JinjaNode], line: Int)
    case forLoop(targets: [String], iterable: JinjaExpr, condition: JinjaExpr?, body: [JinjaNode], otherwise: [JinjaNode], line: Int)
    case set(Target, JinjaExpr, line: Int)
    case setBlock(String, [JinjaNode], line: Int)
    case macro(String, [(String, JinjaExpr?)], [JinjaNode], line: Int)
    case breakLoop(line: Int)
    case continueLoop(line: Int)
    case generation([JinjaNode])
}

/// Parses the token stream into statements, with Jinja's operator precedence.
struct JinjaParser {
    typealias Token = JinjaLexer.Token
    let tokens: [Token]
    var at = 0

    init(_ tokens: [Token]) { self.tokens = tokens }

    static func parse(_ source: String) throws(TemplateError) -> [JinjaNode] {
        var p = JinjaParser(try JinjaLexer.tokenize(source))
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

    mutating func statement(_ keyword: String, line l: Int) throws(TemplateError) -> JinjaNode {
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
            let (loopBody, end) = try body(until: ["else", "endfor"])
            try expectBlockEnd()
            var other: [JinjaNode] = []
            if end == "else" {
                (other, _) = try body(until: ["endfor"])
                try expectBlockEnd()
            }
            return .forLoop(targets: targets, iterable: iterable, condition: condition, body: loopBody, otherwise: other, line: l)
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
            let (nodes, _) = try body(until: ["endmacro"])
            if case .name = current { advance() }
            try expectBlockEnd()
            return .macro(name, params, nodes, line: l)
        case "break":
            try expectBlockEnd()
            return .breakLoop(line: l)
        case "continue":
            try expectBlockEnd()
            return .continueLoop(line: l)
        case "generation":
            try expectBlockEnd()
            let (nodes, _) = try body(until: ["endgeneration"])
            try expectBlockEnd()
            return .generation(nodes)
        default:
            throw TemplateError("unknown statement {% \(keyword) %} (supported: if, for, set, macro, break, continue, generation, raw)", line: l)
        }
    }

    // MARK: expressions

    mutating func expression() throws(TemplateError) -> JinjaExpr {
        let value = try orExpr()
        if isName("if") {
            advance()
            let condition = try orExpr()
            var other: JinjaExpr? = nil
            if isName("else") { advance(); other = try expression() }
            return .conditional(then: value, condition: condition, otherwise: other)
        }
        return value
    }

    /// A for loop's iterable: no conditional expression (its `if` filters the loop).
    mutating func ternaryFree() throws(TemplateError) -> JinjaExpr { try orExpr() }

    mutating func orExpr() throws(TemplateError) -> JinjaExpr {
        var e = try andExpr()
        while isName("or") { advance(); e = .binary("or", e, try andExpr()) }
        return e
    }

    mutating func andExpr() throws(TemplateError) -> JinjaExpr {
        var e = try notExpr()
        while isName("and") { advance(); e = .binary("and", e, try notExpr()) }
        return e
    }

    mutating func notExpr() throws(TemplateError) -> JinjaExpr {
        if isName("not") { advance(); return .unary("not", try notExpr()) }
        return try compare()
    }

    mutating func compare() throws(TemplateError) -> JinjaExpr {
        let first = try math1()
        var ops: [(String, JinjaExpr)] = []
        while true {
            if case .op(let o) = current, ["==", "!=", "<", ">", "<=", ">="].contains(o) {
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
        }
        return ops.isEmpty ? first : .compare(first, ops)
    }

    mutating func math1() throws(TemplateError) -> JinjaExpr {
        var e = try concat()
        while isOp("+") || isOp("-") {
            guard case .op(let o) = current else { break }
            advance()
            e = .binary(o, e, try concat())
        }
        return e
    }

    mutating func concat() throws(TemplateError) -> JinjaExpr {
        var e = try math2()
        while isOp("~") { advance(); e = .binary("~", e, try math2()) }
        return e
    }

    mutating func math2() throws(TemplateError) -> JinjaExpr {
        var e = try power()
        while isOp("*") || isOp("/") || isOp("//") || isOp("%") {
            guard case .op(let o) = current else { break }
            advance()
            e = .binary(o, e, try power())
        }
        return e
    }

    mutating func power() throws(TemplateError) -> JinjaExpr {
        var e = try unary()
        while isOp("**") { advance(); e = .binary("**", e, try unary()) }
        return e
    }

    mutating func unary(withFilter: Bool = true) throws(TemplateError) -> JinjaExpr {
        var e: JinjaExpr
        if isOp("-") { advance(); e = .unary("-", try unary(withFilter: false)) }
        else if isOp("+") { advance(); e = .unary("+", try unary(withFilter: false)) }
        else { e = try primary() }
        e = try postfix(e)
        if withFilter { e = try filters(e) }
        return e
    }

    mutating func primary() throws(TemplateError) -> JinjaExpr {
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
        case .op("("):
            advance()
            if isOp(")") { advance(); return .tuple([]) }
            let first = try expression()
            if isOp(",") {
                var items = [first]
                while isOp(",") {
                    advance()
                    if isOp(")") { break }
                    items.append(try expression())
                }
                try expect(")")
                return .tuple(items)
            }
            try expect(")")
            return first
        case .op("["):
            advance()
            var items: [JinjaExpr] = []
            while !isOp("]") {
                items.append(try expression())
                if isOp(",") { advance() } else { break }
            }
            try expect("]")
            return .list(items)
        case .op("{"):
            advance()
            var pairs: [(JinjaExpr, JinjaExpr)] = []
            while !isOp("}") {
                let k = try expression()
                try expect(":")
                pairs.append((k, try expression()))
                if isOp(",") { advance() } else { break }
            }
            try expect("}")
            return .dict(pairs)
        default:
            throw error("unexpected \(describe(current)) in an expression")
        }
    }

    mutating func postfix(_ base: JinjaExpr) throws(TemplateError) -> JinjaExpr {
        var e = base
        while true {
            if isOp(".") {
                advance()
                switch current {
                case .name(let n): advance(); e = .attribute(e, n)
                case .int(let i): advance(); e = .item(e, .literal(.int(i)))
                default: throw error("expected an attribute name after '.', found \(describe(current))")
                }
            } else if isOp("[") {
                advance()
                var parts: [JinjaExpr?] = [nil]
                var sawColon = false
                while !isOp("]") {
                    if isOp(":") { advance(); sawColon = true; parts.append(nil); continue }
                    parts[parts.count - 1] = try expression()
                }
                try expect("]")
                if sawColon {
                    guard parts.count <= 3 else { throw error("a slice takes at most start:stop:step") }
                    while parts.count < 3 { parts.append(nil) }
                    e = .slice(e, parts[0], parts[1], parts[2])
                } else {
                    guard let index = parts[0] else { throw error("empty subscript []") }
                    e = .item(e, index)
                }
            } else if isOp("(") {
                let (args, kwargs) = try callArguments()
                e = .call(e, args, kwargs)
            } else {
                return e
            }
        }
    }

    mutating func callArguments() throws(TemplateError) -> ([JinjaExpr], [(String, JinjaExpr)]) {
        try expect("(")
        var args: [JinjaExpr] = [], kwargs: [(String, JinjaExpr)] = []
        while !isOp(")") {
            if case .name(let n) = current, tokens[min(at + 1, tokens.count - 1)].kind == .op("=") {
                advance(); advance()
                kwargs.append((n, try expression()))
            } else {
                args.append(try expression())
            }
            if isOp(",") { advance() } else { break }
        }
        try expect(")")
        return (args, kwargs)
    }

    mutating func filters(_ base: JinjaExpr) throws(TemplateError) -> JinjaExpr {
        var e = base
        while true {
            if isOp("|") {
                advance()
                var name = try identifier()
                while isOp(".") { advance(); name += "." + (try identifier()) }
                var args: [JinjaExpr] = [], kwargs: [(String, JinjaExpr)] = []
                if isOp("(") { (args, kwargs) = try callArguments() }
                e = .filter(e, name, args, kwargs)
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
                var args: [JinjaExpr] = []
                if isOp("(") {
                    args = try callArguments().0
                } else {
                    switch current {
                    case .string, .int, .float: args = [try primary()]
                    case .name(let n) where !["and", "or", "else", "if", "not", "in", "is"].contains(n): args = [try primary()]
                    default: break
                    }
                }
                e = .test(e, name, args, negated: negated)
            } else {
                return e
            }
        }
    }
}
