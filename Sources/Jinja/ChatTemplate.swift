import Foundation
import Tokenizers

/// A chat template (Jinja) rendered as transformers' `apply_chat_template` renders it.
public struct ChatTemplate: @unchecked Sendable {
    public let source: String
    /// Where the template came from, for messages: a file, or a file and key.
    public let origin: String
    let nodes: [JinjaNode]

    /// - Throws: `TokenizerError` naming `origin` and the template line of a syntax error.
    public init(source: String, origin: String) throws {
        self.source = source
        self.origin = origin
        do { nodes = try JinjaParser.parse(source) } catch {
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
        let interpreter = JinjaInterpreter(globals: globals)
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
