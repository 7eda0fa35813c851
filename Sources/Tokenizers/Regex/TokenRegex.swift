/// A regular expression with the meaning Oniguruma gives it (Ruby syntax, UTF-8), as Hugging
/// Face `tokenizers` compiles the `Regex` patterns of a tokenizer.json: leftmost match,
/// alternatives tried in order, greedy/lazy/possessive quantifiers, lookahead and fixed-length
/// lookbehind, atomic groups, `^`/`$` at line boundaries (`\n` only), Unicode classes.
///
/// It is a backtracking machine over Unicode scalars, written here rather than borrowed from
/// Foundation: ICU's `$` also stops before `\r`, and a hand-sized machine runs the patterns
/// tokenizers ship several times faster than `NSRegularExpression` on Linux.
package struct TokenRegex: Sendable {
    enum Op: UInt8 { case set, repeatGreedy, repeatLazy, repeatPossessive, split, jump, anchor, look, atomic, match }
    struct Inst: Sendable {
        var op: Op
        var a: Int32 = 0
        var b: Int32 = 0
        var c: Int32 = 0
    }
    struct Backtrack { var pc: Int32; var pos: Int32; var aux: Int32; var kind: UInt8 }

    package let pattern: String
    /// Where the pattern came from (a JSON path in tokenizer.json), for error messages.
    package let origin: String?
    let program: [Inst]
    let sets: [CharacterClass]
    /// The scalars a match can start with, when that is known: the search skips other starts.
    let firstSet: CharacterClass?

    /// `rustWord`: `\w` as Rust's regex crate means it, for the few patterns tokenizers
    /// compiles with that crate instead of Oniguruma.
    package init(_ pattern: String, rustWord: Bool = false, origin: String? = nil) throws(RegexError) {
        self.pattern = pattern
        self.origin = origin
        var parser = RegexParser(pattern, rustWord: rustWord)
        let tree = try parser.parse()
        var compiler = RegexCompiler(pattern: pattern)
        try compiler.compileProgram(tree)
        program = compiler.program
        sets = compiler.sets
        let (first, nullable) = RegexCompiler.firstScalars(tree)
        firstSet = nullable ? nil : first
    }

    /// The backtrack stack and the step count of one search.
    struct Machine {
        var stack: [Backtrack] = []
        var steps = 0
        let limit: Int
        let stackLimit: Int
        init(length: Int) {
            limit = RegexBudget.limit(forLength: length)
            stackLimit = RegexBudget.stackLimit(forLength: length)
        }
    }

    /// The matches in `text` as Oniguruma's search loop yields them: leftmost first; an empty
    /// match right where the previous match ended is skipped.
    package func matches(in text: [UInt32]) throws(RegexBudgetError) -> [Range<Int>] {
        var steps = RegexSteps()
        return try matches(in: text, steps: &steps)
    }

    /// `matches(in:)`, adding the steps the search took to `steps`.
    package func matches(in text: [UInt32], steps: inout RegexSteps) throws(RegexBudgetError) -> [Range<Int>] {
        try checkLength(text)
        var out: [Range<Int>] = []
        var m = Machine(length: text.count)
        defer { steps.total += m.steps }
        // Plain arrays, indexed with bounds checks: this machine runs on downloaded patterns.
        do {
            let s = text
            var from = 0
            var lastMatchEnd = -1
            while from <= s.count {
                guard let found = try search(s, from: from, &m) else { break }
                if found.isEmpty && found.upperBound == lastMatchEnd {
                    from = found.lowerBound + 1
                    continue
                }
                out.append(found)
                from = found.upperBound
                lastMatchEnd = found.upperBound
            }
        }
        return out
    }

    /// The leftmost match in `text`, if any.
    package func firstMatch(in text: [UInt32]) throws(RegexBudgetError) -> Range<Int>? {
        try checkLength(text)
        var m = Machine(length: text.count)
        return try search(text, from: 0, &m)
    }

    func search(_ s: [UInt32], from: Int, _ m: inout Machine) throws(RegexBudgetError) -> Range<Int>? {
        var start = from
        while start <= s.count {
            if let first = firstSet {
                while start < s.count && !first.contains(s[start]) { start += 1 }
                if start >= s.count { return nil }
            }
            if let end = try run(s, pc: 0, at: start, &m) { return start..<end }
            start += 1
        }
        return nil
    }

    /// Backtrack entries hold positions in 32 bits.
    func checkLength(_ text: [UInt32]) throws(RegexBudgetError) {
        if text.count >= Int(Int32.max) {
            throw RegexBudgetError(pattern: pattern, origin: origin, resource: .length, limit: Int(Int32.max) - 1, textLength: text.count)
        }
    }

    func overBudget(_ s: [UInt32], _ m: Machine) -> RegexBudgetError {
        let steps = m.steps > m.limit
        return RegexBudgetError(pattern: pattern, origin: origin, resource: steps ? .steps : .stack,
                                limit: steps ? m.limit : m.stackLimit, textLength: s.count)
    }

    /// Runs the program from `pc` at `pos`: the end of the first match found, or nil.
    func run(_ s: [UInt32], pc startPC: Int, at startPos: Int, _ m: inout Machine) throws(RegexBudgetError) -> Int? {
        let base = m.stack.count
        var pc = startPC, pos = startPos
        let n = s.count
        let prog = program
        do {
            while true {
                // Every instruction, retry and scanned scalar is a step (see RegexBudget).
                m.steps += 1
                if m.steps > m.limit || m.stack.count > m.stackLimit { throw overBudget(s, m) }
                let ins = prog[pc]
                var ok = true
                switch ins.op {
                case .set:
                    if pos < n && sets[Int(ins.a)].contains(s[pos]) { pos += 1; pc += 1 } else { ok = false }
                case .repeatGreedy, .repeatPossessive, .repeatLazy:
                    let set = sets[Int(ins.a)]
                    let minEnd = pos + Int(ins.b)
                    let limit = ins.c == Int32.max ? n : min(n, pos + Int(ins.c))
                    var e = pos
                    if ins.op == .repeatLazy {
                        while e < min(minEnd, limit) && set.contains(s[e]) { e += 1 }
                        if e < minEnd { ok = false; m.steps += e - pos; break }
                        var far = e
                        while far < limit && set.contains(s[far]) { far += 1 }
                        m.steps += far - pos
                        if far > e { m.stack.append(Backtrack(pc: Int32(pc + 1), pos: Int32(e + 1), aux: Int32(far), kind: 2)) }
                        pos = e
                        pc += 1
                    } else {
                        while e < limit && set.contains(s[e]) { e += 1 }
                        m.steps += e - pos
                        if e < minEnd { ok = false; break }
                        if ins.op == .repeatGreedy && e > minEnd {
                            m.stack.append(Backtrack(pc: Int32(pc + 1), pos: Int32(e - 1), aux: Int32(minEnd), kind: 1))
                        }
                        pos = e
                        pc += 1
                    }
                case .split:
                    m.stack.append(Backtrack(pc: ins.b, pos: Int32(pos), aux: 0, kind: 0))
                    pc = Int(ins.a)
                case .jump:
                    pc = Int(ins.a)
                case .anchor:
                    ok = TokenRegex.anchorHolds(Int(ins.a), s, pos)
                    if ok { pc += 1 }
                case .look:
                    let behind = ins.b & 1 != 0, negated = ins.b & 2 != 0
                    var hit = false
                    if behind {
                        let p = pos - Int(ins.c)
                        if p >= 0, let e = try run(s, pc: Int(ins.a), at: p, &m), e == pos { hit = true }
                    } else {
                        hit = try run(s, pc: Int(ins.a), at: pos, &m) != nil
                    }
                    if hit != negated { pc += 1 } else { ok = false }
                case .atomic:
                    if let e = try run(s, pc: Int(ins.a), at: pos, &m) { pos = e; pc += 1 } else { ok = false }
                case .match:
                    m.stack.removeSubrange(base...)
                    return pos
                }
                if !ok {
                    guard m.stack.count > base else { return nil }
                    let b = m.stack.removeLast()
                    pc = Int(b.pc)
                    pos = Int(b.pos)
                    if b.kind == 1 && b.pos - 1 >= b.aux {
                        m.stack.append(Backtrack(pc: b.pc, pos: b.pos - 1, aux: b.aux, kind: 1))
                    } else if b.kind == 2 && b.pos + 1 <= b.aux {
                        m.stack.append(Backtrack(pc: b.pc, pos: b.pos + 1, aux: b.aux, kind: 2))
                    }
                }
            }
        }
    }

    static func anchorHolds(_ kind: Int, _ s: [UInt32], _ pos: Int) -> Bool {
        let n = s.count
        switch kind {
        case 0: return pos == 0 || s[pos - 1] == 10
        case 1: return pos == n || s[pos] == 10
        case 2: return pos == 0
        case 3: return pos == n
        case 4: return pos == n || (pos == n - 1 && s[pos] == 10)
        default:
            let before = pos > 0 && CharacterClass.isWord(s[pos - 1])
            let after = pos < n && CharacterClass.isWord(s[pos])
            return kind == 5 ? before != after : before == after
        }
    }
}

