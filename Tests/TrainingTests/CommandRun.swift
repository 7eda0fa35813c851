import Foundation

/// A finished run of a command (the real `deeptrain` binary, mostly), with the MPI variables of
/// any enclosing job removed so that the child does not try to join it.
struct CommandRun {
    let status: Int32
    let stdout: String
    let stderr: String

    init(_ exe: String, _ args: [String], environment extra: [String: String] = [:]) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        p.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("OMPI_") && !$0.key.hasPrefix("PMIX_") }
            .merging(extra, uniquingKeysWith: { _, new in new })
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        // Both pipes are read while it runs: a full pipe would block the child.
        nonisolated(unsafe) var errData = Data()
        let reader = Thread { errData = err.fileHandleForReading.readDataToEndOfFile() }
        reader.start()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        while !reader.isFinished { usleep(1000) }
        status = p.terminationStatus
        stdout = String(decoding: o, as: UTF8.self)
        stderr = String(decoding: errData, as: UTF8.self)
    }
}
