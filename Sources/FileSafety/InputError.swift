/// An error the user can fix: a bad file, key, line, value or layout. Every module's input
/// errors conform, so the CLI reports any of them one way — one line naming the file and what
/// was expected, exit code 1 (docs/design.md §2) — and a new error type cannot be missed by a
/// catch ladder.
package protocol InputError: Error, CustomStringConvertible {
    /// The line the CLI prints after `error: `.
    var userMessage: String { get }
}

extension InputError {
    package var userMessage: String { description }
}

extension BoundedFileError: InputError {}
extension AtomicDirectoryError: InputError {}