/// Turns a parsed pattern into the machine's program.
struct RegexCompiler {
    let pattern: String
    var program: [TokenRegex.Inst] = []
    var sets: [CharacterClass] = []
    var pending: [(at: Int, node: RegexNode)] = []

    init(pattern: String) { self.pattern = pattern }

    func error(_ m: String) -> RegexError { RegexError(pattern: pattern, offset: 0, message: m) }

    mutating func compileProgram(_ tree: RegexNode) throws(RegexError) {
        // Refused before anything is emitted: counted repetitions of groups multiply.
        if Self.length(tree) > RegexLimits.programLength {
            throw error("the compiled pattern needs more than \(RegexLimits.programLength) instructions (counted repetitions of groups)")
        }
        try emit(tree)
        program.append(.init(op: .match))
        // Lookaround and atomic bodies run as sub-programs after the main one.
        while let (at, node) = pending.popLast() {
            program[at].a = Int32(program.count)
            try emit(node)
            program.append(.init(op: .match))
        }
    }

    mutating func addSet(_ c: CharacterClass) -> Int32 {
        sets.append(c)
        return Int32(sets.count - 1)
    }

    static func singleScalarSet(_ node: RegexNode) -> CharacterClass? {
        switch node {
        case .literal(let c, let fold): return CharacterClass(items: [.range(c, c)], foldCase: fold)
        case .set(let cls): return cls
        case .any: return CharacterClass(items: [.range(10, 10)], negated: true)
        default: return nil
        }
    }

