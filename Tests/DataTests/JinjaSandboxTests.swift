import Foundation
import Testing
@testable import Data
// The engine's own target, once it is split out of Data.
#if canImport(Jinja)
@testable import Tokenizers
@testable import Jinja
#endif

/// Templates written to hurt (the fuzzing pass's findings and their kin), each small: every
/// one ends in a TemplateError that names the limit (`JinjaLimits.<name>`) and the template
/// line, or in a syntax error for nesting, never in a trap, a hang or a stack overflow.
@Suite struct JinjaSandboxTests {
    static func render(_ source: String, limits: JinjaLimits = .default) throws -> String {
        try ChatTemplate(source: source, origin: "t.jinja", limits: limits)
            .render(messages: try ChatTemplate.json(#"[{"role": "user", "content": "hi"}]"#), addGenerationPrompt: false)
    }

    /// Rendering `source` fails on `line` with a message containing `text`.
    static func expectFailure(_ source: String, _ text: String, line: Int = 1, limits: JinjaLimits = .default,
                              sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            let out = try render(source, limits: limits)
            Issue.record("rendered \(out.utf8.count) bytes; expected an error with \(text)", sourceLocation: sourceLocation)
        } catch let e as TemplateError {
            #expect(e.message.contains(text) && e.line == line && !e.raised, "\(e)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("\(error)", sourceLocation: sourceLocation)
        }
    }

    /// Parsing `source` fails with a syntax error naming the limit and `line`.
    static func expectParseFailure(_ source: String, line: Int, sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try ChatTemplate(source: source, origin: "deep.jinja")
            Issue.record("parsed", sourceLocation: sourceLocation)
        } catch let e as TokenizerError {
            #expect(e.description.contains("JinjaLimits.maxParseDepth") && e.description.contains("line \(line):"), "\(e)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("\(error)", sourceLocation: sourceLocation)
        }
    }

    /// % formatting, wordwrap, escaping and iterators: sizes checked before building, chains
    /// of generators bounded, a generator reading itself an error, blank text wrapped in
    /// linear time.
    @Test func formattingAndIteratorsAreBounded() throws {
        Self.expectFailure("{{ '%999999999d' % 1 }}", "JinjaLimits.maxStringBytes")
        Self.expectFailure("{{ '%.999999999f' % 1.5 }}", "JinjaLimits.maxStringBytes")
        Self.expectFailure("{{ '%*s' % (10**12, 'x') }}", "JinjaLimits.maxStringBytes")
        Self.expectFailure("{{ ('%20s' * 1000000) % (('x',) * 1000000) }}", "JinjaLimits.maxStringBytes")
        Self.expectFailure("{{ ('a ' * 1000)|wordwrap(1, wrapstring='x' * 100000) }}", "JinjaLimits.maxStringBytes")
        Self.expectFailure("{{ ('<' * 10**7)|e }}", "JinjaLimits.maxStringBytes")
        Self.expectFailure("{{ ('x'|safe) + '<' * 10**7 }}", "JinjaLimits.maxStringBytes")
        Self.expectFailure("{% set ns = namespace(g=[1]) %}{% for i in range(3000) %}{% set ns.g = ns.g|map('string') %}{% endfor %}{{ ns.g|list }}",
                           "JinjaLimits.maxRenderDepth")
        Self.expectFailure("{% set ns = namespace() %}{% set ns.g = [ns]|map(attribute='g')|map('list') %}{{ ns.g|list }}", "generator already executing")
        #expect(try Self.render("{{ (' ' * 10**6)|wordwrap(1) }}|{{ ('-' * 10**6)|wordwrap(3)|length }}") == "|1333333")
    }

