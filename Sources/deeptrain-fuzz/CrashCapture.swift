#if !LIBFUZZER
import Foundation

/// Saves the input being run when the process dies of it: signal handlers (on their own stack,
/// so a stack overflow is caught too) write it with async-signal-safe calls only, and a
/// watchdog thread writes it when one input runs past the timeout.
enum CrashCapture {
    nonisolated(unsafe) static var input = UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 16)
    nonisolated(unsafe) static var capacity = 1
    nonisolated(unsafe) static var count = 0
    nonisolated(unsafe) static var crashPath: UnsafeMutablePointer<CChar>? = nil
    nonisolated(unsafe) static var hangPath: UnsafeMutablePointer<CChar>? = nil
    nonisolated(unsafe) static var startedAt = 0.0

    static func install(directory: String, timeout: Double, memoryMB: Int) {
        crashPath = strdup((directory as NSString).appendingPathComponent("crash-\(getpid())"))
        hangPath = strdup((directory as NSString).appendingPathComponent("timeout-\(getpid())"))
        var limit = rlimit(rlim_cur: rlim_t(memoryMB) << 20, rlim_max: rlim_t(memoryMB) << 20)
        setrlimit(Int32(RLIMIT_AS.rawValue), &limit)
        let stackSize = 1 << 20
        var stack = stack_t(ss_sp: malloc(stackSize), ss_flags: 0, ss_size: stackSize)
        sigaltstack(&stack, nil)
        for sig in [SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGFPE, SIGABRT] {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { sig in
                CrashCapture.save(CrashCapture.crashPath)
                _ = signal(sig, SIG_DFL)
                raise(sig)
            }
            action.sa_flags = SA_ONSTACK
            sigaction(sig, &action, nil)
        }
        Thread.detachNewThread {
            while true {
                usleep(100_000)
                let t = startedAt
                if t > 0 && Date().timeIntervalSince1970 - t > timeout {
                    save(hangPath)
                    FileHandle.standardError.write(Data("deeptrain-fuzz: an input ran over \(timeout) s; saved as \(String(cString: hangPath!))\n".utf8))
                    _exit(1)
                }
            }
        }
    }

    static func begin(_ bytes: [UInt8]) {
        if bytes.count > capacity {
            input.deallocate()
            capacity = bytes.count
            input = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
        }
        bytes.withUnsafeBytes { if let base = $0.baseAddress { input.copyMemory(from: base, byteCount: bytes.count) } }
        count = bytes.count
        startedAt = Date().timeIntervalSince1970
    }

    static func end() { startedAt = 0 }

    static func save(_ path: UnsafeMutablePointer<CChar>?) {
        guard let path else { return }
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        if fd >= 0 {
            _ = write(fd, input, count)
            close(fd)
        }
    }
}
#endif
