/// How much of an offending value an error message shows: a 10 MB value from a hostile file
/// must not become a 10 MB message.
package let maxQuotedCharacters = 200

/// `value` in double quotes, cut to its first `maxQuotedCharacters` characters with a note of
/// how long it was.
package func quoted(_ value: String) -> String {
    "\"" + excerpt(value) + "\""
}

/// `value` cut to its first `maxQuotedCharacters` characters, with a note of its full length.
package func excerpt(_ value: String) -> String {
    guard value.utf8.count > maxQuotedCharacters else { return value }
    let head = value.prefix(maxQuotedCharacters)
    return head + "… (\(value.utf8.count) bytes)"
}
