import Foundation

/// libhdf5 is not hardened against corrupted files: a few changed bytes in a file's metadata
/// can crash it inside `H5Dread`, where no check of ours can intervene. So a file this process
/// did not write is first read whole by another process (`check`, which the CLI sets to run
/// `deeptrain verify` as a child): a crash there becomes a clear error here, and the file is
/// never used. Each file is screened once per process (by path, size and modification time).
///
/// Without a `check` (the test runner, library use) files are read directly: that is the
/// trusted path docs/security.md describes.
package enum HDF5Screen {
    nonisolated(unsafe) package static var check: ((String) throws -> Void)?
    nonisolated(unsafe) static var cleared: Set<String> = []
    static let lock = NSLock()

    /// Screens `path` unless this process wrote or already screened it.
    static func screen(_ path: String) throws {
        guard let check, let key = identity(path) else { return }
        let known = lock.withLock { cleared.contains(key) }
        if known { return }
        try check(path)
        lock.withLock { _ = cleared.insert(key) }
    }

    /// A file this process wrote needs no screening.
    package static func trust(_ path: String) {
        guard let key = identity(path) else { return }
        lock.withLock { _ = cleared.insert(key) }
    }

    static func identity(_ path: String) -> String? {
        guard let a = try? FileManager.default.attributesOfItem(atPath: path) else { return nil }
        let size = (a[.size] as? NSNumber)?.intValue ?? -1
        let modified = (a[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
        return "\((path as NSString).standardizingPath)|\(size)|\(modified)"
    }
}
