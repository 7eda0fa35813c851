import Foundation

/// A directory that a command makes as its result, written under a temporary name beside it
/// and renamed into place only when complete: a failure half-way leaves nothing behind.
///
/// An existing destination is replaced whole, but only when everything in it is something the
/// command itself writes (`ownsName`): a mistyped destination never deletes a user's files.
package struct AtomicDirectory {
    package let destination: String
    /// Where the body writes; renamed to `destination` by `commit`.
    package let staging: String

    package init(_ destination: String, ownsName: (String) -> Bool) throws {
        let dst = (destination as NSString).standardizingPath
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: dst, isDirectory: &isDir) {
            guard isDir.boolValue else { throw AtomicDirectoryError(path: dst, message: "exists and is not a directory") }
            let foreign = ((try? FileManager.default.contentsOfDirectory(atPath: dst)) ?? []).filter { !ownsName($0) }.sorted()
            if let first = foreign.first {
                throw AtomicDirectoryError(path: dst, message: "exists and holds \(foreign.count) file(s) this command does not write, e.g. \(quoted(first)); choose a new directory or empty it")
            }
        }
        let parent = (dst as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: parent.isEmpty ? "." : parent, withIntermediateDirectories: true)
        self.destination = dst
        staging = dst + ".partial-\(getpid())"
        try? FileManager.default.removeItem(atPath: staging)
        try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: false)
    }

    /// Runs `body` on the staging directory, then moves it into place; on any error the
    /// staging directory is removed and the destination is as it was.
    package static func write(_ destination: String, ownsName: (String) -> Bool, _ body: (String) throws -> Void) throws {
        let dir = try AtomicDirectory(destination, ownsName: ownsName)
        do {
            try body(dir.staging)
            try dir.commit()
        } catch {
            dir.discard()
            throw error
        }
    }

    package func commit() throws {
        let old = destination + ".old-\(getpid())"
        let replacing = FileManager.default.fileExists(atPath: destination)
        if replacing { guard rename(destination, old) == 0 else { throw failure("cannot move the previous \(destination) aside") } }
        guard rename(staging, destination) == 0 else {
            if replacing { _ = rename(old, destination) }
            throw failure("cannot rename \(staging) into place")
        }
        if replacing { try? FileManager.default.removeItem(atPath: old) }
    }

    package func discard() { try? FileManager.default.removeItem(atPath: staging) }

    func failure(_ what: String) -> AtomicDirectoryError {
        AtomicDirectoryError(path: destination, message: "\(what) (\(String(cString: strerror(errno))))")
    }
}

package struct AtomicDirectoryError: Error, CustomStringConvertible, Equatable {
    package let path: String
    package let message: String
    package var description: String { "\(path): \(message)" }
}