    @Test func sizesAreCheckedBeforeBuilding() {
        Self.expectFailure("{{ 'a' * 10**10 }}", "JinjaLimits.maxStringBytes")
        Self.expectFailure("\n{{ 10**10 * 'ab' }}", "JinjaLimits.maxStringBytes", line: 2)
        Self.expectFailure("{{ [1, 2] * 10**9 }}", "JinjaLimits.maxListLength")
        Self.expectFailure("{{ (1,) * 9223372036854775807 }}", "JinjaLimits.maxListLength")
        Self.expectFailure("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "JinjaLimits.maxStringBytes")
        Self.expectFailure("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}", "JinjaLimits.maxStringBytes")
        Self.expectFailure("{% set ns = namespace(l=[1]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}", "JinjaLimits.maxListLength")
        Self.expectFailure("{{ ([('x' * 10**7)] * 2)|join }}", "JinjaLimits.maxStringBytes")
        Self.expectFailure("{{ ('a\\n' * 1000)|indent(10**5) }}", "JinjaLimits.maxStringBytes")
        Self.expectFailure("{{ 'x'|center(10**10) }}", "JinjaLimits.maxStringBytes")
        Self.expectFailure("{{ [1]|tojson(indent=10**10) }}", "JinjaLimits.maxStringBytes")
        Self.expectFailure("{{ [[[[[1]]]]]|tojson(indent=10**7) }}", "JinjaLimits.maxStringBytes")
        Self.expectFailure("{{ ('a' * 1000)|replace('a', 'b' * 100000) }}", "JinjaLimits.maxStringBytes")
        Self.expectFailure("{{ ('a' * 1000).replace('', 'b' * 100000) }}", "JinjaLimits.maxStringBytes")
        Self.expectFailure("{{ '{}{}'.format('x' * 10**7, 'y' * 10**7) }}", "JinjaLimits.maxStringBytes")
        // A million references to one long string: the list is small, its text is not.
        let big = "{% set big = [('x' * 10**7)] * 1000000 %}"
        for use in ["{{ big }}", "{{ big ~ '' }}", "{{ big|string|length }}", "{{ 'a'|replace('a', big) }}", "{{ big|join|length }}"] {
            Self.expectFailure(big + use, "JinjaLimits.maxStringBytes")
        }
        Self.expectFailure("{{ ('x' * 2000000)|list|length }}", "JinjaLimits.maxListLength")
        Self.expectFailure("{{ [1]|batch(10**9, 'x')|list }}", "JinjaLimits.maxListLength")
        Self.expectFailure("{{ [1]|slice(10**9)|list }}", "JinjaLimits.maxListLength")
    }

    /// Substring search is linear (a naive search here would take 10**11 steps).
    @Test func searchesAreLinear() throws {
        let hay = "{% set hay = 'a' * 10**6 %}{% set needle = 'a' * 10**5 ~ 'b' %}"
        #expect(try Self.render(hay + "{{ hay.find(needle) }} {{ hay.rfind(needle) }} {{ hay.count(needle) }} {{ needle in hay }} {{ hay.split(needle)|length }} {{ hay.replace(needle, 'x')|length }}")
                == "-1 -1 0 False 1 1000000")
    }

