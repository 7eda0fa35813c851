import Foundation

/// A file too large for what it claims to be, or unreadable.
package struct BoundedFileError: Error, CustomStringConvertible, Equatable {
    package let path: String
    package let message: String
    package var description: String { "\(path): \(message)" }
}

/// The bytes of a file that may hold at most `limit` bytes (a config, a tokenizer, a template,
/// an index): its size is checked before it is read, so a hostile or mistaken file cannot make
/// us allocate more. `what` names the file's role in the message.
package func readBoundedFile(_ path: String, limit: Int, what: String) throws -> Data {
    let attributes: [FileAttributeKey: Any]
    do { attributes = try FileManager.default.attributesOfItem(atPath: path) } catch {
        throw BoundedFileError(path: path, message: "cannot be read")
    }
    if let type = attributes[.type] as? FileAttributeType, type == .typeDirectory {
        throw BoundedFileError(path: path, message: "is a directory; expected \(what)")
    }
    let size = (attributes[.size] as? NSNumber)?.intValue ?? 0
    guard size <= limit else {
        throw BoundedFileError(path: path, message: "is \(size) bytes; \(what) may be at most \(limit) bytes")
    }
    guard let handle = FileHandle(forReadingAtPath: path) else { throw BoundedFileError(path: path, message: "cannot be read") }
    defer { try? handle.close() }
    // Read one byte past the limit: a file that grew since it was measured is still caught.
    let data = (try? handle.read(upToCount: limit + 1)) ?? Data()
    guard data.count <= limit else {
        throw BoundedFileError(path: path, message: "is more than \(limit) bytes; \(what) may be at most \(limit) bytes")
    }
    return data
}
