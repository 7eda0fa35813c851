import ArgumentParser
import Foundation
import Checkpoint
import DeepSeek

struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Checks a checkpoint or model directory from elsewhere: every structure validated, every value read.",
        discussion: """
            Exit code 0 when the file can be used. Every other command runs this in a child process \
            before it opens an HDF5 checkpoint it did not write itself: libhdf5 can crash on a \
            corrupted file, and a crash in the child becomes a clear error instead (docs/security.md). \
            A Hugging Face directory is checked in-process (config.json against the tensors' shapes, \
            every tensor read).
            """)

    @Argument(help: "A DeepTrain .h5 checkpoint or a Hugging Face model directory.") var checkpoint: String
    @Flag(help: "Print nothing on success (the screening child process).") var quiet = false

    func run() throws {
        // This process is the screen: it reads the file itself.
        HDF5Screen.check = nil
        // Fault injection for the screening test: this process dies as libhdf5 would on a bad file.
        if let signal = ProcessInfo.processInfo.environment["DEEPTRAIN_FAULT_VERIFY_SIGNAL"].flatMap({ Int32($0) }) {
            _ = Foundation.signal(signal, SIG_DFL)
            raise(signal)
        }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: checkpoint, isDirectory: &isDir) else { throw fail("\(checkpoint): does not exist") }
        if !isDir.boolValue { limitAddressSpace(forFile: checkpoint) }
        if isDir.boolValue {
            let w = try HFDirectory.Weights(checkpoint)
            let shapes = DeepSeekForCausalLM.parameterShapes(w.config)
            try w.check(shapes)
            var values = 0
            for (name, _) in shapes { values += try w.tensor(name).count }
            if !quiet { print("ok: \(checkpoint): \(shapes.count) tensors, \(values) values") }
        } else {
            let v = try CheckpointStore.verify(checkpoint)
            if !quiet {
                print("ok: \(checkpoint): \(v.tensors) tensors, \(v.values) values\(v.optimizerState ? " (with AdamW moments)" : ""), "
                      + "tokenizer files: \(v.tokenizerFiles.isEmpty ? "none" : v.tokenizerFiles.joined(separator: ", "))")
            }
        }
    }
}

/// Corrupted metadata can make libhdf5 ask for terabytes: reading a checkpoint needs its largest
/// tensor and the libraries, so the address space is capped at the file's size plus 4 GiB and
/// such a request fails instead of exhausting the machine.
func limitAddressSpace(forFile path: String) {
    let size = ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.uint64Value ?? 0
    var limit = rlimit(rlim_cur: rlim_t(size + (4 << 30)), rlim_max: rlim_t(size + (4 << 30)))
    setrlimit(Int32(RLIMIT_AS.rawValue), &limit)
}

/// `HDF5Screen.check` of the CLI: `deeptrain verify --quiet PATH` in a child process. A child
/// killed by a signal means libhdf5 crashed on the file; a non-zero exit carries its message.
func screenInChild(_ path: String) throws {
    let p = Process()
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    p.executableURL = URL(fileURLWithPath: exe)
    p.arguments = ["verify", "--quiet", path]
    let err = Pipe()
    p.standardError = err
    p.standardOutput = FileHandle.nullDevice
    p.standardInput = FileHandle.nullDevice
    // A crash there is expected of a bad file: no backtrace report, just the signal.
    p.environment = ProcessInfo.processInfo.environment.merging(["SWIFT_BACKTRACE": "enable=no"], uniquingKeysWith: { _, new in new })
    do { try p.run() } catch { throw CheckpointError(path, "cannot be checked: the checking process did not start (\(error))") }
    // The check reads the whole file: a deadline of two minutes plus 20 s a GB (about 50 MB/s).
    let size = ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.doubleValue ?? 0
    let deadline = Date().addingTimeInterval(120 + size / 50e6)
    nonisolated(unsafe) var errData = Data()
    let reader = Thread { errData = err.fileHandleForReading.readDataToEndOfFile() }
    reader.start()
    while p.isRunning && Date() < deadline { usleep(20_000) }
    if p.isRunning {
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        throw CheckpointError(path, "is suspect: checking it took longer than \(Int(120 + size / 50e6)) s, so it was not opened (docs/security.md)")
    }
    p.waitUntilExit()
    while !reader.isFinished { usleep(1000) }
    let text = String(decoding: errData, as: UTF8.self)
    if p.terminationReason == .uncaughtSignal {
        throw CheckpointError(path, "is corrupt: libhdf5 crashed (signal \(p.terminationStatus)) while a checking process read it, so it was not opened (docs/security.md)")
    }
    guard p.terminationStatus == 0 else {
        var line = text.split(separator: "\n").last.map(String.init) ?? "exit code \(p.terminationStatus)"
        if line.hasPrefix("error: ") { line.removeFirst(7) }
        if line.hasPrefix(path + ": ") { line.removeFirst(path.count + 2) }
        throw CheckpointError(path, line)
    }
}
