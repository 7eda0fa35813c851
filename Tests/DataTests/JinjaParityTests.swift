import Foundation
import Testing
@testable import Data
// The engine's own target, once it is split out of Data.
#if canImport(Jinja)
@testable import Tokenizers
@testable import Jinja
#endif

/// The engine against jinja2 itself: each template below was rendered by jinja2 3.1.6 in
/// `ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)` with transformers'
/// `tojson` (how transformers renders chat templates), with
/// `messages = [{"role": "user", "content": "hi"}]`. `expected` is what jinja2 printed; where
/// jinja2 raised, the engine must throw a TemplateError whose message contains `error`.
@Suite struct JinjaParityTests {
    typealias Case = (source: String, expected: String?, error: String?)

    static func check(_ cases: [Case]) {
        for c in cases {
            do {
                let out = try ChatTemplateTests.render(c.source)
                if let expected = c.expected {
                    #expect(out == expected, "\(c.source)")
                } else {
                    Issue.record("\(c.source) rendered \(out.debugDescription), but jinja2 raises (\(c.error ?? ""))")
                }
            } catch let e as TemplateError {
                if let error = c.error {
                    #expect(e.message.contains(error) && !e.raised && e.line == 1, "\(c.source): \(e)")
                } else {
                    Issue.record("\(c.source) failed: \(e), but jinja2 renders \(c.expected ?? "")")
                }
            } catch {
                Issue.record("\(c.source): \(error)")
            }
        }
    }

    /// An undefined name is jinja2's default Undefined: '' printed and through string filters, empty as a sequence, falsy; reading an attribute or item of it, calling it, and arithmetic on it raise.
    @Test func undefinedIsJinjasDefault() {
        Self.check([
            ("{{ foo }}|{{ foo|upper }}|{{ foo|lower }}|{{ foo|trim }}|{{ foo|string }}|{{ foo|capitalize }}|{{ foo|title }}|{{ foo|escape }}|{{ foo|replace('a', 'b') }}", "||||||||", nil),
            ("{{ foo|length }}|{{ foo|count }}|{{ foo|list }}|{{ foo|join(',') }}|{{ foo|sort }}|{{ foo|unique|list }}|{{ foo|sum }}|{{ foo|wordcount }}", "0|0|[]||[]|[]|0|0", nil),
            ("{{ foo|first }}|{{ foo|last }}|{{ foo|min }}|{{ foo|max }}|{{ foo|batch(2)|list }}|{{ foo|center(5) }}|{{ foo|items|list }}", "||||[]|     |[]", nil),
            ("{{ foo|selectattr('a')|list }}|{{ foo|rejectattr('a')|list }}|{{ foo|select|list }}|{{ foo|map('upper')|list }}", "[]|[]|[]|[]", nil),
            ("{% for x in foo %}a{% else %}empty{% endfor %}|{{ 1 in foo }}|{{ 'ab' in foo }}|{{ foo in [1] }}|{{ foo == none }}|{{ not foo }}|{{ foo ~ 'x' }}", "empty|False|False|False|False|True|x", nil),
            ("{{ foo is defined }}|{{ foo is undefined }}|{{ foo|default('d') }}|{{ messages[0].nope }}|{{ messages[0].nope is defined }}|{{ none.x }}|{{ none['x'] }}", "False|True|d||False||", nil),
            ("{{ foo.bar }}", nil, "foo"),
            ("{{ foo['x'] }}", nil, "foo"),
            ("{{ messages[0].nope.x }}", nil, "nope"),
            ("{{ foo.x is defined }}", nil, "foo"),
            ("{{ foo() }}", nil, "foo"),
            ("{{ foo + 1 }}", nil, "foo"),
            ("{{ -foo }}", nil, "foo"),
            ("{{ foo < 1 }}", nil, "foo"),
            ("{{ foo[1:] }}", nil, "foo"),
            ("{{ foo|int }}", nil, "foo"),
            ("{{ foo|float }}", nil, "foo"),
            ("{{ foo|dictsort }}", nil, "foo"),
            ("{{ foo|indent }}", nil, "foo"),
            ("{{ foo|tojson }}", nil, "Undefined"),
        ])
    }