    @Test func rangesLoopsAndOutputAreBounded() throws {
        Self.expectFailure("{{ range(10**9)|length }}", "JinjaLimits.maxRangeLength")
        Self.expectFailure("{{ range(0 - 9223372036854775807, 9223372036854775807)|length }}", "JinjaLimits.maxRangeLength")
        Self.expectFailure("{{ range(0 - 9223372036854775807 - 1, 9223372036854775807, 2)|length }}", "JinjaLimits.maxRangeLength")
        // Python's answers at the edges of 64 bits.
        #expect(try Self.render("{{ range(0, 10**18, 10**17)|length }} {{ range(9223372036854775807, 0 - 9223372036854775807, 0 - 9223372036854775807 - 1)|list }}") == "10 [9223372036854775807, -1]")
        Self.expectFailure("a\n{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "JinjaLimits.maxLoopIterations", line: 2)
        Self.expectFailure("{% for i in range(100000) if i > 1 %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "JinjaLimits.maxLoopIterations")
        Self.expectFailure("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", "JinjaLimits.maxOutputBytes")
        Self.expectFailure("{% set ns = namespace(s='') %}{% for i in range(100000) %}{% set ns.s = ns.s ~ 'xxxxxxxxxxxxxxxxxxxx' %}{% endfor %}",
                           "JinjaLimits.maxBuiltTotal")
    }

    @Test func recursionIsBounded() throws {
        Self.expectFailure("{% macro f(n) %}\n{{ f(n + 1) }}\n{% endmacro %}\n{{ f(0) }}", "JinjaLimits.maxMacroDepth", line: 2)
        // 199 levels of a recursive macro are fine.
        #expect(try Self.render("{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{% else %}done{% endif %}{% endmacro %}{{ f(198) }}") == "done")
        // Expressions nested as deep as parsing allows, in recursing macros: the render depth
        // limit is met before the stack runs out.
        let deep = String(repeating: "[", count: 250) + "f(n - 1)" + String(repeating: "]", count: 250)
        Self.expectFailure("{% macro f(n) %}{% if n > 0 %}{{ \(deep) }}{% endif %}{% endmacro %}{{ f(100) }}", "JinjaLimits.maxRenderDepth")
        var tight = JinjaLimits()
        tight.maxRenderDepth = 20
        Self.expectFailure("{{ " + String(repeating: "[", count: 30) + "1" + String(repeating: "]", count: 30) + " }}", "JinjaLimits.maxRenderDepth", limits: tight)
    }

    @Test func valuesCannotNestWithoutBound() throws {
        Self.expectFailure("{% set ns = namespace(x=[]) %}{% for i in range(100000) %}{% set ns.x = [ns.x] %}{% endfor %}", "JinjaLimits.maxValueDepth")
        Self.expectFailure("{% set ns = namespace(x=none) %}{% for i in range(100000) %}{% set ns.x = namespace(next=ns.x) %}{% endfor %}", "JinjaLimits.maxValueDepth")
        Self.expectFailure("{% macro f(x, n) %}{% if n > 0 %}{{ f([[[[x]]]], n - 1) }}{% endif %}{% endmacro %}{{ f([], 190) }}", "JinjaLimits.maxValueDepth")
        // A list stored over and over is measured once, not on each store.
        #expect(try Self.render("{% set ns = namespace(big=range(100000)|list) %}{% for i in range(100000) %}{% set ns.x = ns.big %}{% endfor %}{{ ns.x|length }}") == "100000")
        #expect(throws: Error.self) { try ChatTemplate.json(String(repeating: "[", count: 100_000)) }
        #expect(throws: Error.self) { try ChatTemplate.json(String(repeating: #"{"a":"#, count: 100_000)) }
    }

    /// Deep nesting fails while parsing, with a syntax error naming its line, before any
    /// recursion can overflow the stack.
    @Test func nestingIsBoundedWhileParsing() throws {
        let n = 100_000
        Self.expectParseFailure("x\n{{ " + String(repeating: "(", count: n) + "1" + String(repeating: ")", count: n) + " }}", line: 2)
        Self.expectParseFailure("x\n{{ " + String(repeating: "[", count: n) + "1" + String(repeating: "]", count: n) + " }}", line: 2)
        Self.expectParseFailure("x\n{{ " + String(repeating: "{1: ", count: n) + "1" + String(repeating: "}", count: n) + " }}", line: 2)
        Self.expectParseFailure("x\n{{ " + String(repeating: "not ", count: n) + "1 }}", line: 2)
        Self.expectParseFailure("x\n{{ " + String(repeating: "-(", count: n) + "1" + String(repeating: ")", count: n) + " }}", line: 2)
        Self.expectParseFailure("x\n{{ " + String(repeating: "-", count: n) + "1 }}", line: 2)
        Self.expectParseFailure("x\n{{ " + String(repeating: "1 + ", count: n) + "1 }}", line: 2)
        Self.expectParseFailure("x\n{{ " + String(repeating: "'a' ~ ", count: n) + "1 }}", line: 2)
        Self.expectParseFailure("x\n{{ x" + String(repeating: ".a", count: n) + " }}", line: 2)
        Self.expectParseFailure("x\n{{ x" + String(repeating: "|string", count: n) + " }}", line: 2)
        Self.expectParseFailure("x\n{{ f" + String(repeating: "(f", count: n) + String(repeating: ")", count: n) + " }}", line: 2)
        Self.expectParseFailure("x\n" + String(repeating: "{% if true %}", count: n) + String(repeating: "{% endif %}", count: n), line: 2)
        // Nesting well past what templates use parses and renders.
        // The deepest input accepted parses and renders without exhausting the stack.
        #expect(try Self.render("{{ " + String(repeating: "(", count: 255) + "1" + String(repeating: ")", count: 255) + " }}") == "1")
        #expect(try Self.render("{{ " + String(repeating: "[", count: 254) + "1" + String(repeating: "]", count: 254) + "|length }}") == "1")
        #expect(try Self.render(String(repeating: "{% if true %}", count: 255) + "y" + String(repeating: "{% endif %}", count: 255)) == "y")
    }

    /// Integers are 64-bit (Python's are unbounded): a result that does not fit is an error.
    @Test func integerOverflowIsAnError() {
        for source in ["{{ 9223372036854775807 + 1 }}", "{{ -9223372036854775807 - 2 }}", "{{ 3037000500 * 3037000500 }}", "{{ 2 ** 63 }}",
                       "{{ 10 ** 20 }}", "{{ (-9223372036854775807 - 1) // -1 }}", "{{ -(-9223372036854775807 - 1) }}",
                       "{{ (-9223372036854775807 - 1)|abs }}", "{{ [1][0] + 9223372036854775807 }}", "{{ 1e300|int }}"] {
            Self.expectFailure(source, "64 bits")
        }
        do {
            _ = try ChatTemplate(source: "{{ 9223372036854775808 }}", origin: "big.jinja")
            Issue.record("accepted an integer literal past 64 bits")
        } catch let e as TokenizerError {
            #expect(e.description.contains("64 bits"), "\(e)")
        } catch {
            Issue.record("\(error)")
        }
    }

    @Test func limitsAreConfigurable() throws {
        var limits = JinjaLimits()
        limits.maxLoopIterations = 10
        #expect(try Self.render("{% for i in range(10) %}{{ i }}{% endfor %}", limits: limits) == "0123456789")
        Self.expectFailure("{% for i in range(11) %}{% endfor %}", "JinjaLimits.maxLoopIterations", limits: limits)
        limits = JinjaLimits()
        limits.maxOutputBytes = 5
        #expect(try Self.render("12345", limits: limits) == "12345")
        Self.expectFailure("12345{{ 6 }}", "JinjaLimits.maxOutputBytes", limits: limits)
    }
}
