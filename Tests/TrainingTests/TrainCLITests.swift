import Foundation
import Testing

/// End-to-end runs of the real `deeptrain` binary: exact resume after SIGKILL, a kill during a
/// checkpoint write, and bad input. Runs .build/release/deeptrain, which `swift test -c release` builds (`make test`).
@Suite(.serialized) struct TrainCLITests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let binary = root.appendingPathComponent(".build/release/deeptrain").path
    static let recipe = """
    name: resume-test
    seed: 7
    model: tiny
    checkpoint:
      every: 5
      keep: 2
    stages:
      - kind: pretrain
        data: synthetic:arithmetic
        steps: 30
        batch_size: 8
        seq_len: 32
        optimizer:
          lr: 3.0e-3
        schedule:
          warmup: 5
        moe:
          alpha_device: 0.05
          alpha_comm: 0.02
          capacity_factor: 1.0
        log_every: 5
    """

    func tempDir() -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("dt-train-\(UUID().uuidString)").path
        try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    @discardableResult
    func launch(_ args: [String], env: [String: String] = [:]) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.binary)
        p.arguments = args
        var e = ProcessInfo.processInfo.environment
        for (k, v) in env { e[k] = v }
        p.environment = e
        p.standardOutput = FileHandle.nullDevice
        p.standardError = Pipe()
        try p.run()
        return p
    }

    func runToEnd(_ args: [String], env: [String: String] = [:]) throws -> (Int32, String) {
        let p = try launch(args, env: env)
        let err = (p.standardError as! Pipe).fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: err, as: UTF8.self))
    }

    func metrics(_ run: String) -> [[String: Any]] {
        let text = (try? String(contentsOfFile: "\(run)/metrics.jsonl", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    /// The fields that must repeat bit for bit (timing fields excluded).
    func deterministic(_ m: [String: Any]) -> String {
        var d = m
        for k in ["tokens_per_s", "mfu", "elapsed_s", "forward_s", "backward_s", "optimizer_s", "peak_rss_mb", "rank_peak_rss_mb"] { d.removeValue(forKey: k) }
        return String(decoding: try! JSONSerialization.data(withJSONObject: d, options: [.sortedKeys]), as: UTF8.self)
    }

    func digest(_ ck: String) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.binary)
        p.arguments = ["inspect", ck]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return text.split(separator: "\n").first { $0.hasPrefix("digest") }.map(String.init) ?? "no digest: \(text)"
    }

    @Test func sigkillThenResumeRepeatsTheUninterruptedRun() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let recipe = "\(dir)/r.yaml"
        try Self.recipe.write(toFile: recipe, atomically: true, encoding: .utf8)

        let (status, err) = try runToEnd(["train", recipe, "--run-dir", "\(dir)/straight"])
        #expect(status == 0, "\(err)")
        let reference = metrics("\(dir)/straight")
        #expect(reference.count == 30)

        // Kill at an arbitrary step (here when step 17 is logged), between checkpoints 15 and 20.
        let p = try launch(["train", recipe, "--run-dir", "\(dir)/killed"])
        let deadline = Date().addingTimeInterval(120)
        while metrics("\(dir)/killed").count < 17 && Date() < deadline && p.isRunning { usleep(2000) }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        #expect(p.terminationReason == .uncaughtSignal)
        let (rs, rerr) = try runToEnd(["train", recipe, "--run-dir", "\(dir)/killed", "--resume", "auto"])
        #expect(rs == 0, "\(rerr)")
        let resumed = metrics("\(dir)/killed")
        #expect(resumed.count == 30, "metrics after resume: \(resumed.count) lines")
        for (a, b) in zip(reference, resumed) { #expect(deterministic(a) == deterministic(b)) }
        #expect(try digest("\(dir)/straight/checkpoints/step-00000030.h5") == digest("\(dir)/killed/checkpoints/step-00000030.h5"))
    }

    @Test func sigkillDuringACheckpointWriteKeepsThePreviousOne() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let recipe = "\(dir)/r.yaml"
        try Self.recipe.write(toFile: recipe, atomically: true, encoding: .utf8)
        // Fault injection: pause 3 s inside every checkpoint write, after the tensors are written.
        let p = try launch(["train", recipe, "--run-dir", "\(dir)/run"], env: ["DEEPTRAIN_FAULT_CHECKPOINT_PAUSE_MS": "3000"])
        let tmp = "\(dir)/run/checkpoints/step-00000010.h5.tmp"
        let deadline = Date().addingTimeInterval(120)
        while !FileManager.default.fileExists(atPath: tmp) && Date() < deadline && p.isRunning { usleep(2000) }
        usleep(200_000)
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        let latest = try String(contentsOfFile: "\(dir)/run/checkpoints/latest", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(latest == "step-00000005.h5")
        #expect(try digest("\(dir)/run/checkpoints/step-00000005.h5").hasPrefix("digest"))
        let (rs, rerr) = try runToEnd(["train", recipe, "--run-dir", "\(dir)/run", "--resume", "auto", "--set", "stages.0.steps=12"])
        #expect(rs == 0, "resume from the intact checkpoint: \(rerr)")
    }

    /// A checkpoint that does not fit the disk: a 600 KiB tmpfs (mounting needs root; elsewhere
    /// the test has nothing to run on). The write fails where it happens, with the system's
    /// reason, and leaves neither a checkpoint nor its .tmp (HDF5's sieve buffer used to defer
    /// the failure to a close that lost it, leaving a checkpoint of zeros).
    @Test func aFullDiskFailsTheCheckpointWithItsReasonAndLeavesNoFile() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let disk = "\(dir)/disk"
        try FileManager.default.createDirectory(atPath: disk, withIntermediateDirectories: true)
        let mount = Process()
        mount.executableURL = URL(fileURLWithPath: "/bin/mount")
        mount.arguments = ["-t", "tmpfs", "-o", "size=600k", "tmpfs", disk]
        mount.standardError = FileHandle.nullDevice
        guard getuid() == 0, (try? mount.run()) != nil else { return }
        mount.waitUntilExit()
        guard mount.terminationStatus == 0 else { return }
        defer {
            let u = Process()
            u.executableURL = URL(fileURLWithPath: "/bin/umount")
            u.arguments = [disk]
            try? u.run()
            u.waitUntilExit()
        }
        let recipe = "\(dir)/r.yaml"
        try Self.recipe.write(toFile: recipe, atomically: true, encoding: .utf8)
        let (status, err) = try runToEnd(["train", recipe, "--run-dir", "\(disk)/run", "--set", "stages.0.steps=2",
                                          "--set", "checkpoint.every=2"])
        #expect(status != 0)
        #expect(err.contains("No space left on device") && err.contains("step-00000002.h5"), "\(err)")
        let left = (try? FileManager.default.contentsOfDirectory(atPath: "\(disk)/run/checkpoints")) ?? []
        #expect(!left.contains { $0.hasSuffix(".h5") || $0.hasSuffix(".tmp") }, "left behind: \(left)")
    }

    /// A reward stage whose seq_len cuts every pair before its turns differ says so up front.
    @Test func rewardPairsCutAlikeAreNamed() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let recipe = "\(dir)/reward.yaml"
        try """
        name: reward
        model: tiny
        threads: 1
        stages:
          - kind: reward
            data: synthetic:arithmetic-preferences
            steps: 1
            batch_size: 2
            seq_len: 16
            optimizer:
              lr: 1.0e-4
        """.write(toFile: recipe, atomically: true, encoding: .utf8)
        let (status, err) = try runToEnd(["train", recipe, "--run-dir", "\(dir)/run"])
        #expect(status == 0, "\(err)")
        let log = try String(contentsOfFile: "\(dir)/run/train.log", encoding: .utf8)
        #expect(log.contains("256 of the first 256 pairs are the same once cut to seq_len = 16 tokens"), "\(log.prefix(600))")
    }

    @Test func badInputExitsOneWithOneMessageAndWritesNothing() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cases: [(String, String, [String])] = [
            ("unknown key", Self.recipe.replacingOccurrences(of: "    steps: 30", with: "    step: 30"), ["stages[0].step", "\"steps\""]),
            ("malformed", "name: x\nstages: [\n", ["malformed YAML"]),
            ("missing data", Self.recipe.replacingOccurrences(of: "synthetic:arithmetic", with: "\(dir)/nope.bin"), ["nope.bin"]),
        ]
        for (label, text, needles) in cases {
            let recipe = "\(dir)/\(label.replacingOccurrences(of: " ", with: "-")).yaml"
            try text.write(toFile: recipe, atomically: true, encoding: .utf8)
            let (status, err) = try runToEnd(["train", recipe, "--run-dir", "\(dir)/run-\(label.replacingOccurrences(of: " ", with: "-"))"])
            #expect(status == 1, "\(label): exit \(status)")
            #expect(err.split(separator: "\n").count == 1, "\(label): one line, got \(err)")
            for n in needles { #expect(err.contains(n), "\(label): \(err)") }
            #expect(!FileManager.default.fileExists(atPath: "\(dir)/run-\(label.replacingOccurrences(of: " ", with: "-"))"), "\(label) wrote a run directory")
        }
        // A checkpoint of another model: resume refuses it.
        let recipe = "\(dir)/r.yaml"
        try Self.recipe.write(toFile: recipe, atomically: true, encoding: .utf8)
        let (s1, e1) = try runToEnd(["train", recipe, "--run-dir", "\(dir)/a", "--set", "stages.0.steps=5"])
        #expect(s1 == 0, "\(e1)")
        let (s2, e2) = try runToEnd(["train", recipe, "--run-dir", "\(dir)/b", "--resume", "\(dir)/a/checkpoints/step-00000005.h5",
                                     "--set", "model=small"])
        #expect(s2 == 1 && e2.contains("different model"), "\(e2)")
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/b"), "a refused resume wrote a run directory")
        // A truncated checkpoint.
        let full = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/a/checkpoints/step-00000005.h5"))
        try full.prefix(full.count / 3).write(to: URL(fileURLWithPath: "\(dir)/cut.h5"))
        let (s3, e3) = try runToEnd(["train", recipe, "--run-dir", "\(dir)/c", "--resume", "\(dir)/cut.h5"])
        #expect(s3 == 1 && e3.contains("cut.h5"), "\(e3)")
        // A GRPO reward model that is a language model: named by its key, before any file is written.
        let grpo = Self.root.appendingPathComponent("recipes/grpo-reward-model.yaml").path
        let (s4, e4) = try runToEnd(["train", grpo, "--run-dir", "\(dir)/d", "--set", "stages.0.init=\(dir)/a/checkpoints/step-00000005.h5",
                                     "--set", "stages.0.grpo.rewards.0.checkpoint=\(dir)/a/checkpoints/step-00000005.h5"])
        #expect(s4 == 1 && e4.contains("stages[0].grpo.rewards[0].checkpoint") && e4.contains("not a reward model"), "\(e4)")
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/d"), "a refused reward model wrote a run directory")
    }

    @Test func sigtermFinishesTheStepWritesACheckpointAndExitsZero() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let recipe = "\(dir)/r.yaml"
        try Self.recipe.replacingOccurrences(of: "steps: 30", with: "steps: 100000").write(toFile: recipe, atomically: true, encoding: .utf8)
        let p = try launch(["train", recipe, "--run-dir", "\(dir)/run"])
        let deadline = Date().addingTimeInterval(120)
        while metrics("\(dir)/run").count < 3 && Date() < deadline && p.isRunning { usleep(2000) }
        kill(p.processIdentifier, SIGTERM)
        p.waitUntilExit()
        #expect(p.terminationReason == .exit && p.terminationStatus == 0)
        let last = metrics("\(dir)/run").last?["global_step"] as? Int ?? -1
        let latest = try String(contentsOfFile: "\(dir)/run/checkpoints/latest", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(latest == String(format: "step-%08d.h5", last), "latest \(latest) after step \(last)")
    }

    @Test func nonFiniteStepsAreSkippedThenTheRunStopsWithExitThree() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let recipe = "\(dir)/r.yaml"
        try Self.recipe.write(toFile: recipe, atomically: true, encoding: .utf8)
        // A learning rate that overflows the weights on the first update.
        let (status, err) = try runToEnd(["train", recipe, "--run-dir", "\(dir)/run", "--set", "stages.0.optimizer.lr=1e30",
                                          "--set", "stages.0.optimizer.clip=0", "--set", "stages.0.max_nan_steps=3"])
        #expect(status == 3, "exit \(status): \(err)")
        #expect(err.contains("3 steps in a row") && err.contains("non-finite"), "\(err)")
        let m = metrics("\(dir)/run")
        #expect((m.last?["nan_skipped"] as? Int) == 3, "\(m.last ?? [:])")
    }
}
