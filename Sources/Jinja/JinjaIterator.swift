import Foundation
import Tokenizers

/// A Python iterator, as jinja2's `map`, `select`, `reject`, `selectattr`, `rejectattr`,
/// `unique`, `items`, `batch`, `slice` (generators) and `reverse` (a reverse iterator) return
/// one. Templates notice the difference from a list: it has no `length` and no `last`, is not
/// JSON, is always true, prints as `<generator object ...>`, and is used up as it is read (a
/// second `|list` of the same one is empty; `x in it` reads up to x). Its items are made
/// lazily, when read, as jinja2 makes them, so an error in an item nobody reads is no error.
package final class JinjaIterator: @unchecked Sendable {
    /// Python's type name: generator, list_reverseiterator, reversed, dict_reversekeyiterator.
    let typeName: String
    /// What str() gives (jinja2's has the object's address, which no render can match; this
    /// one is fixed).
    let repr: String
    private var pull: (() throws -> JinjaValue?)?
    private var running = false

    init(typeName: String, function: String? = nil, pull: @escaping () throws -> JinjaValue?) {
        self.typeName = typeName
        repr = "<\(typeName) object\(function.map { " " + $0 } ?? "") at 0x7f0000000000>"
        self.pull = pull
    }

    /// The next item; nil once used up, and from then on (also after an error, as a Python
    /// generator ends when it raises).
    func next() throws -> JinjaValue? {
        guard let p = pull else { return nil }
        guard !running else { throw TemplateError("generator already executing", line: 0) }
        running = true
        defer { running = false }
        do {
            if let v = try p() { return v }
        } catch {
            pull = nil
            throw error
        }
        pull = nil
        return nil
    }

    /// A generator function's body: `start` runs at the first read (as a generator's code
    /// does), and returns the function giving each item.
    static func generator(_ function: String, _ start: @escaping () throws -> (() throws -> JinjaValue?)) -> JinjaValue {
        var step: (() throws -> JinjaValue?)? = nil
        return .iterator(JinjaIterator(typeName: "generator", function: function) {
            if step == nil { step = try start() }
            return try step?()
        })
    }
}

extension JinjaInterpreter {
    /// Python's `iter(v)` read item by item: an iterator's own reads (each one level of
    /// nesting, so a chain of generators over generators is bounded), else the items
    /// `iterate` gives, taken when the first one is read.
    func reader(_ v: JinjaValue) -> () throws -> JinjaValue? {
        if case .iterator(let it) = v {
            return { [self] in
                try enterNesting()
                defer { renderDepth -= 1 }
                return try located { try it.next() }
            }
        }
        var items: [JinjaValue]? = nil, i = 0
        return { [self] in
            let all = try items ?? iterate(v)
            items = all
            guard i < all.count else { return nil }
            i += 1
            return all[i - 1]
        }
    }

    /// The rest of an iterator as a list (within maxListLength).
    func drain(_ it: JinjaIterator) throws -> [JinjaValue] {
        var out: [JinjaValue] = []
        let read = reader(.iterator(it))
        while let x = try read() {
            out.append(x)
            guard out.count <= limits.maxListLength else { throw limitError("a list of more than \(limits.maxListLength) elements", limits.maxListLength, "maxListLength") }
        }
        try spend(out.count)
        return out
    }

    /// `x in it`: reads up to the first item equal to x.
    func iteratorContains(_ it: JinjaIterator, _ x: JinjaValue) throws -> Bool {
        let read = reader(.iterator(it))
        while let y = try read() { if y.equals(x) { return true } }
        return false
    }
}

/// The filters that return iterators, each as jinja2 writes it.
extension JinjaBuiltins {
    /// `map(filter, args...)` or `map(attribute=..., default=...)`: a false value maps to nothing.
    static func map(_ r: JinjaInterpreter, _ v: JinjaValue, _ args: Args, _ kwargs: KW) -> JinjaValue {
        JinjaIterator.generator("sync_do_map") {
            guard v.truthy else { return { nil } }
            let f = try mapFunction(r, args, kwargs)
            let read = r.reader(v)
            return { try read().map { try f($0) } }
        }
    }