    mutating func emit(_ node: RegexNode) throws(RegexError) {
        // Checked on every node, so a repetition's copies stop as soon as they pass the limit.
        if program.count > RegexLimits.programLength {
            throw error("the compiled pattern needs more than \(RegexLimits.programLength) instructions (counted repetitions of groups)")
        }
        switch node {
        case .empty: break
        case .literal, .set, .any:
            program.append(.init(op: .set, a: addSet(Self.singleScalarSet(node)!)))
        case .sequence(let items):
            for i in items { try emit(i) }
        case .alternation(let branches):
            var jumps: [Int] = []
            for (i, b) in branches.enumerated() {
                if i < branches.count - 1 {
                    let split = program.count
                    program.append(.init(op: .split))
                    program[split].a = Int32(program.count)
                    try emit(b)
                    jumps.append(program.count)
                    program.append(.init(op: .jump))
                    program[split].b = Int32(program.count)
                } else {
                    try emit(b)
                }
            }
            for j in jumps { program[j].a = Int32(program.count) }
        case .repeated(let body, let lo, let hi, let greedy, let possessive):
            if let set = Self.singleScalarSet(body) {
                let op: TokenRegex.Op = possessive ? .repeatPossessive : (greedy ? .repeatGreedy : .repeatLazy)
                program.append(.init(op: op, a: addSet(set), b: Int32(lo), c: hi == Int.max ? Int32.max : Int32(hi)))
                return
            }
            if possessive {
                try emit(.atomic(.repeated(body, min: lo, max: hi, greedy: true, possessive: false)))
                return
            }
            if hi == Int.max && Self.nullable(body) {
                throw error("an unbounded repetition of something that can match empty is not supported")
            }
            for _ in 0..<lo { try emit(body) }
            if hi == Int.max {
                let loop = program.count
                program.append(.init(op: .split))
                let bodyStart = program.count
                try emit(body)
                program.append(.init(op: .jump, a: Int32(loop)))
                let exit = Int32(program.count)
                program[loop].a = greedy ? Int32(bodyStart) : exit
                program[loop].b = greedy ? exit : Int32(bodyStart)
            } else if hi > lo {
                var splits: [Int] = []
                for _ in lo..<hi {
                    let split = program.count
                    splits.append(split)
                    program.append(.init(op: .split))
                    program[split].a = Int32(program.count)
                    try emit(body)
                }
                let exit = Int32(program.count)
                for sp in splits {
                    let bodyStart = program[sp].a
                    program[sp].a = greedy ? bodyStart : exit
                    program[sp].b = greedy ? exit : bodyStart
                }
            }
        case .atomic(let body):
            pending.append((program.count, body))
            program.append(.init(op: .atomic))
        case .look(let body, let behind, let negated):
            var length: Int32 = 0
            if behind {
                guard let w = Self.width(body) else { throw error("a lookbehind must have a fixed length") }
                length = Int32(w)
            }
            pending.append((program.count, body))
            program.append(.init(op: .look, b: (behind ? 1 : 0) | (negated ? 2 : 0), c: length))
        case .anchor(let a):
            let kind: Int32
            switch a {
            case .lineStart: kind = 0
            case .lineEnd: kind = 1
            case .textStart: kind = 2
            case .textEnd: kind = 3
            case .textEndBeforeNewline: kind = 4
            case .wordBoundary: kind = 5
            case .notWordBoundary: kind = 6
            }
            program.append(.init(op: .anchor, a: kind))
        }
    }