    /// None through filters: select/reject/map treat it as empty (jinja2 checks truthiness first); list, join, length, first, sort, sum, items, dictsort and `in` raise.
    @Test func noneThroughFilters() {
        Self.check([
            ("{{ none|selectattr('a')|list }}|{{ none|rejectattr('a')|list }}|{{ none|select|list }}|{{ none|reject|list }}|{{ none|map('upper')|list }}|{{ none|map(attribute='a')|list }}", "[]|[]|[]|[]|[]|[]", nil),
            ("{{ none|upper }}|{{ none|trim }}|{{ none|string }}|{{ none|tojson }}|{{ none|default('x') }}|{{ none|replace('N', 'x') }}|{{ none ~ 1 }}|{{ none|center(8) }}", "NONE|None|None|null|None|xone|None1|  None  ", nil),
            ("{{ none|list }}", nil, "not iterable"),
            ("{{ none|join(',') }}", nil, "not iterable"),
            ("{{ none|length }}", nil, "len()"),
            ("{{ none|first }}", nil, "not iterable"),
            ("{{ none|sort }}", nil, "not iterable"),
            ("{{ none|sum }}", nil, "not iterable"),
            ("{{ none|items|list }}", nil, "mapping"),
            ("{{ none|dictsort }}", nil, "mapping"),
            ("{{ 1 in none }}", nil, "not iterable"),
            ("{% for x in none %}a{% endfor %}", nil, "not iterable"),
            ("{{ ','.join(none) }}", nil, "join"),
        ])
    }

    /// Dict literals keep their key types: int keys are ints for lookup, `in`, items and dictsort; tojson writes them as strings, as json.dumps does.
    @Test func dictKeysKeepTheirType() {
        Self.check([
            ("{{ {1: 'a', 2: 'b'} }}|{{ {1: 'a', 2: 'b'}[1] }}|{{ {1: 'a', 2: 'b'}['1'] }}|{{ 1 in {1: 'a'} }}|{{ '1' in {1: 'a'} }}", "{1: 'a', 2: 'b'}|a||True|False", nil),
            ("{{ {2: 'a', 1: 'b'}|dictsort }}|{{ {2: 'a', 1: 'b'}|tojson }}|{{ {2: 'a', 1: 'b'}.items()|list }}|{{ {2: 'a', 1: 'b'}.keys()|list }}", "[(1, 'b'), (2, 'a')]|{\"2\": \"a\", \"1\": \"b\"}|[(2, 'a'), (1, 'b')]|[2, 1]", nil),
            ("{{ {1: 'a', true: 'b', 1.0: 'c'} }}|{{ {none: 1, 1.5: 2, (1, 2): 3} }}|{{ {none: 1, 1.5: 2, true: 3}|tojson }}", "{1: 'c'}|{None: 1, 1.5: 2, (1, 2): 3}|{\"null\": 1, \"1.5\": 2, \"true\": 3}", nil),
            ("{% for k in {2: 'a'} %}{{ k + 1 }}{% endfor %}|{{ {2: 'a'}.get(2) }}|{{ {2: 'a'}.2 }}|{{ {(1, 2): 'p'}[(1, 2)] }}", "3|a|a|p", nil),
            ("{{ {'B': 1, 'a': 2}|dictsort }}|{{ {'B': 1, 'a': 2}|dictsort(true) }}|{{ {'B': 1, 'a': 2}|dictsort(by='value', reverse=true) }}", "[('a', 2), ('B', 1)]|[('B', 1), ('a', 2)]|[('a', 2), ('B', 1)]", nil),
            ("{% for k, v in {'a': 1, 3: [4]}|dictsort(by='value') %}{{ k }}={{ v }};{% endfor %}", nil, "not supported between"),
            ("{{ {'b': 1, 'a': 2, 1: 3}|dictsort }}", nil, "not supported between"),
            ("{{ {'b': 1, 1: 3}|tojson(sort_keys=true) }}", nil, "not supported between"),
            ("{{ {(1, 2): 3}|tojson }}", nil, "keys must be"),
            ("{{ {[1]: 3} }}", nil, "unhashable"),
        ])
    }