    static func mapFunction(_ r: JinjaInterpreter, _ args: Args, _ kwargs: KW) throws -> (JinjaValue) throws -> JinjaValue {
        if let a = kw(kwargs, "attribute") {
            let attribute = try r.text(a)
            let fallback = kw(kwargs, "default")
            return { x in
                let y = try path(r, x, attribute)
                if y.isUndefined, let fallback { return fallback }
                return y
            }
        }
        guard let f = args.first else { throw r.error("map requires a filter argument") }
        let name = try r.text(f)
        let rest = Array(args.dropFirst())
        return { x in try filter(r, name, x, rest, kwargs) }
    }

    /// select/reject(test, args...) and selectattr/rejectattr(attribute, test, args...). A
    /// false value (None, an undefined) selects nothing, as in Jinja, which does not iterate it.
    static func select(_ r: JinjaInterpreter, _ name: String, _ v: JinjaValue, _ args: Args, _ kwargs: KW) -> JinjaValue {
        JinjaIterator.generator("select_or_reject") {
            guard v.truthy else { return { nil } }
            let keep = name.hasPrefix("select")
            var rest = args
            var attribute: String? = nil
            if name.hasSuffix("attr") {
                guard let a = args.first else { throw r.error("Missing parameter for attribute name") }
                attribute = try r.text(a)
                rest = Array(args.dropFirst())
            }
            let testName = try r.text(rest.first)
            let testArgs = Array(rest.dropFirst())
            let read = r.reader(v)
            return {
                while let x = try read() {
                    let subject = try attribute.map { try path(r, x, $0) } ?? x
                    let ok = try testName.map { try test(r, $0, subject, testArgs) } ?? subject.truthy
                    if ok == keep { return x }
                }
                return nil
            }
        }
    }

    /// `unique(case_sensitive=False, attribute=None)`: first occurrences, hashed (not compared
    /// pairwise) where the values are hashable.
    static func unique(_ r: JinjaInterpreter, _ v: JinjaValue, _ args: Args, _ kwargs: KW) -> JinjaValue {
        JinjaIterator.generator("sync_do_unique") {
            let caseSensitive = arg(args, kwargs, 0, "case_sensitive")?.truthy ?? false
            let attribute = try r.text(arg(args, kwargs, 1, "attribute"))
            var seen = Set<JinjaKey>(), seenOther: [JinjaValue] = []
            let read = r.reader(v)
            return {
                while let x = try read() {
                    let k = try sortKey(r, x, attribute, caseSensitive)
                    if let h = JinjaKey(k) {
                        if seen.insert(h).inserted { return x }
                    } else if !seenOther.contains(where: { $0.equals(k) }) {
                        seenOther.append(k)
                        return x
                    }
                }
                return nil
            }
        }
    }

    /// `items`: a mapping's (key, value) pairs; an undefined value has none, and anything else
    /// fails when read.
    static func items(_ r: JinjaInterpreter, _ v: JinjaValue) -> JinjaValue {
        JinjaIterator.generator("do_items") {
            if v.isUndefined { return { nil } }
            guard case .object(let o) = v else { throw r.error("Can only get item pairs from a mapping.") }
            return r.reader(.array(o.pairs.map { .tuple([$0.0, $0.1]) }))
        }
    }

    /// A generator over a list made at the first read (batch and slice read all their input).
    static func eager(_ function: String, _ make: @escaping () throws -> [JinjaValue]) -> JinjaValue {
        JinjaIterator.generator(function) { [make] in
            var items = try make()[...]
            return { items.popFirst() }
        }
    }

    /// `reverse`: a string reversed; a list, tuple or dict (its keys) as Python's reverse
    /// iterator over it; another iterable as a reversed list of its items.
    static func reverse(_ r: JinjaInterpreter, _ v: JinjaValue) throws -> JinjaValue {
        func reversed(_ typeName: String, _ items: [JinjaValue]) -> JinjaValue {
            var rest = items[...]
            return .iterator(JinjaIterator(typeName: typeName) { rest.popLast() })
        }
        switch v {
        case .string(let s): return .string(String(String.UnicodeScalarView(s.unicodeScalars.reversed())))
        case .array(let a): return reversed("list_reverseiterator", a)
        case .tuple(let a): return reversed("reversed", a)
        case .object(let o): return reversed("dict_reversekeyiterator", o.keys)
        case .undefined: return reversed("reversed", [])
        case .iterator(let it): return .array(try r.drain(it).reversed())
        default: throw r.error("argument must be iterable")
        }
    }
}
