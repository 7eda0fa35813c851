import Foundation
import Tokenizers

/// What a chat template may do, in one place. Templates are code written by strangers and
/// downloaded with models, so the engine is a sandbox (as transformers renders them in
/// jinja2's ImmutableSandboxedEnvironment) that also bounds time, memory and stack: each
/// limit is checked before the work it bounds is done, and passing one is a `TemplateError`
/// naming the limit and the template line. The defaults are far above what published
/// templates need (docs/data.md, "Chat templates run sandboxed").
public struct JinjaLimits: Sendable {
    /// Nesting in the source: parentheses, brackets, braces, `not`, unary signs, operator,
    /// filter and attribute chains, blocks within blocks. Checked while parsing.
    public var maxParseDepth = 256
    /// Macro calls in progress at once (a macro calling itself).
    public var maxMacroDepth = 200
    /// Statements and expressions being evaluated within each other, across macro calls.
    public var maxRenderDepth = 1000
    /// Loop iterations in one render, all loops together.
    public var maxLoopIterations = 100_000
    /// Numbers one `range()` may produce.
    public var maxRangeLength = 100_000
    /// The rendered text (and any block `set` or macro output), UTF-8 bytes.
    public var maxOutputBytes = 16 << 20
    /// Any one string built (`*`, `~`, `+`, `join`, `indent`, `center`, `tojson`, `replace`,
    /// `format`, `%`...), UTF-8 bytes.
    public var maxStringBytes = 16 << 20
    /// Any one list built (`*`, `+`, `list`, `batch`, `slice`, `map`...), elements.
    public var maxListLength = 1_000_000
    /// Lists, dicts and namespaces within each other, in a value a template stores (`set`,
    /// a macro's arguments) and in JSON read.
    public var maxValueDepth = 512
    /// The string bytes and list elements built in one render, added up: bounds quadratic
    /// work such as appending to a string in a loop.
    public var maxBuiltTotal = 1 << 30

    public init() {}
    public static let `default` = JinjaLimits()
}

/// A chat template (Jinja) rendered as transformers' `apply_chat_template` renders it.
public struct ChatTemplate: @unchecked Sendable {
    public let source: String
    /// Where the template came from, for messages: a file, or a file and key.
    public let origin: String
    public let limits: JinjaLimits
    let nodes: [JinjaNode]

    /// - Throws: `TokenizerError` naming `origin` and the template line of a syntax error.
    public init(source: String, origin: String, limits: JinjaLimits = .default) throws {
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
    public func render(messages: JinjaValue, addGenerationPrompt: Bool, variables: [String: JinjaValue] = [:]) throws -> String {
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
    public static func json(_ text: String) throws -> JinjaValue { try JinjaJSON.parse(text) }
}

extension JinjaValue {
    /// The object's value at `key`, if this is an object.
    public subscript(key: String) -> JinjaValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }
    public var stringValue: String? { if case .string(let s) = self { return s }; return nil }
    public var arrayValue: [JinjaValue]? { if case .array(let a) = self { return a }; return nil }
    public var jsonText: String { (try? JinjaJSON.dump(self)) ?? repr }
}
