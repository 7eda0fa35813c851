import Foundation
import Tokenizers

/// What a chat template may do, in one place. Templates are code written by strangers and
/// downloaded with models, so the engine is a sandbox (as transformers renders them in
/// jinja2's ImmutableSandboxedEnvironment) that also bounds time, memory and stack: each
/// limit is checked before the work it bounds is done, and passing one is a `TemplateError`
/// naming the limit and the template line. The defaults are far above what published
/// templates need (docs/data.md, "Chat templates run sandboxed").
package struct JinjaLimits: Sendable {
    /// Nesting in the source: parentheses, brackets, braces, `not`, unary signs, operator,
    /// filter and attribute chains, blocks within blocks. Checked while parsing.
    package var maxParseDepth = 256
    /// Macro calls in progress at once (a macro calling itself).
    package var maxMacroDepth = 200
    /// Statements and expressions being evaluated within each other, across macro calls.
    package var maxRenderDepth = 1000
    /// Loop iterations in one render, all loops together.
    package var maxLoopIterations = 100_000
    /// Numbers one `range()` may produce.
    package var maxRangeLength = 100_000
    /// The rendered text (and any block `set` or macro output), UTF-8 bytes.
    package var maxOutputBytes = 16 << 20
    /// Any one string built (`*`, `~`, `+`, `join`, `indent`, `center`, `tojson`, `replace`,
    /// `format`, `%`...), UTF-8 bytes.
    package var maxStringBytes = 16 << 20
    /// Any one list built (`*`, `+`, `list`, `batch`, `slice`, `map`...), elements.
    package var maxListLength = 1_000_000
    /// Lists, dicts and namespaces within each other, in a value a template stores (`set`,
    /// a macro's arguments) and in JSON read.
    package var maxValueDepth = 512
    /// The string bytes and list elements built in one render, added up: bounds quadratic
    /// work such as appending to a string in a loop.
    package var maxBuiltTotal = 1 << 30

    package init() {}
    package static let `default` = JinjaLimits()
}

/// A chat template (Jinja) rendered as transformers' `apply_chat_template` renders it.
package struct ChatTemplate: @unchecked Sendable {
    package let source: String
    /// Where the template came from, for messages: a file, or a file and key.
    package let origin: String
    package let limits: JinjaLimits
    let nodes: [JinjaNode]

    /// - Throws: `TokenizerError` naming `origin` and the template line of a syntax error.
    package init(source: String, origin: String, limits: JinjaLimits = .default) throws {
        self.source = source
        self.origin = origin
        self.limits = limits
        do { nodes = try JinjaParser.parse(source, limits: limits) } catch {
            throw TokenizerError(source: origin, message: "chat template syntax error at \(error.description)")
        }
    }

    /// The rendered text. `variables` are the rest of the template's globals: the special
    /// tokens as strings (`bos_token`, `eos_token`, ...), `tools`, `documents`.
    /// - Throws: `TemplateError` (its `line` is the template's; `raised` for `raise_exception`).
    package func render(messages: JinjaValue, addGenerationPrompt: Bool, variables: [String: JinjaValue] = [:]) throws -> String {
        var globals = variables
        globals["messages"] = messages
        globals["add_generation_prompt"] = .bool(addGenerationPrompt)
        if globals["tools"] == nil { globals["tools"] = JinjaValue.none }
        if globals["documents"] == nil { globals["documents"] = JinjaValue.none }
        let interpreter = JinjaInterpreter(globals: globals, limits: limits)
        do { return try interpreter.render(nodes) } catch let e as TemplateError { throw e } catch JinjaInterpreter.Flow.breakLoop {
            throw TemplateError("break outside a loop", line: interpreter.line)
        } catch JinjaInterpreter.Flow.continueLoop {
            throw TemplateError("continue outside a loop", line: interpreter.line)
        }
    }

    /// Parses one JSON document (objects keep their key order, as Python reads them).
    package static func json(_ text: String) throws -> JinjaValue { try JinjaJSON.parse(text) }
}

extension JinjaValue {
    /// The object's value at `key`, if this is an object.
    package subscript(key: String) -> JinjaValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }
    package var stringValue: String? { if case .string(let s) = self { return s }; return nil }
    package var arrayValue: [JinjaValue]? { if case .array(let a) = self { return a }; return nil }
    package var jsonText: String { (try? JinjaJSON.dump(self)) ?? repr }
}