    /// `*iterable` and `**mapping` at call sites of macros, globals, methods, filters and tests; Jinja's macro argument checks.
    @Test func argumentUnpacking() {
        Self.check([
            ("{% macro m(a, b) %}{{ a }}{{ b }}{% endmacro %}{{ m(*[1, 2]) }}|{{ m(**{'a': 1, 'b': 2}) }}|{{ m(1, **{'b': 3}) }}|{{ m(*[1], b=5) }}|{{ m(*{'p': 1, 'q': 2}) }}", "12|12|13|15|pq", nil),
            ("{{ range(*[1, 5])|list }}|{{ 'a,b'.split(*[',']) }}|{{ [1, 2]|join(*[',']) }}|{{ 3 is divisibleby(*[3]) }}|{{ dict(**{'a': 1}) }}", "[1, 2, 3, 4]|['a', 'b']|1,2|True|{'a': 1}", nil),
            ("{% macro m(a) %}{{ a }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, 3, x=4) }}|{{ m(*'xy') }}", "1(2, 3){'x': 4}|x('y',){}", nil),
            ("{% macro m() %}{{ varargs }}{% endmacro %}{{ m(1) }}", "(1,)", nil),
            ("{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, 2) }}", nil, "takes not more than 1"),
            ("{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, x=2) }}", nil, "no keyword argument 'x'"),
            ("{% macro m(a) %}{{ a }}{% endmacro %}{{ m(*none) }}", nil, "must be an iterable"),
            ("{% macro m(a) %}{{ a }}{% endmacro %}{{ m(**none) }}", nil, "must be a mapping"),
            ("{% macro m(a) %}{{ a }}{% endmacro %}{{ m(**{1: 2}) }}", nil, "keywords must be strings"),
            ("{{ dict(a=1, **{'a': 2}) }}", nil, "multiple values"),
        ])
    }

    /// Python's integer and float operators where the result fits in 64 bits; division by zero raises.
    @Test func arithmeticAsPython() {
        Self.check([
            ("{{ 9223372036854775806 + 1 }}|{{ -9223372036854775807 - 1 }}|{{ 2 ** 62 }}|{{ (-2) ** 63 }}|{{ 3037000499 * 3037000499 }}", "9223372036854775807|-9223372036854775808|4611686018427387904|-9223372036854775808|9223372030926249001", nil),
            ("{{ -2 ** 2 }}|{{ 2 ** -1 }}|{{ 7 // -2 }}|{{ 7 % -2 }}|{{ -7 // 2 }}|{{ -7 % 3 }}|{{ -7.5 // 2 }}|{{ -7.5 % 2 }}|{{ true + true }}", "4|0.5|-4|-1|-4|2|-4.0|0.5|2", nil),
            ("{{ (-9223372036854775807 - 1) % -1 }}|{{ 'ab' * -1 }}|{{ [1] * -1 }}|{{ 3 * 'ab' }}|{{ 'ab' * true }}|{{ (1, 2) * 2 }}|{{ 2 * [1] }}", "0||[]|ababab|ab|(1, 2, 1, 2)|[1, 1]", nil),
            ("{{ 7 // 0 }}", nil, "by zero"),
            ("{{ 7 % 0 }}", nil, "by zero"),
            ("{{ 7 / 0 }}", nil, "by zero"),
            ("{{ 7.0 // 0 }}", nil, "by zero"),
            ("{{ 7.5 % 0.0 }}", nil, "modulo"),
            ("{{ 0 ** -1 }}", nil, "negative power"),
            ("{{ 'x' * 2.0 }}", nil, "unsupported operand"),
            ("{{ 'a' + 1 }}", nil, "unsupported operand"),
        ])
    }

