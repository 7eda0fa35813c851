import Foundation
import Testing
@testable import Data
@testable import Tokenizers
@testable import Jinja

/// Chat templates render and tokenize as transformers' apply_chat_template does
/// (tools/golden_chat_templates.py): nine published-style templates stored in the three ways
/// model directories carry them, several conversations each (system prompts, multi-turn,
/// tool calls and tool outputs, reasoning, Unicode), with and without add_generation_prompt;
/// the conversations a template rejects are rejected.
@Suite struct ChatTemplateTests {
    static let root = Fixtures.path("chat_templates")
    static let names = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).sorted()

    @Test func fixturesAreThere() {
        #expect(Self.names.count >= 9, "\(Self.names)")
    }

    @Test(arguments: names) func rendersAsTransformers(name: String) throws {
        let tok = try ChatTokenizer(path: "\(Self.root)/\(name)")
        #expect(tok.template != nil)
        let text = try String(contentsOfFile: "\(Self.root)/\(name)/cases.json", encoding: .utf8)
        let cases = try #require(try ChatTemplate.json(text).arrayValue)
        #expect(cases.count >= 10)
        for (i, c) in cases.enumerated() {
            let messages = try #require(c["messages"])
            let agp = { if case .bool(let b)? = c["add_generation_prompt"] { return b }; return false }()
            if let expectedError = c["error"]?.stringValue {
                do {
                    _ = try tok.render(messages, addGenerationPrompt: agp, tools: c["tools"])
                    Issue.record("\(name) case \(i): rendered, but transformers raised \(expectedError)")
                } catch let e as TemplateError {
                    // raise_exception carries the template's message; other failures are ours to word.
                    if e.raised { #expect(e.message == expectedError, "\(name) case \(i)") }
                }
                continue
            }
            let rendered = try tok.render(messages, addGenerationPrompt: agp, tools: c["tools"])
            #expect(rendered == c["rendered"]?.stringValue, "\(name) case \(i)")
            let ids = try tok.applyChatTemplate(messages, addGenerationPrompt: agp, tools: c["tools"])
            let expected = c["ids"]?.arrayValue?.compactMap(\.intValue)
            #expect(ids == expected, "\(name) case \(i) ids")
        }
    }

    static func render(_ source: String, _ messages: String = #"[{"role": "user", "content": "hi"}]"#,
                       _ vars: [String: JinjaValue] = [:]) throws -> String {
        try ChatTemplate(source: source, origin: "t.jinja").render(messages: try ChatTemplate.json(messages), addGenerationPrompt: false, variables: vars)
    }

    /// The Jinja pieces templates lean on, each checked on its own (Python's answers).
    @Test func jinjaSemantics() throws {
        #expect(try Self.render("{% for m in messages %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{% endfor %}") == "10TrueTrue1")
        #expect(try Self.render("{% set ns = namespace(n=0) %}{% for i in range(3) %}{% set ns.n = ns.n + i %}{% set leak = 1 %}{% endfor %}{{ ns.n }}{{ leak is defined }}") == "3False")
        #expect(try Self.render("{{ 'a b  c'.split() }}{{ 'a,b'.split(',') }}{{ '  x '.strip() }}{{ 'abc'.startswith('ab') }}") == "['a', 'b', 'c']['a', 'b']xTrue")
        #expect(try Self.render("{{ [1, 2, 3][1:] }}{{ 'hello'[::-1] }}{{ [1, 2, 3][-1] }}{{ (1,) }}") == "[2, 3]olleh3(1,)")
        #expect(try Self.render("{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 1 + 1.5 }}") == "3 -4 2 3.5 1024 2.5")
        #expect(try Self.render("{{ x | default('d') }}{{ none | default('n', true) }}{{ 'A' ~ 1 ~ none }}") == "dnA1None")
        #expect(try Self.render(#"{{ {"b": 1, "a": [true, none, "é\n"]} | tojson }}"#) == #"{"b": 1, "a": [true, null, "é\n"]}"#)
        #expect(try Self.render("{{ 'x' if 1 in [1] and not 2 in [1] else 'y' }}{{ 'ab' in 'cab' }}{{ 3 is odd }}{{ none is none }}") == "xTrueTrueTrue")
        #expect(try Self.render("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}") == "a=1;b=2;")
        #expect(try Self.render("{% for i in range(5) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}") == "02")
        #expect(try Self.render("{% macro greet(name, p='Hi') %}{{ p }} {{ name }}{% endmacro %}{{ greet('A') }}/{{ greet('B', p='Yo') }}") == "Hi A/Yo B")
        #expect(try Self.render("{%- if true -%}\n  a  \n{%- endif -%}\n") == "a")
        #expect(try Self.render("  {% if true %}\nx\n  {% endif %}\ny") == "x\ny")
        #expect(try Self.render("{% raw %}{{ not rendered }}{% endraw %}") == "{{ not rendered }}")
        #expect(try Self.render("{# a comment #}{{ messages[0].content | upper }}{{ messages | length }}") == "HI1")
    }

    /// A syntax error names the template and its line; a runtime error its line; raise_exception
    /// its own message.
    @Test func errorsNameTheLine() throws {
        do {
            _ = try ChatTemplate(source: "line one\n{% if x %}\n{{ x + }}\n{% endif %}", origin: "bad.jinja")
            Issue.record("accepted a syntax error")
        } catch let e as TokenizerError {
            #expect(e.description.contains("bad.jinja") && e.description.contains("line 3"), "\(e)")
        }
        do {
            _ = try ChatTemplate(source: "{% for m in messages %}\n{{ m }}", origin: "open.jinja")
            Issue.record("accepted an unclosed for")
        } catch let e as TokenizerError {
            #expect(e.description.contains("endfor"), "\(e)")
        }
        do {
            _ = try Self.render("a\nb\n{{ messages[0].content + 1 }}")
            Issue.record("added a string and a number")
        } catch let e as TemplateError {
            #expect(e.line == 3 && !e.raised, "\(e)")
        }
        do {
            _ = try Self.render("{% if messages | length > 0 %}\n{{ raise_exception('no ' ~ messages[0].role ~ ' here') }}{% endif %}")
            Issue.record("raise_exception did not raise")
        } catch let e as TemplateError {
            #expect(e.raised && e.message == "no user here" && e.line == 2, "\(e)")
        }
        do {
            _ = try Self.render("{{ 'x' | urlize }}")
            Issue.record("an unsupported filter was accepted")
        } catch let e as TemplateError {
            #expect(e.message.contains("urlize"), "\(e)")
        }
    }

    /// tokenizer_config.json forms: a list of named templates needs a "default"; a directory
    /// without any template says so.
    @Test func templateSources() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("dt-chat-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.copyItem(atPath: "\(Self.root)/chatml/tokenizer.json", toPath: "\(dir)/tokenizer.json")
        try #"{"eos_token": "<|im_end|>", "chat_template": [{"name": "tool_use", "template": "x"}]}"#
            .write(toFile: "\(dir)/tokenizer_config.json", atomically: true, encoding: .utf8)
        do {
            _ = try ChatTokenizer(path: dir)
            Issue.record("a template list without default was accepted")
        } catch let e as TokenizerError {
            #expect(e.description.contains("tokenizer_config.json") && e.description.contains("default") && e.description.contains("tool_use"), "\(e)")
        }
        try #"{"eos_token": {"content": "<|im_end|>", "__type": "AddedToken"}}"#.write(toFile: "\(dir)/tokenizer_config.json", atomically: true, encoding: .utf8)
        let tok = try ChatTokenizer(path: dir)
        #expect(tok.template == nil && tok.eosToken == "<|im_end|>" && tok.eosId != nil)
        #expect(throws: TokenizerError.self) { _ = try tok.render(try ChatTemplate.json(#"[{"role": "user", "content": "x"}]"#), addGenerationPrompt: true) }
    }
}
