import FuzzTargets

/// Tokens of each target's syntax, inserted by the mutator: a random byte rarely makes a
/// keyword, and the interesting inputs are made of them.
extension FuzzTarget {
    var dictionary: [[UInt8]] {
        let words: [String]
        switch self {
        case .safetensors, .safetensorsIndex, .config, .jsonl, .preferences:
            words = ["{", "}", "[", "]", ",", ":", "\"", "null", "true", "\"dtype\"", "\"shape\"", "\"data_offsets\"", "\"F32\"", "\"BF16\"",
                     "\"I64\"", "\"weight_map\"", "\"../x.safetensors\"", "\"hidden_size\"", "\"vocab_size\"", "\"num_hidden_layers\"",
                     "\"messages\"", "\"role\"", "\"content\"", "\"prompt\"", "\"chosen\"", "\"rejected\"", "\"answer\"", "\"margin\"", "\"assistant\"", "1e309", "\n"]
        case .hdf5:
            words = ["\u{89}HDF", "TREE", "HEAP", "SNOD", "OHDR", "\u{FF}\u{FF}\u{FF}\u{FF}", "\0\0\0\0"]
        case .tokenizer:
            words = ["\"pre_tokenizer\"", "\"Split\"", "\"Regex\"", "\"pattern\"", "(a+)+$", "(.*)*", "\\\\p{L}+", "(?i:", "{1000000}",
                     "\"Metaspace\"", "\"prepend_scheme\"", "\"first\"", "\"normalizer\"", "\"Strip\"", "\"merges\"", "\"vocab\"",
                     "\"added_tokens\"", "\"ByteLevel\"", "\"Sequence\"", "\"decoder\"", "[", "]", "{", "}", "-1", "\"\u{2581}\""]
        case .template:
            words = ["{%", "%}", "{{", "}}", "{#", "#}", "(", ")", "[", "]", " * ", " ** ", " // ", " % ", " ~ ", "range(", "10**9",
                     "namespace()", "{% set ns = namespace() %}", "{% macro m() %}{{ m() }}{% endmacro %}", "{{ m() }}", "loop.",
                     "|indent(", "|tojson(indent=", "|join", "|selectattr(", "|map(", "|dictsort", "none", "undefined", "messages",
                     "{% for x in range(100000) %}", "{% endfor %}", "{% if ", "{% endif %}", "-9223372036854775808", "*args", "**kw",
                     "'a'", "recursive", "loop(", "caller()", "{% call ", "{% filter upper %}", "{% endfilter %}"]
        case .recipe:
            words = ["stages:", "kind:", "grpo", "sft", "pretrain", "model:", "parallel:", "dp:", "ep:", "- ", "  ", "\n", "&a", "*a",
                     "<<: *a", "!!binary", "steps:", "1e309", "-1", "[", "]", "{", "}", ": "]
        }
        return words.map { Array($0.utf8) }
    }
}
