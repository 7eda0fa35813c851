import Foundation

/// The run directory (docs/design.md §2.3): recipe.resolved.yaml, metrics.jsonl, train.log and
/// checkpoints/ (with `latest` naming the newest complete checkpoint).
package final class RunDirectory {
    package let path: String
    package let checkpoints: String
    var metrics: FileHandle
    let log: FileHandle

    package init(path: String, checkpointDir: String, resolvedRecipe: String, fresh: Bool) throws {
        self.path = path
        checkpoints = checkpointDir.hasPrefix("/") ? checkpointDir : (path as NSString).appendingPathComponent(checkpointDir)
        let fm = FileManager.default
        try fm.createDirectory(atPath: checkpoints, withIntermediateDirectories: true)
        try resolvedRecipe.write(toFile: (path as NSString).appendingPathComponent("recipe.resolved.yaml"), atomically: true, encoding: .utf8)
        func open(_ name: String) throws -> FileHandle {
            let p = (path as NSString).appendingPathComponent(name)
            if fresh || !fm.fileExists(atPath: p) { _ = fm.createFile(atPath: p, contents: nil) }
            let h = try FileHandle(forWritingTo: URL(fileURLWithPath: p))
            try h.seekToEnd()
            return h
        }
        metrics = try open("metrics.jsonl")
        log = try open("train.log")
    }

    /// Drops metrics lines past `step` (global) so a resumed run continues the file exactly.
    package func truncateMetrics(afterGlobalStep step: Int) throws {
        try metrics.close()
        let p = (path as NSString).appendingPathComponent("metrics.jsonl")
        defer {
            metrics = (try? FileHandle(forWritingTo: URL(fileURLWithPath: p))) ?? FileHandle.nullDevice
            _ = try? metrics.seekToEnd()
        }
        guard let text = try? String(contentsOfFile: p, encoding: .utf8) else { return }
        let kept = text.split(separator: "\n").filter { line in
            guard let d = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let g = d["global_step"] as? Int else { return true }
            return g <= step
        }
        try (kept.joined(separator: "\n") + (kept.isEmpty ? "" : "\n")).write(toFile: p, atomically: true, encoding: .utf8)
    }

    /// One JSON line, keys sorted; NaN and infinities (not JSON) are written as null.
    /// What a non-finite number is encoded as before it becomes null in the file.
    static let nonFiniteMarker = "\u{1}nonfinite"
    /// The marker as JSONEncoder writes it (a control character is escaped in JSON).
    static let nonFiniteJSON = "\"\\u0001nonfinite\""

    package func writeMetrics(_ line: some Encodable) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        // JSONEncoder has no strategy that writes null for a non-finite number: it writes this
        // marker instead, which the line then turns into null. No metric's text can hold it
        // (stage names are letters, digits and - _ .).
        let marker = Self.nonFiniteMarker
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: marker, negativeInfinity: marker, nan: marker)
        guard let data = try? encoder.encode(line) else { return }
        let text = String(decoding: data, as: UTF8.self).replacingOccurrences(of: Self.nonFiniteJSON, with: "null")
        metrics.write(Data((text + "\n").utf8))
    }

    /// One line of `metrics.jsonl` as its typed struct; the nulls `writeMetrics` wrote for
    /// non-finite numbers come back as NaN.
    static func readMetrics<Line: Decodable>(_ line: String, as: Line.Type) throws -> Line {
        // null is a JSON token only outside strings; turn those into a string the decoder reads as NaN.
        var text = "", inString = false, escaped = false
        var rest = Substring(line)
        while let c = rest.first {
            if !inString && rest.hasPrefix("null") {
                text += "\"NaN\""
                rest = rest.dropFirst(4)
                continue
            }
            if inString && !escaped && c == "\"" { inString = false } else if !inString && c == "\"" { inString = true }
            escaped = inString && !escaped && c == "\\"
            text.append(c)
            rest = rest.dropFirst()
        }
        let decoder = JSONDecoder()
        // Only a number's field reads the string as NaN; a string field keeps the text.
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "+Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        return try decoder.decode(Line.self, from: Data(text.utf8))
    }

    package func logLine(_ s: String) {
        log.write(Data((s + "\n").utf8))
    }

    package var latestPath: String { (checkpoints as NSString).appendingPathComponent("latest") }

    /// The checkpoint `latest` names in a run's checkpoint folder (nil when there is none yet):
    /// what `--resume auto` resumes, found before the run directory is opened.
    package static func latestCheckpoint(checkpoints: String) -> String? {
        let latest = (checkpoints as NSString).appendingPathComponent("latest")
        guard let name = try? String(contentsOfFile: latest, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines),
              !name.isEmpty else { return nil }
        return (checkpoints as NSString).appendingPathComponent(name)
    }

    /// Points `latest` at `file` (atomically) and deletes all but the newest `keep` checkpoints.
    package func publish(_ file: String, keep: Int) throws {
        let tmp = latestPath + ".tmp"
        do {
            try ((file as NSString).lastPathComponent + "\n").write(toFile: tmp, atomically: false, encoding: .utf8)
        } catch {
            try? FileManager.default.removeItem(atPath: tmp)
            let reason = ((error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError)?.localizedDescription ?? error.localizedDescription
            throw RecipeError(file: latestPath, line: nil, column: nil, path: "", message: "cannot point it at \((file as NSString).lastPathComponent): \(reason)")
        }
        guard rename(tmp, latestPath) == 0 else { throw RecipeError(file: latestPath, line: nil, column: nil, path: "", message: "cannot update") }
        let all = ((try? FileManager.default.contentsOfDirectory(atPath: checkpoints)) ?? [])
            .filter { $0.hasPrefix("step-") && $0.hasSuffix(".h5") }.sorted()
        for old in all.dropLast(keep) { try? FileManager.default.removeItem(atPath: (checkpoints as NSString).appendingPathComponent(old)) }
    }
}
