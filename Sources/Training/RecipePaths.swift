import Foundation

/// How a recipe's paths (data, `init:`, `model:`, `tokenizer:`) are found: relative to the
/// recipe's directory when something is there, else as given (relative to the working
/// directory), so a recipe runs from anywhere and `--set` paths still mean what they say.
package struct RecipePaths: Sendable {
    /// The recipe's directory.
    package let directory: String

    package init(directory: String) { self.directory = directory }

    package init(recipePath: String) { directory = (recipePath as NSString).deletingLastPathComponent }

    /// `p` resolved; absolute paths and built-in data (`synthetic:`) as they are.
    package func resolve(_ p: String) -> String {
        if p.hasPrefix("/") || p.hasPrefix("synthetic:") { return p }
        let r = (directory as NSString).appendingPathComponent(p)
        return FileManager.default.fileExists(atPath: r) ? r : p
    }

    /// `spec` resolved, when it is a directory (a Hugging Face model directory).
    package func directory(_ spec: String) -> String? {
        let p = resolve(spec)
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: p, isDirectory: &isDir) && isDir.boolValue ? p : nil
    }
}