    /// An upper bound on the instructions `emit` produces for `node` (sub-programs included),
    /// capped just past the limit so products cannot overflow.
    static func length(_ node: RegexNode) -> Int {
        let cap = RegexLimits.programLength + 1
        switch node {
        case .empty: return 0
        case .literal, .set, .any, .anchor: return 1
        case .sequence(let items): return min(cap, items.reduce(0) { min(cap, $0 + length($1)) })
        case .alternation(let branches): return min(cap, branches.reduce(2 * branches.count) { min(cap, $0 + length($1)) })
        case .atomic(let body), .look(let body, _, _): return min(cap, 2 + length(body))
        case .repeated(let body, let lo, let hi, _, let possessive):
            switch body {
            case .literal, .set, .any: return possessive ? 3 : 1
            default: break
            }
            let copies = hi == Int.max ? lo + 1 : hi
            return min(cap, 4 + copies * (length(body) + 1))
        }
    }

    static func nullable(_ node: RegexNode) -> Bool {
        switch node {
        case .empty, .anchor, .look: return true
        case .literal, .set, .any: return false
        case .sequence(let items): return items.allSatisfy(nullable)
        case .alternation(let b): return b.contains(where: nullable)
        case .repeated(let body, let lo, _, _, _): return lo == 0 || nullable(body)
        case .atomic(let body): return nullable(body)
        }
    }

    /// The number of scalars every match of `node` spans, when fixed.
    static func width(_ node: RegexNode) -> Int? {
        switch node {
        case .empty, .anchor, .look: return 0
        case .literal, .set, .any: return 1
        case .sequence(let items):
            var w = 0
            for i in items { guard let x = width(i) else { return nil }; w += x }
            return w
        case .alternation(let b):
            let ws = b.map(width)
            guard let f = ws.first, let first = f, ws.allSatisfy({ $0 == first }) else { return nil }
            return first
        case .repeated(let body, let lo, let hi, _, _):
            guard lo == hi, let w = width(body) else { return nil }
            return lo * w
        case .atomic(let body): return width(body)
        }
    }

    /// The scalars a match can begin with (nil: any) and whether the node can match empty.
    static func firstScalars(_ node: RegexNode) -> (CharacterClass?, Bool) {
        switch node {
        case .empty, .anchor, .look: return (CharacterClass(), true)
        case .literal, .set, .any: return (singleScalarSet(node), false)
        case .sequence(let items):
            var acc = CharacterClass()
            for i in items {
                let (f, nul) = firstScalars(i)
                guard let f else { return (nil, true) }
                acc.items.append(.nested(f))
                if !nul { acc.finish(); return (acc, false) }
            }
            acc.finish()
            return (acc, true)
        case .alternation(let branches):
            var acc = CharacterClass()
            var nul = false
            for b in branches {
                let (f, n) = firstScalars(b)
                guard let f else { return (nil, true) }
                acc.items.append(.nested(f))
                nul = nul || n
            }
            acc.finish()
            return (acc, nul)
        case .repeated(let body, let lo, _, _, _):
            let (f, n) = firstScalars(body)
            return (f, lo == 0 || n)
        case .atomic(let body): return firstScalars(body)
        }
    }
}
