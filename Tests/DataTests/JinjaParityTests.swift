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
            ("{{ 'x'|wordwrap(0) }}", nil, "invalid width 0"),
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

    /// transformers' tojson(ensure_ascii, indent, separators, sort_keys), positional or by keyword, as json.dumps writes them.
    @Test func tojsonOptions() {
        Self.check([
            ("{{ '東京'|tojson(ensure_ascii=True) }}|{{ {'k': 'é'}|tojson(ensure_ascii=True) }}|{{ '🚀é'|tojson(ensure_ascii=True) }}", "\"\\u6771\\u4eac\"|{\"k\": \"\\u00e9\"}|\"\\ud83d\\ude80\\u00e9\"", nil),
            ("{{ '\\x7f\\x1f'|tojson(ensure_ascii=True) }}|{{ '\\x7f\\x1f'|tojson }}|{{ {'é': 1}|tojson(ensure_ascii=1) }}|{{ {1: 'é'}|tojson(ensure_ascii=1, sort_keys=1) }}", "\"\\u007f\\u001f\"|\"\u{7f}\\u001f\"|{\"\\u00e9\": 1}|{\"1\": \"\\u00e9\"}", nil),
            ("{{ {'a': [1, 2]}|tojson(separators=(',', ':')) }}|{{ {'a': [1, 2]}|tojson(indent=2, separators=(';', '=')) }}|{{ {'a': [1]}|tojson(separators=[',', ':']) }}", "{\"a\":[1,2]}|{\n  \"a\"=[\n    1;\n    2\n  ]\n}|{\"a\":[1]}", nil),
            ("{{ {'a': 1}|tojson(2) }}|{{ {'a': 1}|tojson(true, 1) }}|{{ {'b': 1, 'a': 2}|tojson(false, none, none, true) }}|{{ {'a': [1]}|tojson(indent=true) }}|{{ {'a': 1}|tojson(indent='\\t') }}|{{ [1]|tojson(indent=none) }}", "{\"a\": 1}|{\n \"a\": 1\n}|{\"a\": 2, \"b\": 1}|{\n \"a\": [\n  1\n ]\n}|{\n\t\"a\": 1\n}|[1]", nil),
            ("{{ ('a<'|safe)|tojson }}|{{ {'k': 'a'|safe}|tojson }}", "\"a<\"|{\"k\": \"a\"}", nil),
            ("{{ {'a': 1}|tojson(separators=(',',)) }}", nil, "not enough values to unpack"),  // jinja2: ValueError: not enough values to unpack (expected 2, got 1)
            ("{{ {'a': 1}|tojson(separators=(1, 2)) }}", nil, "must be str"),  // jinja2: TypeError: make_encoder() argument 5 must be str, not int
            ("{{ {'a': 1}|tojson(indent=1.5) }}", nil, "can't multiply sequence"),  // jinja2: TypeError: can't multiply sequence by non-int of type 'float'
        ])
    }

    /// Markup (|safe, |escape): + and % escape the str they combine with, both ways, and the result stays Markup; ~ does not; filters keep or drop Markup as jinja2's do.
    @Test func markupEscapes() {
        Self.check([
            ("{{ 'a'|safe + '<\"&>' }}", "a&lt;&#34;&amp;&gt;", nil),
            ("{{ \"x:\"|safe + {'k': 'v'}|tojson }}", "x:{&#34;k&#34;: &#34;v&#34;}", nil),
            ("{{ '<' + 'a'|safe }}|{{ ('a'|safe + \"'\") + 'b&' }}|{{ 'a'|safe ~ '‹' }}", "&lt;a|a&#39;b&amp;|a‹", nil),
            ("{{ [('a'|safe)] }}|{{ {'k': 'a'|safe} }}|{{ 'a'|safe is string }}|{{ ('<'|safe)|escape }}|{{ ('<'|safe)|e }}|{{ ('<'|safe)|forceescape }}", "[Markup('a')]|{'k': Markup('a')}|True|<|<|&lt;", nil),
            ("{{ '<b>x</b> y'|striptags }}|{{ ('<b>x</b>  y &amp; <!-- c <i> -->z'|safe)|striptags }}|{{ '<!<!-- a -->-- b -->c'|striptags }}|{{ 'a < b'|striptags }}", "x y|x y & z|-- b -->c|a < b", nil),
            ("{{ ('a<'|safe)|upper + '<' }}|{{ ('a<'|safe)|replace('a','b') + '<' }}|{{ ('a'|safe)|trim + '<' }}|{{ ('a'|safe)|string + '<' }}|{{ ('a'|safe)|join + '<' }}", "A<&lt;|b<<|a&lt;|a&lt;|a<", nil),
            ("{{ ('%s'|safe) % '<' }}|{{ ('%s'|safe)|format('<') }}|{{ '%s' % ('<'|safe) }}|{{ ('a'|safe) * 2 + '<' }}|{{ 2 * ('a'|safe) + '<' }}|{{ ('ab'|safe)[0] + '<' }}|{{ ('ab'|safe)[1:] + '<' }}", "&lt;|&lt;|<|aa&lt;|aa&lt;|a&lt;|b&lt;", nil),
            ("{% for c in 'ab'|safe %}{{ c + '<' }}{% endfor %}|{{ ('ab'|safe)|first + '<' }}|{{ ('a'|safe) == 'a' }}|{{ 'a' in ('ab'|safe) }}|{{ ('a'|safe)|length }}", "a<b<|a<|True|True|1", nil),
            ("{{ ('a'|safe).upper() + '<' }}|{{ (','|safe).join(['<', 'b']) }}|{{ ('a-b'|safe).replace('-', '<') }}|{{ ('a b'|safe).split() }}|{{ ('a'|safe).strip() + '<' }}|{{ ('{}'|safe).format('<') }}|{{ ('ab'|safe).startswith('a') }}", "A&lt;|&lt;,b|a&lt;b|[Markup('a'), Markup('b')]|a&lt;|&lt;|True", nil),
            ("{{ ('a'|safe)|indent(2, true) + '<' }}|{{ ('a'|safe)|center(3) + '<' }}|{{ ('a'|safe)|title + '<' }}|{{ ('a'|safe)|capitalize + '<' }}|{{ ('a'|safe)|lower + '<' }}|{{ ('abc def'|safe)|truncate(5, leeway=0) + '<' }}|{{ ('a'|safe)|default('x') + '<' }}|{{ ('a'|safe)|wordwrap(3) + '<' }}|{{ ('a'|safe)|safe + '<' }}|{{ ('a'|safe)|reverse + '<' }}|{{ (('a'|safe)|list)[0] + '<' }}", "  a&lt;| a &lt;|A<|A&lt;|a&lt;|ab...&lt;|a&lt;|a<|a&lt;|a&lt;|a<", nil),
            ("{{ ('a'|safe) ~ 1 }}|{{ ('a'|safe) ~ ('<'|safe) + '<' }}|{{ ('a'|safe) ~ '<' + ('a'|safe) }}|{{ {('a'|safe): 1}['a'] }}|{{ 'x' ~ (('a'|safe) + '<') }}|{{ ('a'|safe) + ('<'|safe) }}|{{ none|safe + '<' }}|{{ 5|safe + '<' }}|{{ foo|safe + '<' }}|{{ ([1]|safe) + '<' }}", "a1|a<<|a&lt;a|1|xa&lt;|a<|None&lt;|5&lt;|&lt;|[1]&lt;", nil),
            ("{{ (('a'|safe) * 2)|e }}|{{ '<'|escape|escape }}|{{ '<'|e + '<' }}|{{ 5|e + '<' }}|{{ foo|e + '<' }}|{{ none|e }}|{{ [1]|e }}|{{ '\\'\"'|e }}", "aa|&lt;|&lt;&lt;|5&lt;|&lt;|None|[1]|&#39;&#34;", nil),
            ("{% set ns = namespace(s='a'|safe) %}{% for x in ['<', '>'] %}{% set ns.s = ns.s + x %}{% endfor %}{{ ns.s }}", "a&lt;&gt;", nil),
            ("{{ ('a'|safe) + 1 }}", nil, "unsupported operand"),  // jinja2: TypeError: unsupported operand type(s) for +: 'Markup' and 'int'
        ])
    }

    /// map, select, reject, selectattr, rejectattr, unique, items, batch and slice return generators and reverse an iterator, as in jinja2: no len, no last, not JSON, always true, used up as they are read.
    @Test func lazyIterators() {
        Self.check([
            ("{{ [1,2]|map('string')|list }}|{{ [1,2]|map('string')|join(',') }}|{{ [1,2]|map('string')|first }}|{{ [1,2]|select is iterable }}|{{ [1]|select is sequence }}|{% for x in [1,2]|map('string') %}{{ x }}{% endfor %}", "['1', '2']|1,2|1|True|False|12", nil),
            ("{{ [{'function': 1}]|map(attribute='function')|tojson }}", nil, "not JSON serializable"),  // jinja2: TypeError: Object of type generator is not JSON serializable
            ("{{ [1,2]|map('string')|length }}", nil, "has no len()"),  // jinja2: TypeError: object of type 'generator' has no len()
            ("{{ [1,2]|map('string')|count }}", nil, "has no len()"),  // jinja2: TypeError: object of type 'generator' has no len()
            ("{{ [1,2]|map('string')|last }}", nil, "not reversible"),  // jinja2: TypeError: 'generator' object is not reversible
            ("{{ [1,2]|unique|length }}", nil, "has no len()"),  // jinja2: TypeError: object of type 'generator' has no len()
            ("{{ [1,2]|reverse|length }}", nil, "has no len()"),  // jinja2: TypeError: object of type 'list_reverseiterator' has no len()
            ("{{ [1,2]|reverse|last }}", nil, "not reversible"),  // jinja2: TypeError: 'list_reverseiterator' object is not reversible
            ("{{ {'a':1}|items|length }}", nil, "has no len()"),  // jinja2: TypeError: object of type 'generator' has no len()
            ("{{ ([1,2]|select)[1:] }}", nil, "not subscriptable"),  // jinja2: TypeError: 'generator' object is not subscriptable
            ("{{ ([1]|select) + [1] }}", nil, "unsupported operand"),  // jinja2: TypeError: unsupported operand type(s) for +: 'generator' and 'list'
            ("{{ 5|items|list }}", nil, "Can only get item pairs from a mapping"),  // jinja2: TypeError: Can only get item pairs from a mapping.
            ("{{ ([1,2]|select)[0] is defined }}|{{ ([1,2]|select).x is defined }}|{{ ([1,2]|reverse)[0] is defined }}|{{ 5|items is defined }}|{{ none|select|list }}|{{ foo|reverse|list }}", "False|False|False|True|[]|[]", nil),
            ("{% set g = [1,2,3]|map('string') %}{{ g|first }}|{{ g|list }}|{{ g|list }}|{{ 1 in g }}", "1|['2', '3']|[]|False", nil),
            ("{% set g = [1,2,3]|select %}{{ 2 in g }}|{{ g|list }}|{{ g == g }}|{{ g == [3] }}|{{ g|default('d') is defined }}|{% if g %}T{% endif %}|{% if [0]|select %}T2{% endif %}|{{ g is mapping }}|{{ g is string }}", "True|[3]|True|False|True|T|T2|False|False", nil),
            ("{% set g = [3,1,2]|select %}{{ g|sort }}|{% set g = [3,1,2]|select %}{{ g|sum }}|{% set g = [3,1,2]|select %}{{ g|min }}|{% set g = [3,1,2]|select %}{{ g|max }}|{% set g = [3,1,2]|select %}{{ g|reverse }}|{% set g = [3,1,2]|select %}{{ g|batch(2)|list }}|{% set g = [3,1,2]|select %}{{ g|unique|list }}|{% set g = [3,1,2]|select %}{{ g|join('-') }}|{% set g = [3,1,2]|select %}{{ g|slice(2)|list }}", "[1, 2, 3]|6|1|3|[2, 1, 3]|[[3, 1], [2]]|[3, 1, 2]|3-1-2|[[3, 1], [2]]", nil),
            ("{% set g = [1,2,3]|select %}{% for x in g %}{{ x }}{% break %}{% endfor %}|{{ g|list }}|{% set g = [1,2,3]|select %}{% for x in g %}{{ x }}{{ loop.length }}{% endfor %}|{{ g|list }}|{% for x in []|select %}{% else %}none{% endfor %}", "1|[2, 3]|132333|[]|none", nil),
            ("{{ [1]|select|int }}|{{ [1]|select|float }}|{{ [1,2]|select|first }}|{{ []|select|first }}|{{ ([]|select|first) is defined }}|{{ ','.join(['a','b']|map('upper')) }}|{{ (['a','b']|map('upper'))|list|length }}", "0|0.0|1||False|A,B|2", nil),
            ("{% macro f(a, b) %}{{ a }}{{ b }}{% endmacro %}{{ f(*([1,2]|select)) }}|{% set a, b = [1, 2]|map('string') %}{{ a }}{{ b }}|{% for k, v in {'a': 1}|items %}{{ k }}={{ v }}{% endfor %}|{{ {'a': 1, 'b': 2}|reverse|list }}|{{ (1, 2)|reverse|list }}", "12|12|a=1|['b', 'a']|[2, 1]", nil),
            ("{{ ['a', 1]|map('upper')|first }}|{{ messages|selectattr('role', 'equalto', 'user')|map(attribute='content')|first }}|{{ messages|rejectattr('role', 'equalto', 'user')|list }}|{{ messages|selectattr('role', 'equalto', 'user')|list|length }}", "A|hi|[]|1", nil),
            ("{% set g = [1, 'a']|select('gt', 0) %}{{ g|first }}", "1", nil),
            ("{% set g = [1, 'a']|select('gt', 0) %}{{ g|list }}", nil, "not supported between"),  // jinja2: TypeError: '>' not supported between instances of 'str' and 'int'
            ("{% set g = [1]|map('nosuchfilter') %}ok", "ok", nil),
        ])
    }

    /// {% filter %} blocks: the body's text through a filter chain with arguments; set inside does not leak.
    @Test func filterBlocks() {
        Self.check([
            ("{% filter upper %}a{{ 'b' }}c{% endfilter %}|{% filter replace('a', 'x')|upper %}aba{% endfilter %}|{% filter trim %}  x  {% endfilter %}|{%- filter trim -%}\n  y \n{%- endfilter %}", "ABC|XBX|x|y", nil),
            ("{% filter indent(2, true) %}a\nb{% endfilter %}|{% set x = 1 %}{% filter string %}{% set x = 2 %}{{ x }}{% endfilter %}{{ x }}|{% for i in [1, 2] %}{% filter upper %}{{ 'a' ~ i }}{% endfilter %}{% endfor %}", "  a\n  b|21|A1A2", nil),
            ("{% filter format('x') %}<%s>{% endfilter %}|{% filter center(5) %}ab{% endfilter %}|", "<x>|  ab |", nil),
            ("{% filter nosuch %}a{% endfilter %}", nil, "nosuch"),  // jinja2: TemplateAssertionError: No filter named 'nosuch'.
        ])
    }

    /// Python's % formatting and jinja2's format filter: conversions, flags, width, precision, * arguments, %(key)s, and Python's errors.
    @Test func printfFormatting() {
        Self.check([
            ("{{ '%s-%d'|format('a', 3) }}|{{ '%(k)s=%(v)05.2f'|format(k='x', v=3.14159) }}|{{ '%s' % 'x' }}|{{ '%s %s' % ('a', 'b') }}|{{ '%(k)s' % {'k': 1} }}|{{ '%5s|%-5s|%.2s' % ('ab', 'cd', 'xyz') }}", "a-3|x=03.14|x|a b|1|   ab|cd   |xy", nil),
            ("{{ '%d %i %x %X %o %#x %#o %+d % d %05d %-5d|' % (3, -4, 255, 255, 8, 255, 8, 5, 5, -42, 7) }}|{{ '%e %E %f %F %g %G' % (12345.678, 0.00012, 3.5, 1e20, 1e-5, 1234567.0) }}|{{ '%c%c' % (65, 'b') }}|{{ '%r %a %%' % ('é', 'é🚀') }}", "3 -4 ff FF 10 0xff 0o10 +5  5 -0042 7    ||1.234568e+04 1.200000E-04 3.500000 100000000000000000000.000000 1e-05 1.23457E+06|Ab|'é' '\\xe9\\U0001f680' %", nil),
            ("{{ '%*d|%.*f' % (5, 3, 2, 3.14159) }}|{{ '%s' % [1, 2] }}|{{ '%s' % {'a': 1} }}|{{ 'abc' % {'a': 1} }}|{{ 'abc' % [] }}|{{ '%d' % 3.9 }}|{{ '%d' % true }}|{{ '%s' % none }}|{{ '%s' % foo }}|{{ '%(a)s %(a)r' % {'a': 'x'} }}|{{ '%ld %hd %Lf' % (1, 2, 3.0) }}", "    3|3.14|[1, 2]|{'a': 1}|abc|abc|3|1|None||x 'x'|1 2 3.000000", nil),
            ("{{ '%.3d|%#.0f|%#g|%.0e|%10.3e' % (5, 3.0, 1.0, 12345.0, 1.5) }}|{{ '%.30f' % 0.1 }}|{{ '%g' % 100000.0 }}|{{ '%g' % 1000000.0 }}|{{ '%s' % 1e16 }}|{{ '%r' % \"a'b\" }}|{{ '%-5c|' % 'x' }}|{{ '%05s|%+s|%#s' % ('a', 'b', 'c') }}", "005|3.|1.00000|1e+04| 1.500e+00|0.100000000000000005551115123126|100000|1e+06|1e+16|\"a'b\"|x    ||    a|b|c", nil),
            ("{{ '%+.2e|% f|%+x|%#X' % (1.5, 2.0, 10, 255) }}|{{ '%d' % -0.5 }}|{{ '%#o|%#x' % (0, 0) }}|{{ '%-08.3f|' % 3.14159 }}|{{ '%x' % -255 }}|{{ '%#x' % -255 }}|{{ '%08.3d' % 5 }}|{{ '%05f' % (1e308 * 10) }}|{{ '%-6f|' % (1e308 * 10 - 1e308 * 10) }}|{{ '%+F' % (1e308 * 10) }}", "+1.50e+00| 2.000000|+a|0XFF|0|0o0|0x0|3.142   ||-ff|-0xff|00000005|00inf|nan   ||+INF", nil),
            ("{{ '%.2r' % 'abc' }}|{{ '%s %(a)s' % {'a': 2} }}|{{ '%0-5d|' % 3 }}|{{ '% +d' % 3 }}|{{ '%#5x|%#05x' % (255, 255) }}|{{ '%.0f %.1f' % (0.5, 0.25) }}|{{ '%c' % 'é' }}|{{ '%5c|' % 66 }}|{{ '%.3s|' % none }}|{{ '%-*d|' % (-5, 1) }}|{{ '%*d|' % (-5, 1) }}|{{ '%((a))s' % {'(a)': 1} }}", "'a|{'a': 2} 2|3    ||+3| 0xff|0x0ff|0 0.2|é|    B||Non||1    ||1    ||1", nil),
            ("{{ '%05.1f|%e|% 05d|%+05x|%i|%o' % (-2.25, 0, 3, 255, 2.5, true) }}|{{ 'abc'|format }}|{{ 5|format }}|{{ foo|format }}|{{ '%s'|format(foo) }}|{{ '%s'|format([1]) }}|{{ '%s'|format((1, 2)) }}|{{ '%(a)s'|format(a=none) }}|{{ '%%|' % () }}|{{ 7 % 3 }}|{{ -7 % 3 }}", "-02.2|0.000000e+00| 0003|+00ff|2|1|abc|5|||[1]|(1, 2)|None|%||1|2", nil),
            ("{{ '%s %s' % 'a' }}", nil, "not enough arguments for format string"),  // jinja2: TypeError: not enough arguments for format string
            ("{{ 'abc' % 5 }}", nil, "not all arguments converted"),  // jinja2: TypeError: not all arguments converted during string formatting
            ("{{ '%d' % 'x' }}", nil, "a real number is required, not str"),  // jinja2: TypeError: %d format: a real number is required, not str
            ("{{ '%x' % 3.5 }}", nil, "an integer is required, not float"),  // jinja2: TypeError: %x format: an integer is required, not float
            ("{{ '%f' % 'x' }}", nil, "must be real number, not str"),  // jinja2: TypeError: must be real number, not str
            ("{{ '%z' % 1 }}", nil, "unsupported format character 'z' (0x7a) at index 1"),  // jinja2: ValueError: unsupported format character 'z' (0x7a) at index 1
            ("{{ '100%' % () }}", nil, "incomplete format"),  // jinja2: ValueError: incomplete format
            ("{{ '%(a' % {'a': 1} }}", nil, "incomplete format key"),  // jinja2: ValueError: incomplete format key
            ("{{ '%(a)s' % ('x',) }}", nil, "format requires a mapping"),  // jinja2: TypeError: format requires a mapping
            ("{{ '%(a)s' % {'b': 1} }}", nil, "'a'"),  // jinja2: KeyError: 'a'
            ("{{ '%(a)s' % [1] }}", nil, "list indices must be integers"),  // jinja2: TypeError: list indices must be integers or slices, not str
            ("{{ '%(a)s %s' % {'a': 1} }}", nil, "not enough arguments"),  // jinja2: TypeError: not enough arguments for format string
            ("{{ '%5%' % (1,) }}", nil, "unsupported format character '%'"),  // jinja2: ValueError: unsupported format character '%' (0x25) at index 2
            ("{{ '%c' % 1114112 }}", nil, "%c arg not in range(0x110000)"),  // jinja2: OverflowError: %c arg not in range(0x110000)
            ("{{ '%c' % 'ab' }}", nil, "%c requires int or char"),  // jinja2: TypeError: %c requires int or char
            ("{{ '%*d' % ('a', 1) }}", nil, "* wants int"),  // jinja2: TypeError: * wants int
            ("{{ '%d' % foo }}", nil, "foo"),  // jinja2: UndefinedError: 'foo' is undefined
            ("{{ foo % 1 }}", nil, "foo"),  // jinja2: UndefinedError: 'foo' is undefined
            ("{{ '%d' % (1e308 * 10 - 1e308 * 10) }}", nil, "cannot convert float NaN to integer"),  // jinja2: NameError: name 'nan' is not defined
            ("{{ '%99999999999999999999d' % 1 }}", nil, "width too big"),  // jinja2: ValueError: width too big
            ("{{ '%.99999999999999999999d' % 1 }}", nil, "precision too big"),  // jinja2: ValueError: precision too big
            ("{{ '%s'|format('a', k=1) }}", nil, "can't handle positional and keyword arguments at the same time"),  // jinja2: FilterArgumentError: can't handle positional and keyword arguments at the same time
            ("{{ '%s'|format }}", nil, "not enough arguments"),  // jinja2: TypeError: not enough arguments for format string
        ])
    }

    /// wordwrap as jinja2 runs Python's textwrap on each line: hyphens, em-dashes, long words, wrapstring, and its errors.
    @Test func wordwrap() {
        Self.check([
            ("{{ 'abc def ghi'|wordwrap(5) }}|{{ 'a-very-long-hyphenated-word and more'|wordwrap(7) }}|{{ 'abcdefghijkl'|wordwrap(5, false) }}|{{ 'x\\n\\ny  z   w'|wordwrap(3, wrapstring='|') }}|{{ 'well--known a--b'|wordwrap(6) }}", "abc\ndef\nghi|a-very-\nlong-hy\nphenate\nd-word\nand\nmore|abcdefghijkl|x||y|z|w|well--\nknown\na--b", nil),
            ("{{ 'a-b-c-d-e'|wordwrap(3, break_on_hyphens=false) }}|{{ '   lead'|wordwrap(4) }}|{{ 'aaa bbbbbbbbbb'|wordwrap(4) }}|{{ 'one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen'|wordwrap }}", "a-b\n-c-\nd-e|lead|aaa \nbbbb\nbbbb\nbb|one two three four five six seven eight nine ten eleven twelve thirteen\nfourteen fifteen sixteen seventeen", nil),
            ("{{ 'x\\r\\ny\\rz'|wordwrap(5) }}|{{ ''|wordwrap(0) }}|{{ 'ab\\tcd ef'|wordwrap(4) }}|{{ 'über-größe-straße x'|wordwrap(8) }}|{{ 'a1-b2-c3 --x y---- z'|wordwrap(3) }}|{{ 'abc-def-ghi'|wordwrap(6) }}|{{ '----abc'|wordwrap(2) }}", "x\ny\nz||ab\ncd\nef|über-\ngröße-\nstraße x|a1-\nb2-\nc3\n--x\ny--\n--\nz|abc-\ndef-\nghi|--\n--\nab\nc", nil),
            ("{{ 'a b'|wordwrap(1, false) }}|{{ 'abc-d'|wordwrap(4) }}|{{ 'hello, world! how are you?'|wordwrap(8, wrapstring='<br>') }}|{{ 'word.--next'|wordwrap(5) }}", "a\nb|abc-\nd|hello,<br>world!<br>how are<br>you?|word.\n--\nnext", nil),
            ("{{ 'abc def ghi'|wordwrap(0) }}", nil, "invalid width 0 (must be > 0)"),  // jinja2: ValueError: invalid width 0 (must be > 0)
            ("{{ foo|wordwrap }}", nil, "foo"),  // jinja2: UndefinedError: 'foo' is undefined
            ("{{ 5|wordwrap }}", nil, "has no attribute 'splitlines'"),  // jinja2: AttributeError: 'int' object has no attribute 'splitlines'
        ])
    }
}