    /// Negative and absurd filter arguments: jinja2's result where it has one, an error where it raises.
    @Test func absurdFilterArguments() {
        Self.check([
            ("{{ 'a\\nb'|indent(-5) }}|{{ 'a\\nb'|indent(-5, true) }}|{{ 'a\\n\\nb'|indent(2, blank=true) }}|{{ 'a\\n\\nb'|indent(first=true) }}|{{ 'a\\nb\\n'|indent(2) }}", "a\nb|a\nb|a\n  \n  b|    a\n\n    b|a\n  b\n", nil),
            ("{{ {'a': [1]}|tojson(indent=-1) }}|{{ {'a': [1]}|tojson(indent=0) }}|{{ {'a': [1]}|tojson(indent='--') }}", "{\n\"a\": [\n1\n]\n}|{\n\"a\": [\n1\n]\n}|{\n--\"a\": [\n----1\n--]\n}", nil),
            ("{{ 'ab'|center(-3) }}|{{ 'ab'|center(7) }}|{{ 'ab'|center(6) }}|{{ 'abc'|center(6) }}|{{ 'abc'|center(8) }}", "ab|   ab  |  ab  | abc  |  abc   ", nil),
            ("{{ 'abcdefghij klm'|truncate(5) }}|{{ 'abcdefghij klm'|truncate(11) }}|{{ 'abcdefghij klm'|truncate(7, leeway=0) }}|{{ 'abc def'|truncate(5, leeway=0, end='') }}|{{ 'abcdefghij'|truncate(6, true, leeway=0) }}", "ab...|abcdefghij klm|abcd...|abc|abc...", nil),
            ("{{ [1, 2, 3]|batch(0)|list }}|{{ [1, 2, 3]|batch(-1)|list }}|{{ [1, 2, 3]|batch(2)|list }}|{{ [1, 2, 3]|batch(2, 'x')|list }}", "[[], [1, 2, 3]]|[[1, 2, 3]]|[[1, 2], [3]]|[[1, 2], [3, 'x']]", nil),
            ("{{ [1, 2, 3]|slice(2)|list }}|{{ [1, 2, 3, 4, 5]|slice(3, 0)|list }}|{{ [1, 2, 3]|slice(-1)|list }}|{{ [1, 2, 3, 4, 5, 6, 7]|slice(3, 'x')|list }}", "[[1, 2], [3]]|[[1, 2], [3, 4], [5, 0]]|[]|[[1, 2, 3], [4, 5, 'x'], [6, 7, 'x']]", nil),
            ("{{ 2.5|round(precision=-400) }}|{{ 1234.5|round(-2) }}|{{ 2.5|round }}|{{ 3.5|round }}|{{ 2.45|round(1) }}|{{ 2.45|round(1, 'floor') }}|{{ 5|round }}|{{ 1250|round(-2) }}|{{ 1350|round(-2) }}|{{ 5|round(0, 'floor') }}", "0.0|1200.0|2.0|4.0|2.5|2.4|5|1200|1400|5.0", nil),
            ("{{ [1, 2, 3][::10 ** 18] }}|{{ [1, 2, 3][::-(10 ** 18)] }}|{{ [1, 2, 3][10 ** 18:] }}|{{ 'abc'[-(10 ** 18):] }}|{{ [1, 2, 3][-(10 ** 18):-(10 ** 18)] }}|{{ 'hello'[::-2] }}|{{ [1, 2, 3][none:2] }}", "[1]|[3]|[]|abc|[]|olh|[1, 2]", nil),
            ("{{ 'a'|replace('', '-') }}|{{ 'aaa'|replace('a', 'b', 2) }}|{{ 'ab'.replace('', '-', 1) }}|{{ ['b', 'A', 'a', 'C']|sort }}|{{ ['b', 'A', 'a', 'C']|unique|list }}|{{ ['b', 'A', 'a', 'C']|max }}|{{ [1, 2]|sum(start=10) }}", "-a-|bba|-ab|['A', 'a', 'b', 'C']|['b', 'A', 'C']|C|13", nil),
            ("{{ 'x'|int }}|{{ '3.7'|int }}|{{ 'nan'|float|int }}|{{ 'x'|int(7) }}", "0|3|0|7", nil),
            ("{{ (-9223372036854775807 - 1) is divisibleby(-1) }}|{{ 'a b c'.split(' ', 9223372036854775807) }}|{{ 'a b c'.rsplit(' ', 9223372036854775807) }}|{{ 'abc'|truncate(9223372036854775807) }}|{{ 'abcdefghij'|truncate(3, true, leeway=9223372036854775807) }}|{{ [1, 2][-9223372036854775807 - 1] }}|{{ [1, 2, 3][-9223372036854775807 - 1:9223372036854775807:9223372036854775807] }}", "True|['a', 'b', 'c']|['a', 'b', 'c']|abc|abcdefghij||[1]", nil),
            ("{{ 'abcabc'.find('c') }}|{{ 'abcabc'.rfind('c') }}|{{ 'abc'.find('') }}|{{ 'abc'.rfind('') }}|{{ 'aaaa'.count('aa') }}|{{ 'ab'.count('') }}|{{ 'a,b,,c'.split(',') }}|{{ 'a,b,,c'.split(',', 1) }}|{{ 'a,b,,c'.rsplit(',', 1) }}|{{ 'aXbXc'.split('X') }}|{{ 'abc'.index('c') }}|{{ 'cab' in 'abcab' }}|{{ '' in 'a' }}|{{ 'e\\u0301' in 'e\\u0301x' }}|{{ 'e' in 'e\\u0301' }}|{{ 'aaa'.replace('aa', 'b') }}", "2|5|0|3|2|3|['a', 'b', '', 'c']|['a', 'b,,c']|['a,b,', 'c']|['a', 'b', 'c']|2|True|True|True|True|ba", nil),
            ("{{ 'abc'.index('z') }}", nil, "substring not found"),
            ("{{ 'abc'.split('') }}", nil, "empty separator"),
            ("{{ 'abcdefghij klm'|truncate(-1) }}", nil, "truncate"),
            ("{{ [1, 2, 3]|slice(0)|list }}", nil, "by zero"),
            ("{{ 'x'|wordwrap(0) }}", nil, "wordwrap"),
            ("{{ [1, 2, 3][::0] }}", nil, "step cannot be zero"),
            ("{{ range(1, 2, 0) }}", nil, "zero"),
        ])
    }

    /// How values print: namespaces as jinja2 3.1 prints them (a cycle ends in {...}), tuples, floats.
    @Test func printing() {
        Self.check([
            ("{% set ns = namespace(a=1) %}{{ ns }}|{{ ns.a }}", "<Namespace {'a': 1}>|1", nil),
            ("{% set ns = namespace() %}{% set ns.a = ns %}{{ ns }}|{{ ns|string }}", "<Namespace {'a': <Namespace {...}>}>|<Namespace {'a': <Namespace {...}>}>", nil),
            ("{% set ns = namespace() %}{% set ns.a = ns %}{{ ns == ns.a }}|{{ ns.a.a.a is defined }}", "True|True", nil),
            ("{{ {'a': 1}.items()|list }}|{{ (1,) }}|{{ () }}|{{ [(1, 'a')] }}|{{ 1e20 }}|{{ 1.0 }}|{{ 0.1 + 0.2 }}", "[('a', 1)]|(1,)|()|[(1, 'a')]|1e+20|1.0|0.30000000000000004", nil),
            ("{% set ns = namespace() %}{% set ns.a = [ns] %}{{ ns.a|tojson }}", nil, "Namespace is not JSON serializable"),
            ("{% set ns = namespace() %}{{ ns|tojson }}", nil, "Namespace is not JSON serializable"),
        ])
    }
}
